// qemu-img check for QED: qemu's qed_check (block/qed-check.c) and, with -r, its repairs and the
// header updates of a read-write open and close (bdrv_qed_do_open, bdrv_qed_close).
#pragma once

#include <instar/guest/check_api.h>

#include <stdint.h>

namespace instar::qed {

// The check's bitmap of referenced clusters has one bit per host cluster: 2^31 bits (256 MiB) is
// 8 TiB of file at 4 KiB clusters, past which the check stops with "File too large".
inline constexpr uint64_t QED_CHECK_MAX_CLUSTERS = 1ull << 31;

struct QedImage;
struct QedHeader;

// A flush of the image's writes (the ordering point of repairs); fn nullptr: nothing to flush.
struct QedFlush {
    guest::Status (*fn)(void* ctx, guest::BlockDevice& dev);
    void* ctx;
    guest::Status call(guest::BlockDevice& dev) const { return fn ? fn(ctx, dev) : guest::Status::Ok; }
};

// Writes the 64-byte header (qed_write_header_sync).
guest::Status qed_write_header(guest::BlockDevice& dev, const QedHeader& h);
// qed_check on a loaded image: 0, or -errno when the check did not complete (qemu's return value).
int32_t qed_check_image(guest::BlockDevice& dev, guest::Allocator& alloc, QedImage& s, bool fix, QedFlush flush,
                        guest::CheckResult* result, guest::CheckSink* sink);
// What bdrv_qed_close does after a read-write open: flush, clear QED_F_NEED_CHECK, flush.
guest::Status qed_close_rw(guest::BlockDevice& dev, QedImage& s, QedFlush flush);

guest::Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* result);

} // namespace instar::qed
