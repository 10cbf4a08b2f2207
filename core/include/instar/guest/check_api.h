// `check`: what a format's guest half reports for qemu-img check (INSTAR_OP_CHECK, docs/check.md).
// Freestanding-clean. The format fills a CheckResult (qemu's BdrvCheckResult and bdrv_check's
// return value) and writes the lines qemu prints on stderr while it checks through a CheckSink.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

inline constexpr uint32_t CHECK_FIX_LEAKS = 1;  // INSTAR_CHECK_FIX_LEAKS
inline constexpr uint32_t CHECK_FIX_ERRORS = 2; // INSTAR_CHECK_FIX_ERRORS

// Linux errno values qemu's check returns (the host prints strerror of them).
inline constexpr int32_t CHECK_EIO = 5;
inline constexpr int32_t CHECK_ENOMEM = 12;
inline constexpr int32_t CHECK_EINVAL = 22;
inline constexpr int32_t CHECK_EFBIG = 27;
inline constexpr int32_t CHECK_ENOTSUP = 95;

struct CheckResult {
    uint64_t corruptions = 0;
    uint64_t leaks = 0;
    uint64_t check_errors = 0;
    uint64_t corruptions_fixed = 0;
    uint64_t leaks_fixed = 0;
    uint64_t image_end_offset = 0;
    uint64_t total_clusters = 0;
    uint64_t allocated_clusters = 0;
    uint64_t fragmented_clusters = 0;
    uint64_t compressed_clusters = 0;
    int32_t error = 0; // 0 or -errno: the check did not complete
};

// The stderr text a check reports at most (the guest runtime drops further lines and the host says
// the report was truncated: docs/check.md): below INSTAR_MAX_RECORD_BYTES (16 MiB) with room for the
// result, so an image with millions of damaged clusters cannot make the host refuse the whole run.
// A per-cluster report may stop formatting lines once it has sent more than this can hold, and count
// the rest arithmetically: nothing the user would see is lost (check_max_lines).
inline constexpr size_t CHECK_MAX_TEXT_BYTES = size_t{12} << 20;

// Lines of at least min_len bytes that fill CHECK_MAX_TEXT_BYTES: any further one would be dropped.
constexpr uint64_t check_max_lines(size_t min_len) { return CHECK_MAX_TEXT_BYTES / (min_len == 0 ? 1 : min_len) + 1; }

// Receives stderr text, one complete line (with its '\n') per call. A line that qemu prints through
// error_report ("qemu-img: ...") starts with CHECK_PROGRAM_PREFIX instead: the host puts its own
// program name there.
inline constexpr char CHECK_PROGRAM_PREFIX = '\x01';
class CheckSink {
public:
    virtual void line(const char* text, size_t len) = 0;

protected:
    ~CheckSink() = default;
};

struct CheckRequest {
    BlockDevice* image;
    BlockDevice* const* files; // the files the image names (vmdk extents), as OpenRequest::files
    uint32_t file_count;
    Allocator* allocator;
    const Codecs* codecs;
    uint32_t fix;          // CHECK_FIX_*
    uint32_t qemu_version; // major*10000 + minor*100 + micro
    // Makes the writes so far to `dev` durable (repair orders its steps with it); nullptr when the
    // image is read-only (fix == 0).
    Status (*flush)(BlockDevice& dev);
    // Sets the repaired image's file length: cuts it (qemu's truncate of leaked space and its close
    // to the data end) or grows it with a hole. Only `image`, only with fix != 0 (nullptr otherwise);
    // the host refuses a length past the output's limit. Appended with a default (round 7): formats
    // that never cut a file are unchanged.
    Status (*set_length)(BlockDevice& dev, uint64_t length) = nullptr;
};

// Ok when the check ran (its findings, including a failed check, are in *result); any other
// status means the guest itself could not work (NoMemory, TooLarge: a named limit).
using CheckFn = Status (*)(const CheckRequest& req, CheckSink& sink, CheckResult* result);

// A bounded printf-free line builder for CheckSink text: qemu's %s, %d, PRIu64, PRIx64 and %#x.
class CheckLine {
public:
    // qemu's check lines are short except those naming a snapshot (id and name up to 65535 bytes
    // each): longer lines are cut here (docs/check.md), well inside a 32 KiB text record.
    static constexpr size_t CAPACITY = 2048;
    CheckLine& s(const char* text) {
        while (*text)
            put(*text++);
        return *this;
    }
    CheckLine& s(const char* text, size_t len) {
        for (size_t i = 0; i < len; ++i)
            put(text[i]);
        return *this;
    }
    CheckLine& u(uint64_t v) {
        char tmp[24];
        size_t n = 0;
        do {
            tmp[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v);
        while (n)
            put(tmp[--n]);
        return *this;
    }
    CheckLine& i(int64_t v) {
        if (v < 0) {
            put('-');
            return u(static_cast<uint64_t>(-(v + 1)) + 1);
        }
        return u(static_cast<uint64_t>(v));
    }
    CheckLine& x(uint64_t v) {
        char tmp[20];
        size_t n = 0;
        do {
            tmp[n++] = "0123456789abcdef"[v & 15];
            v >>= 4;
        } while (v);
        while (n)
            put(tmp[--n]);
        return *this;
    }
    // printf's %#x: "0" for zero, else "0x..."
    CheckLine& alt_x(uint64_t v) {
        if (v == 0)
            return s("0");
        return s("0x").x(v);
    }
    void emit(CheckSink& sink) {
        if (len_ == CAPACITY)
            --len_;
        buf_[len_++] = '\n';
        sink.line(buf_, len_);
        len_ = 0;
    }

private:
    void put(char c) {
        if (len_ < CAPACITY)
            buf_[len_++] = c;
    }
    char buf_[CAPACITY];
    size_t len_ = 0;
};

} // namespace instar::guest
