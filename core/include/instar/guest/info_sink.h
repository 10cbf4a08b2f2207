// What format code reports for `info`, and the byte encoding that carries it from guest to host.
//
// Format code (freestanding) calls an InfoSink. In the guest the sink is an InfoEncoder that packs
// the calls into INSTAR_REC_INFO records; the host decodes them (core/src/ops/info_decode.cpp) with
// every length, count and nesting depth checked again, since the guest may be compromised.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

// Bounds on what one image can report. The host enforces the same numbers when decoding.
inline constexpr size_t INFO_MAX_STRING = 4096;     // a backing path: qcow2 allows 1023, vmdk ~ PATH_MAX
inline constexpr size_t INFO_MAX_KEY = 64;          // qemu's longest format-specific key is ~25
inline constexpr uint32_t INFO_MAX_DEPTH = 8;       // qemu's deepest info tree is 4 (bitmaps/flags)
inline constexpr uint32_t INFO_MAX_SNAPSHOTS = 65536; // QCOW_MAX_SNAPSHOTS
// Referenced files (vmdk extents; qemu has no limit): a vmdk at vmdk's 64 TiB limit in 2 GiB
// extents, the largest instar or qemu creates (INSTAR_MAX_ADDED_FILES).
inline constexpr uint32_t INFO_MAX_FILES = 32768;

// One internal snapshot, as qemu's SnapshotInfo.
struct SnapshotInfo {
    const char* id;
    size_t id_len;
    const char* name;
    size_t name_len;
    uint64_t vm_state_size;
    int64_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_clock_nsec;
    uint64_t icount;  // valid when has_icount
    bool has_icount;
};

// Files an image refers to. The host resolves names through its path policy.
enum class FileRole : uint8_t {
    Backing = 1,  // backing file / parent
    DataFile = 2, // qcow2 external data file
    Extent = 3,   // vmdk extent (in descriptor order)
};

class InfoSink {
public:
    // The format this module recognised ("qcow2"), and qemu's basic fields.
    virtual void format(const char* name) = 0;
    virtual void virtual_size(uint64_t bytes) = 0;
    virtual void cluster_size(uint64_t bytes) = 0;
    virtual void encrypted(bool yes) = 0;
    virtual void dirty(bool yes) = 0;
    virtual void backing_format(const char* name, size_t len) = 0;
    virtual void snapshot(const SnapshotInfo& s) = 0;
    // A file the image names (exact bytes from the image; never opened by the guest).
    virtual void file_reference(FileRole role, const char* name, size_t len) = 0;

    // qemu's "format-specific" section: {"type": TYPE, "data": {...}}. Keys are qemu's
    // (lower-case, '-'-separated); inside a list, pass key = nullptr.
    virtual void specific_type(const char* type) = 0;
    virtual void begin_object(const char* key) = 0;
    virtual void end_object() = 0;
    virtual void begin_list(const char* key) = 0;
    virtual void end_list() = 0;
    virtual void put_string(const char* key, const char* value, size_t len) = 0;
    virtual void put_uint(const char* key, uint64_t value) = 0;
    virtual void put_int(const char* key, int64_t value) = 0;
    virtual void put_bool(const char* key, bool value) = 0;

    // Why the image was refused, for the user (e.g. "L1 table offset past end of file"); call it
    // before returning a non-Ok Status. The host shows it after "Could not open 'NAME': ", with
    // every "{image}" replaced by NAME (the guest never knows file names).
    virtual void reason(const char* text, size_t len) = 0;

protected:
    ~InfoSink() = default;
};

// What a format's info entry point gets. `files` holds the files the image referenced in a first
// pass (in reference order), opened by the host's path policy; empty on the first pass. A format
// that needs them reports them with file_reference() and returns Status::NeedFiles.
struct InfoRequest {
    BlockDevice* image;
    Allocator* allocator;
    BlockDevice* const* files;
    uint32_t file_count;
    // The qemu-img version whose output is being reproduced (qemu_version(): 70200, 100000, ...),
    // for the few fields that exist only in some versions.
    uint32_t qemu_version;
    // Appended in module ABI 10 (docs/guest-abi.md): INFO_REQUEST_* bits.
    uint32_t flags = 0;
};

// InfoRequest::flags: the command opens the image for I/O (every qemu-img command but info, and
// create's look at a backing file) and the user gave no key-secret for it. A format whose qemu
// driver asks for its key before it reads its header (luks) refuses with qemu's words at once.
inline constexpr uint32_t INFO_REQUEST_NO_KEY = 1u << 0;

// ---- The wire encoding (one token after another, little-endian) ----
enum class InfoToken : uint8_t {
    Format = 1,        // str8
    VirtualSize = 2,   // u64
    ClusterSize = 3,   // u64
    Encrypted = 4,     // u8
    Dirty = 5,         // u8
    BackingFormat = 6, // str16
    Snapshot = 7,      // str16 id, str16 name, u64 vm_state_size, i64 date_sec, u32 date_nsec,
                       // u64 vm_clock_nsec, u8 has_icount, u64 icount
    FileRef = 8,       // u8 role, str16 name
    SpecificType = 9,  // str8
    BeginObject = 10,  // key8
    EndObject = 11,
    BeginList = 12,    // key8
    EndList = 13,
    String = 14,       // key8, str16
    Uint = 15,         // key8, u64
    Int = 16,          // key8, i64
    Bool = 17,         // key8, u8
    Reason = 18,       // str16
};
// str8/key8: u8 length + bytes (key8 length 0 = no key); str16: u16 length + bytes.

