// The Parallels emitter (prl_create.h).
#include "prl_create.h"

namespace instar::parallels {

using guest::Status;

namespace {
// qemu's MAX_PARALLELS_IMAGE_FACTOR: a BAT entry is 32 bits, so at most 2^32 clusters.
constexpr uint64_t PRL_IMAGE_FACTOR = uint64_t{1} << 32;
constexpr uint64_t INT64_MAX_U = (uint64_t{1} << 63) - 1;
} // namespace

Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, PrlImage* out) {
    uint64_t cl = PRL_DEFAULT_CLUSTER;
    if (!guest::create_option_u64(req, "cluster_size", PRL_DEFAULT_CLUSTER, &cl))
        return guest::create_fail(target, Status::Invalid, "Parameter 'cluster-size' expects a size");
    // "Silently round up sizes" (qemu: ROUND_UP to 512 in int64; values this large are refused below).
    const uint64_t size = req.size > INT64_MAX_U - 511 ? req.size : (req.size + 511) / 512 * 512;
    if (cl <= INT64_MAX_U - 511)
        cl = (cl + 511) / 512 * 512;
    if (cl >= INT64_MAX_U / PRL_IMAGE_FACTOR)
        return guest::create_fail(target, Status::Invalid, "Cluster size is too large");
    if (size >= PRL_IMAGE_FACTOR * cl)
        return guest::create_fail(target, Status::TooLarge, "Image size is too large for this cluster size");
    // cl >= 512 from here (0 was refused: every size is >= 0 * 2^32).
    const uint64_t bat_entries = (size + cl - 1) / cl; // < 2^32
    // qemu's bat_entry_off returns uint32_t: the BAT's byte length wraps at 4 GiB as qemu's does.
    const uint32_t bat_bytes = static_cast<uint32_t>(prl_bat_entry_off(bat_entries));
    const uint64_t bat_clusters = (uint64_t{bat_bytes} + cl - 1) / cl;
    const uint32_t bat_sectors = static_cast<uint32_t>((bat_clusters * cl) >> 9);
    target.resolved_unit_size(cl);

    PrlImage& img = *out;
    __builtin_memset(&img, 0, sizeof img);
    uint8_t* h = img.raw;
    for (size_t i = 0; i < 16; ++i)
        h[off::magic + i] = static_cast<uint8_t>(PRL_MAGIC2[i]);
    store_le32(h + off::version, PRL_VERSION);
    store_le32(h + off::heads, PRL_HEADS);
    store_le32(h + off::cylinders, static_cast<uint32_t>(size / PRL_SECTOR / PRL_HEADS / PRL_SEC_IN_CYL));
    store_le32(h + off::tracks, static_cast<uint32_t>(cl >> 9));
    store_le32(h + off::bat_entries, static_cast<uint32_t>(bat_entries));
    store_le64(h + off::nb_sectors, size / PRL_SECTOR);
    store_le32(h + off::data_off, bat_sectors);
    img.tracks = static_cast<uint32_t>(cl >> 9);
    img.off_multiplier = img.tracks;
    img.bat_entries = static_cast<uint32_t>(bat_entries);
    img.data_off = bat_sectors;
    img.total_sectors = size / PRL_SECTOR;
    img.cluster_size = cl;

    guest::BlockDevice& dev = target.image();
    uint8_t sector[PRL_SECTOR] = {};
    for (size_t i = 0; i < PRL_HEADER_SIZE; ++i)
        sector[i] = h[i];
    if (const Status st = dev.write(0, sector, sizeof sector); st != Status::Ok)
        return guest::create_fail(target, st, "Failed to create Parallels image: Input/output error");
    // qemu: write_zeroes over [512, bat_sectors * 512), past the end of the new file (fallocate).
    if (bat_sectors > 1)
        if (const Status st = target.set_length(dev, uint64_t{bat_sectors} * PRL_SECTOR, guest::Prealloc::Falloc);
            st != Status::Ok)
            return guest::create_fail(target, st, "Failed to create Parallels image: Input/output error");
    img.file_size = dev.size();
    return Status::Ok;
}

Status create(const guest::CreateRequest& req, guest::CreateTarget& target) {
    PrlImage img;
    return create_image(req, target, &img);
}

} // namespace instar::parallels
