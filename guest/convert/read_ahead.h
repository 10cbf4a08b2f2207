// Read-ahead hooks shared by convert's and compare's walks (docs/convert.md, "Read-ahead"): how a
// walk asks the runtime to let the host answer device reads at once and make them while the walk
// goes on. Freestanding; nullptr hooks (tests, fuzz targets) mean no read-ahead.
#pragma once

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::convert {

struct ReadAheadHooks {
    // With all three set, a walk may read its next chunk of a reader that allows it
    // (ImageReader::reads_ahead_safe) into a second buffer inside read_ahead(buf, len) (len 0 after
    // it), so the host may answer those device reads at once and read while the walk works on the
    // current chunk; it calls settle_reads() (0, or the reads' first failure) before it touches that
    // buffer again. Once a read ahead has been made, reads_ahead() says whether the host does read
    // late; if not, the walk stops reading ahead (nothing would overlap).
    void (*read_ahead)(const void* buf, uint64_t len) = nullptr;
    int64_t (*settle_reads)() = nullptr;
    bool (*reads_ahead)() = nullptr;
    // Around a read made ahead: quiet_reasons(quiet_ctx, true), then false. Reasons the readers give
    // meanwhile are dropped: a read that fails ahead is made again when its chunk comes, and gives
    // its reason then, in order (the host keeps only the first reason). nullptr: nothing dropped.
    void (*quiet_reasons)(void* ctx, bool quiet) = nullptr;
    void* quiet_ctx = nullptr;

    bool available() const { return read_ahead != nullptr && settle_reads != nullptr && reads_ahead != nullptr; }

    // Runs call() with the readers' reasons dropped (work a walk does early: it is done again in its
    // place, and gives them then); returns what call() returns.
    template <typename Call>
    guest::Status quietly(Call call) const {
        if (quiet_reasons != nullptr)
            quiet_reasons(quiet_ctx, true);
        const guest::Status st = call();
        if (quiet_reasons != nullptr)
            quiet_reasons(quiet_ctx, false);
        return st;
    }

    // Runs read() quietly with the device reads into [buf, buf + len) made ahead; returns what
    // read() returns.
    template <typename Read>
    guest::Status ahead(const void* buf, uint64_t len, Read read) const {
        return quietly([&] {
            read_ahead(buf, len);
            const guest::Status st = read();
            read_ahead(nullptr, 0);
            return st;
        });
    }
};

} // namespace instar::convert