// Packs sink calls into a caller-provided buffer, handing full buffers to `flush` (which sends one
// record). A token never straddles two records. Over-long strings are truncated to the bounds above
// (the host rejects them anyway); a failed flush latches the error.
class InfoEncoder final : public InfoSink {
public:
    using FlushFn = Status (*)(void* ctx, const uint8_t* data, size_t len);

    InfoEncoder(uint8_t* buf, size_t cap, FlushFn flush, void* ctx) : buf_(buf), cap_(cap), flush_(flush), ctx_(ctx) {}

    Status finish() {
        if (status_ == Status::Ok && len_ > 0)
            status_ = flush_(ctx_, buf_, len_);
        len_ = 0;
        return status_;
    }
    Status status() const { return status_; }

    void format(const char* name) override { tok(InfoToken::Format); str8(name, cstrlen(name)); }
    void virtual_size(uint64_t v) override { tok(InfoToken::VirtualSize); u64(v); }
    void cluster_size(uint64_t v) override { tok(InfoToken::ClusterSize); u64(v); }
    void encrypted(bool v) override { tok(InfoToken::Encrypted); u8(v); }
    void dirty(bool v) override { tok(InfoToken::Dirty); u8(v); }
    void backing_format(const char* s, size_t n) override { tok(InfoToken::BackingFormat); str16(s, n); }
    void snapshot(const SnapshotInfo& s) override {
        tok(InfoToken::Snapshot);
        str16(s.id, s.id_len);
        str16(s.name, s.name_len);
        u64(s.vm_state_size);
        u64(static_cast<uint64_t>(s.date_sec));
        u32(s.date_nsec);
        u64(s.vm_clock_nsec);
        u8(s.has_icount);
        u64(s.icount);
    }
    void file_reference(FileRole role, const char* s, size_t n) override {
        tok(InfoToken::FileRef);
        u8(static_cast<uint8_t>(role));
        str16(s, n);
    }
    void specific_type(const char* type) override { tok(InfoToken::SpecificType); str8(type, cstrlen(type)); }
    void begin_object(const char* key) override { tok(InfoToken::BeginObject); key8(key); }
    void end_object() override { tok(InfoToken::EndObject); }
    void begin_list(const char* key) override { tok(InfoToken::BeginList); key8(key); }
    void end_list() override { tok(InfoToken::EndList); }
    void put_string(const char* key, const char* v, size_t n) override { tok(InfoToken::String); key8(key); str16(v, n); }
    void put_uint(const char* key, uint64_t v) override { tok(InfoToken::Uint); key8(key); u64(v); }
    void put_int(const char* key, int64_t v) override { tok(InfoToken::Int); key8(key); u64(static_cast<uint64_t>(v)); }
    void put_bool(const char* key, bool v) override { tok(InfoToken::Bool); key8(key); u8(v); }
    void reason(const char* text, size_t n) override { tok(InfoToken::Reason); str16(text, n); }

private:
    // The largest token: a snapshot with two maximal strings.
    static constexpr size_t MAX_TOKEN = 1 + 2 * (2 + INFO_MAX_STRING) + 8 * 4 + 4 + 1;

    static size_t cstrlen(const char* s) {
        size_t n = 0;
        while (s && s[n])
            ++n;
        return n;
    }
    void tok(InfoToken t) {
        if (status_ != Status::Ok)
            return;
        if (cap_ < MAX_TOKEN) {
            status_ = Status::Invalid;
            return;
        }
        if (cap_ - len_ < MAX_TOKEN) {
            status_ = flush_(ctx_, buf_, len_);
            len_ = 0;
        }
        u8(static_cast<uint8_t>(t));
    }
    void put(const void* p, size_t n) {
        if (status_ != Status::Ok)
            return;
        const auto* b = static_cast<const uint8_t*>(p);
        for (size_t i = 0; i < n; ++i)
            buf_[len_ + i] = b[i];
        len_ += n;
    }
    void u8(uint8_t v) { put(&v, 1); }
    void u32(uint32_t v) {
        uint8_t b[4];
        for (int i = 0; i < 4; ++i)
            b[i] = static_cast<uint8_t>(v >> (8 * i));
        put(b, 4);
    }
    void u64(uint64_t v) {
        uint8_t b[8];
        for (int i = 0; i < 8; ++i)
            b[i] = static_cast<uint8_t>(v >> (8 * i));
        put(b, 8);
    }
    void str8(const char* s, size_t n) {
        n = n > 255 ? 255 : n;
        u8(static_cast<uint8_t>(n));
        put(s, n);
    }
    void key8(const char* key) { str8(key ? key : "", key ? (cstrlen(key) > INFO_MAX_KEY ? INFO_MAX_KEY : cstrlen(key)) : 0); }
    void str16(const char* s, size_t n) {
        n = n > INFO_MAX_STRING ? INFO_MAX_STRING : n;
        uint8_t b[2] = {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8)};
        put(b, 2);
        put(s, n);
    }

    uint8_t* buf_;
    size_t cap_;
    size_t len_ = 0;
    FlushFn flush_;
    void* ctx_;
    Status status_ = Status::Ok;
};

} // namespace instar::guest
