// qemu's vdi_co_check (vdi_check.h).
#include "vdi_check.h"

#include "vdi_header.h"
#include "vdi_read.h"

namespace instar::vdi {

using guest::Status;

Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* res) {
    if (req.image == nullptr || req.allocator == nullptr || res == nullptr)
        return Status::Invalid;
    *res = guest::CheckResult{};
    VdiImage img;
    if (const Status st = vdi_load(*req.image, &img, nullptr); st != Status::Ok)
        return st;
    if (req.fix != 0) {
        res->error = -guest::CHECK_ENOTSUP; // qemu: "This image format does not support checks"
        return Status::Ok;
    }
    // One bit per block number: which blocks some entry already uses. qemu allocates a 4-byte map
    // per block; the bits cost 1/32 of that (at most 64 MiB for qemu's largest image). When the arena
    // cannot hold them, qemu's own answer to a failed allocation: a check error and ENOMEM.
    const uint64_t blocks = img.blocks_in_image;
    const size_t used_bytes = static_cast<size_t>((blocks + 7) / 8);
    auto* used = static_cast<uint8_t*>(used_bytes ? req.allocator->allocate(used_bytes, 8) : nullptr);
    if (used_bytes && used == nullptr) {
        res->check_errors++;
        res->error = -guest::CHECK_ENOMEM;
        return Status::Ok;
    }
    __builtin_memset(used, 0, used_bytes);
    uint32_t page[VDI_BMAP_PAGE_ENTRIES];
    uint32_t allocated = 0;
    Status st = Status::Ok;
    for (uint64_t first = 0; first < blocks && st == Status::Ok; first += VDI_BMAP_PAGE_ENTRIES) {
        const uint64_t count = blocks - first < VDI_BMAP_PAGE_ENTRIES ? blocks - first : VDI_BMAP_PAGE_ENTRIES;
        st = vdi_read_entries(*req.image, img, first, count, page);
        for (uint64_t i = 0; st == Status::Ok && i < count; ++i) {
            const uint32_t e = page[i];
            if (!vdi_is_allocated(e))
                continue;
            if (e < blocks) {
                ++allocated;
                uint8_t& byte = used[e / 8];
                const uint8_t bit = static_cast<uint8_t>(1u << (e % 8));
                if ((byte & bit) == 0) {
                    byte = static_cast<uint8_t>(byte | bit);
                } else {
                    // qemu prints the entry twice: its map slot holds the entry itself by then.
                    guest::CheckLine().s("ERROR: block index ").u(e).s(" also used by ").u(e).emit(sink);
                    res->corruptions++;
                }
            } else {
                guest::CheckLine().s("ERROR: block index ").u(first + i).s(" too large, is ").u(e).emit(sink);
                res->corruptions++;
            }
        }
    }
    if (used)
        req.allocator->deallocate(used, used_bytes);
    if (st != Status::Ok)
        return st;
    if (allocated != img.blocks_allocated) {
        guest::CheckLine()
            .s("ERROR: allocated blocks mismatch, is ")
            .u(allocated)
            .s(", should be ")
            .u(img.blocks_allocated)
            .emit(sink);
        res->corruptions++;
    }
    return Status::Ok;
}

} // namespace instar::vdi
