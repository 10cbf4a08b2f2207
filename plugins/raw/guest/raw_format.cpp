// The raw format's guest half: partition-table probe and `info`.
#include "raw_format.h"

#include "raw_detect_partition.h"

namespace instar::raw {

using guest::Status;

namespace {

constexpr uint32_t SECTOR_SIZES[] = {512, 4096}; // GPT header at LBA 1 for either sector size

} // namespace

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    uint8_t sector[MBR_SIZE];
    if (dev.size() >= MBR_SIZE && dev.read(0, sector, MBR_SIZE) == Status::Ok && mbr_plausible(sector, MBR_SIZE)) {
        *match = true;
        return Status::Ok;
    }
    for (uint32_t ss : SECTOR_SIZES) {
        uint8_t hdr[sizeof(GptHeaderDisk)];
        if (dev.size() >= ss + sizeof hdr && dev.read(ss, hdr, sizeof hdr) == Status::Ok &&
            gpt_plausible(hdr, sizeof hdr, ss)) {
            *match = true;
            return Status::Ok;
        }
    }
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr)
        return Status::Invalid;
    // qemu counts whole 512-byte sectors: a partial last sector rounds the size up.
    const uint64_t size = req.image->size();
    if (size > ~uint64_t{0} - 511)
        return Status::TooLarge;
    sink.format("raw");
    sink.virtual_size((size + 511) & ~uint64_t{511});
    sink.dirty(false); // qemu-img reports "dirty-flag": false for raw
    return Status::Ok;
}

} // namespace instar::raw
