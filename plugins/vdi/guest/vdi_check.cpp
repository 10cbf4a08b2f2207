// qemu's vdi_co_check (vdi_check.h).
#include "vdi_check.h"

#include "vdi_header.h"
#include "vdi_read.h"

namespace instar::vdi {

using guest::Status;

namespace {
// Lines printed for the run of zero entries a block map past the end of the file reads as: 2^19
// lines of 36 bytes (18 MiB) exceed the 12 MiB of text the runtime passes on, so the output matches
// qemu's as far as instar shows it, while a 1 KiB file claiming 2^29 blocks costs no more.
constexpr uint64_t VDI_CHECK_MAX_REPEATED_LINES = uint64_t{1} << 19;
} // namespace

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
        if (uint64_t{img.offset_bmap} + first * 4 >= req.image->size()) {
            // The rest of the map lies past the end of the file: every entry reads as 0 (qemu's block
            // layer), block 0 used again and again. Counted at once, with a bounded number of lines
            // (more than the runtime passes on, so its truncation notice still appears).
            uint64_t repeats = blocks - first;
            ++allocated;
            if ((used[0] & 1u) == 0) {
                used[0] = static_cast<uint8_t>(used[0] | 1u);
                --repeats;
            }
            allocated += static_cast<uint32_t>(blocks - first - 1); // blocks <= VDI_BLOCKS_IN_IMAGE_MAX
            for (uint64_t k = 0; k < repeats && k < VDI_CHECK_MAX_REPEATED_LINES; ++k)
                guest::CheckLine().s("ERROR: block index 0 also used by 0").emit(sink);
            res->corruptions += repeats;
            break;
        }
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
