// The Parallels header (prl_header.h).
#include "prl_header.h"

#include "prl_ext.h"

#include <instar/guest/format_util.h>

namespace instar::parallels {

using guest::Status;

namespace {
bool same16(const uint8_t* a, const char* b) {
    for (size_t i = 0; i < 16; ++i)
        if (a[i] != static_cast<uint8_t>(b[i]))
            return false;
    return true;
}
} // namespace

Status prl_load(guest::BlockDevice& dev, uint32_t qemu_version, PrlImage* img, const char** why, PrlAccess access) {
    __builtin_memset(img, 0, sizeof *img);
    const uint64_t file = dev.size();
    img->file_size = (file + PRL_SECTOR - 1) / PRL_SECTOR * PRL_SECTOR;
    // qemu reads 64 bytes; past the end of the file they read as zeros.
    const size_t have = file < PRL_HEADER_SIZE ? static_cast<size_t>(file) : PRL_HEADER_SIZE;
    if (have > 0)
        if (const Status st = dev.read(0, img->raw, have); st != Status::Ok)
            return st;
    const uint8_t* h = img->raw;
    img->total_sectors = load_le64(h + off::nb_sectors);
    const char* format = "Image not in Parallels format";
    if (load_le32(h + off::version) != PRL_VERSION) {
        *why = format;
        return Status::Invalid;
    }
    img->tracks = load_le32(h + off::tracks);
    if (same16(h, PRL_MAGIC)) {
        img->old_magic = true;
        img->off_multiplier = 1;
        img->total_sectors &= 0xffffffffu;
    } else if (same16(h, PRL_MAGIC2)) {
        img->off_multiplier = img->tracks;
    } else {
        *why = format;
        return Status::Invalid;
    }
    if (img->tracks == 0) {
        *why = "Invalid image: Zero sectors per track";
        return Status::Invalid;
    }
    if (img->tracks > PRL_MAX_TRACKS) {
        *why = "Invalid image: Too big cluster";
        return Status::TooLarge;
    }
    img->cluster_size = uint64_t{img->tracks} * PRL_SECTOR;
    img->bat_entries = load_le32(h + off::bat_entries);
    if (img->bat_entries > PRL_MAX_BAT) {
        *why = "Catalog too large";
        return Status::TooLarge;
    }
    img->ext_off = load_le64(h + off::ext_off);
    // qemu 7.2 shifts a larger one past 63 bits and aborts: refused as 10.0 refuses it (the only
    // check here that once depended on the profile).
    (void)qemu_version;
    if (img->ext_off >= PRL_MAX_EXT_OFF) {
        *why = "Invalid image: Too big offset";
        return Status::TooLarge;
    }
    const uint64_t table = prl_bat_entry_off(img->bat_entries);
    if ((table + PRL_QEMU_MEM_ALIGN - 1) / PRL_QEMU_MEM_ALIGN * PRL_QEMU_MEM_ALIGN > PRL_QEMU_MAX_REQUEST) {
        *why = "Could not open '{image}': Input/output error";
        return Status::IoError;
    }
    img->inuse = load_le32(h + off::inuse);
    img->data_off = load_le32(h + off::data_off);
    // qemu's virtual size must fit an int64 (bdrv_getlength: EFBIG).
    if (img->total_sectors > (uint64_t{1} << 63) / PRL_SECTOR - 1) {
        *why = "Could not get the image size: File too large";
        return Status::TooLarge;
    }
    if (img->ext_off != 0 && access == PrlAccess::Write) {
        *why = "The Parallels Format Extension (dirty bitmaps) is not written by instar: qemu would ignore it and "
               "write over it (divergence parallels-format-extension)";
        return Status::Unsupported;
    }
    if (img->ext_off != 0)
        return prl_check_extension(dev, *img, why);
    return Status::Ok;
}

Status prl_read_bat(guest::BlockDevice& dev, uint64_t first, uint64_t count, uint32_t* out) {
    uint8_t raw[PRL_BAT_PAGE * 4];
    if (count > PRL_BAT_PAGE)
        return Status::Invalid;
    if (const Status st = guest::read_padded(dev, prl_bat_entry_off(first), raw, static_cast<size_t>(count * 4));
        st != Status::Ok)
        return st;
    for (uint64_t i = 0; i < count; ++i)
        out[i] = load_le32(raw + 4 * i);
    return Status::Ok;
}

bool prl_test_data_off(const PrlImage& img, uint64_t file_sectors, uint32_t* start) {
    // qemu computes bat_entry_off in uint32: 64 + 4 * bat_entries < 2^31 here, no truncation.
    uint64_t min_off = (prl_bat_entry_off(img.bat_entries) + PRL_SECTOR - 1) / PRL_SECTOR;
    if (!img.old_magic)
        min_off = (min_off + img.tracks - 1) / img.tracks * img.tracks;
    *start = static_cast<uint32_t>(min_off); // < 2^23 * 2^22 / ... : qemu's uint32 as well
    if (img.data_off == 0 && img.old_magic)
        return true;
    if (img.data_off < min_off || img.data_off > file_sectors)
        return false;
    *start = img.data_off;
    return true;
}

Status prl_data_end(guest::BlockDevice& dev, const PrlImage& img, uint32_t qemu_version, uint64_t* out) {
    const bool v10 = prl_v10(qemu_version);
    uint64_t end;
    if (v10) {
        uint32_t start;
        prl_test_data_off(img, (dev.size() + PRL_SECTOR - 1) / PRL_SECTOR, &start);
        end = start;
    } else {
        end = img.data_off;
        // qemu 7.2 sets data_end to a byte count here (ROUND_UP(bat_entry_off, 512)), not sectors.
        if (end == 0)
            end = (prl_bat_entry_off(img.bat_entries) + PRL_SECTOR - 1) / PRL_SECTOR * PRL_SECTOR;
    }
    // Entries past the end of the file read as 0: their sector is 0.
    const uint64_t file = dev.size();
    uint64_t in_file = 0;
    if (file > PRL_HEADER_SIZE)
        in_file = (file - PRL_HEADER_SIZE) / 4;
    const uint64_t scan = in_file < img.bat_entries ? in_file : img.bat_entries;
    uint32_t page[PRL_BAT_PAGE];
    if (v10 && scan < img.bat_entries && img.tracks > end)
        end = img.tracks; // an entry reading as 0: sector 0 + tracks
    for (uint64_t first = 0; first < scan; first += PRL_BAT_PAGE) {
        const uint64_t n = scan - first < PRL_BAT_PAGE ? scan - first : PRL_BAT_PAGE;
        if (const Status st = prl_read_bat(dev, first, n, page); st != Status::Ok)
            return st;
        for (uint64_t i = 0; i < n; ++i) {
            const uint64_t s = img.entry_sector(page[i]);
            if (v10) {
                if (s + img.tracks > end)
                    end = s + img.tracks;
            } else if (s >= end) {
                end = s + img.tracks;
            }
        }
    }
    *out = end;
    return Status::Ok;
}

} // namespace instar::parallels
