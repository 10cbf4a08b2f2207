// A host that reads ahead, as the runtime and the process sandbox's server make it, for the walks'
// unit tests (convert, compare): a read into the walk's read-ahead window is answered at once but
// its bytes arrive only when the walk settles (until then the buffer holds junk), so a buffer used
// before it is settled shows as wrong data.
#pragma once

#include "read_ahead.h"

#include <instar/guest/read_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace instar::hosted {

struct AheadHost {
    struct Late {
        std::uint8_t* dst;
        const std::vector<std::uint8_t>* src;
        std::uint64_t offset, len;
    };
    static inline std::uint8_t* window = nullptr;
    static inline std::uint64_t window_len = 0;
    static inline std::vector<Late> late;
    static inline int ahead_reads = 0, settles = 0;
    static inline std::uint64_t fail_offset = UINT64_MAX; // this read ahead fails (once)
    static inline bool host_reads_late = true;
    static inline bool quiet = false;
    static inline std::uint64_t refuse_at = UINT64_MAX; // read() of this chunk fails with a reason
    static inline int refusals_left = 0;
    static inline std::vector<std::uint64_t> reasons; // the reasons given while not quiet
    static void reset() {
        quiet = false;
        refuse_at = UINT64_MAX;
        refusals_left = 0;
        reasons.clear();
        window = nullptr;
        window_len = 0;
        late.clear();
        ahead_reads = settles = 0;
        fail_offset = UINT64_MAX;
        host_reads_late = true;
    }
    static void read_ahead(const void* buf, std::uint64_t n) {
        window = static_cast<std::uint8_t*>(const_cast<void*>(buf));
        window_len = buf == nullptr ? 0 : n;
    }
    static std::int64_t settle() {
        ++settles;
        std::int64_t ret = 0;
        for (const Late& l : late) {
            if (l.offset == fail_offset) {
                fail_offset = UINT64_MAX;
                ret = -5;
                continue;
            }
            std::memcpy(l.dst, l.src->data() + l.offset, l.len);
        }
        late.clear();
        return ret;
    }
    static bool reads_ahead() { return host_reads_late; }
    static convert::ReadAheadHooks hooks() {
        convert::ReadAheadHooks h;
        h.read_ahead = read_ahead;
        h.settle_reads = settle;
        h.reads_ahead = reads_ahead;
        h.quiet_reasons = [](void*, bool q) { quiet = q; };
        return h;
    }
};

// A raw-like reader (all data) whose reads into the window are completed late by AheadHost.
class AheadReader final : public guest::ImageReader {
public:
    // run: the longest status answer (0: the rest of the image), so a walk must ask again.
    explicit AheadReader(const std::vector<std::uint8_t>& bytes, bool safe = true, std::uint64_t run = 0)
        : bytes_(bytes), safe_(safe), run_(run) {}
    std::uint64_t virtual_size() const override { return bytes_.size(); }
    guest::Status status(std::uint64_t offset, std::uint64_t length, guest::Extent* out) override {
        *out = guest::Extent{};
        out->allocation = guest::Allocation::Data; // raw: all data (the zeros are written, not holes)
        out->length = std::min<std::uint64_t>(length, bytes_.size() - offset);
        if (run_ != 0)
            out->length = std::min<std::uint64_t>(out->length, run_ - offset % run_);
        ++status_calls;
        return guest::Status::Ok;
    }
    guest::Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        auto* dst = static_cast<std::uint8_t*>(buf);
        if (offset == AheadHost::refuse_at && AheadHost::refusals_left > 0) {
            --AheadHost::refusals_left;
            if (!AheadHost::quiet)
                AheadHost::reasons.push_back(offset);
            return guest::Status::Corrupt;
        }
        if (AheadHost::window != nullptr && dst >= AheadHost::window &&
            dst + len <= AheadHost::window + AheadHost::window_len && AheadHost::host_reads_late) {
            ++AheadHost::ahead_reads;
            AheadHost::late.push_back({dst, &bytes_, offset, len});
            std::memset(dst, 0xEE, len); // junk until settled
            return guest::Status::Ok;
        }
        if (AheadHost::window != nullptr)
            ++AheadHost::ahead_reads; // made ahead, but the host read it at once
        std::memcpy(dst, bytes_.data() + offset, len);
        return guest::Status::Ok;
    }
    void close() override {}
    bool reads_ahead_safe() const override { return safe_; }
    int status_calls = 0;

private:
    const std::vector<std::uint8_t>& bytes_;
    bool safe_;
    std::uint64_t run_;
};

} // namespace instar::hosted
