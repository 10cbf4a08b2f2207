// qemu's parallels_co_check (prl_check.h).
#include "prl_check.h"

#include "prl_header.h"

namespace instar::parallels {

using guest::Status;
using guest::check_max_lines;

namespace {

constexpr int32_t CHECK_EBUSY = 16; // EBUSY: qemu's mark_used on a duplicate

// The shortest "cluster N is outside image" line: "ERROR cluster 0 is outside image".
constexpr size_t PRL_OUTSIDE_LINE_MIN = 32;

const char* word(bool fixing) { return fixing ? "Repairing" : "ERROR"; }

// Calls fn(i, entry) for every BAT entry inside the file, page by page; fn returns false to stop.
template <typename Fn>
Status each_entry(guest::BlockDevice& dev, const PrlImage& img, Fn&& fn) {
    const uint64_t scan = prl_entries_in_file(img, dev.size());
    uint32_t page[PRL_BAT_PAGE];
    for (uint64_t first = 0; first < scan; first += PRL_BAT_PAGE) {
        const uint64_t n = scan - first < PRL_BAT_PAGE ? scan - first : PRL_BAT_PAGE;
        if (const Status st = prl_read_bat(dev, first, n, page); st != Status::Ok)
            return st;
        for (uint64_t i = 0; i < n; ++i)
            if (!fn(first + i, page[i]))
                return Status::Ok;
    }
    return Status::Ok;
}

Status zero_entry(guest::BlockDevice& dev, uint64_t i) {
    const uint8_t zero[4] = {};
    return dev.write(prl_bat_entry_off(i), zero, 4);
}

void leak(const PrlImage& img, uint64_t size, guest::CheckSink& sink, guest::CheckResult* res) {
    if (size <= res->image_end_offset)
        return;
    const uint64_t excess = size - res->image_end_offset;
    // qemu truncates the file with -r leaks; instar cannot set the length here and says ERROR.
    guest::CheckLine().s("ERROR space leaked at the end of the image ").u(excess).emit(sink);
    res->leaks += (excess + img.cluster_size - 1) / img.cluster_size;
}

Status check_72(const guest::CheckRequest& req, PrlImage& img, guest::CheckSink& sink, guest::CheckResult* res) {
    guest::BlockDevice& dev = *req.image;
    const bool fix = (req.fix & guest::CHECK_FIX_ERRORS) != 0;
    const uint64_t size = img.file_size;
    res->total_clusters = img.bat_entries;
    uint64_t high = 0, prev = 0;
    Status wst = Status::Ok;
    const Status st = each_entry(dev, img, [&](uint64_t i, uint32_t e) {
        const uint64_t o = img.entry_sector(e) * PRL_SECTOR;
        if (o == 0) {
            prev = 0;
            return true;
        }
        if (o > size) {
            guest::CheckLine().s(word(fix)).s(" cluster ").u(i).s(" is outside image").emit(sink);
            res->corruptions++;
            if (fix) {
                prev = 0;
                wst = zero_entry(dev, i);
                if (wst != Status::Ok)
                    return false;
                res->corruptions_fixed++;
                return true;
            }
        }
        res->allocated_clusters++;
        if (o > high)
            high = o;
        if (prev != 0 && prev + img.cluster_size != o)
            res->fragmented_clusters++;
        prev = o;
        return true;
    });
    if (st != Status::Ok)
        return st;
    if (wst != Status::Ok) {
        res->check_errors++;
        res->error = -guest::CHECK_EIO;
        return Status::Ok;
    }
    res->image_end_offset = high + img.cluster_size;
    leak(img, size, sink, res);
    return Status::Ok;
}

Status check_10(const guest::CheckRequest& req, PrlImage& img, guest::CheckSink& sink, guest::CheckResult* res) {
    guest::BlockDevice& dev = *req.image;
    const bool fix = (req.fix & guest::CHECK_FIX_ERRORS) != 0;
    const uint64_t size = img.file_size;
    // data_end as open computed it (before any repair).
    uint64_t data_end;
    if (const Status st = prl_data_end(dev, img, req.qemu_version, &data_end); st != Status::Ok)
        return st;
    // data_off
    uint32_t start;
    if (!prl_test_data_off(img, size / PRL_SECTOR, &start)) {
        res->corruptions++;
        if (fix) {
            store_le32(img.raw + off::data_off, start);
            img.data_off = start;
            if (dev.write(0, img.raw, PRL_HEADER_SIZE) != Status::Ok) {
                res->check_errors++;
                res->error = -guest::CHECK_EIO;
                return Status::Ok;
            }
            res->corruptions_fixed++;
        }
        guest::CheckLine().s(word(fix)).s(" data_off field has incorrect value").emit(sink);
    }
    // outside image: every entry, a zero one included (0 + cluster > size on a short file).
    uint64_t high = 0;
    Status wst = Status::Ok;
    const uint64_t scan = prl_entries_in_file(img, size);
    auto outside = [&](uint64_t i, uint32_t e) {
        const uint64_t o = img.entry_sector(e) * PRL_SECTOR;
        if (o + img.cluster_size > size) {
            guest::CheckLine().s(word(fix)).s(" cluster ").u(i).s(" is outside image").emit(sink);
            res->corruptions++;
            if (fix) {
                if (e != 0)
                    wst = zero_entry(dev, i);
                if (wst != Status::Ok)
                    return false;
                res->corruptions_fixed++;
            }
            return true;
        }
        if (high < o)
            high = o;
        return true;
    };
    if (const Status st = each_entry(dev, img, outside); st != Status::Ok)
        return st;
    // Entries past the end of the file read as 0: outside only when the file is shorter than a cluster.
    // A 15 KB file may declare 2^29 of them (qemu prints a line each): the lines stop where the check
    // report is full, and the rest are counted without formatting lines nobody would see.
    if (wst == Status::Ok && img.cluster_size > size) {
        const uint64_t shown = check_max_lines(PRL_OUTSIDE_LINE_MIN);
        uint64_t i = scan;
        for (; i < img.bat_entries && i - scan < shown && outside(i, 0); ++i) {
        }
        if (wst == Status::Ok && i < img.bat_entries) {
            res->corruptions += img.bat_entries - i;
            if (fix)
                res->corruptions_fixed += img.bat_entries - i;
        }
    }
    if (wst != Status::Ok) {
        res->check_errors++;
        res->error = -guest::CHECK_EIO;
        return Status::Ok;
    }
    if (high == 0) {
        res->image_end_offset = data_end * PRL_SECTOR;
    } else {
        res->image_end_offset = high + img.cluster_size;
    }
    leak(img, size, sink, res);
    // duplicates: a bitmap of host clusters from data_start to the image end.
    const uint64_t data_start = uint64_t{start} * PRL_SECTOR;
    const uint64_t ieo = res->image_end_offset;
    uint64_t bits = static_cast<uint32_t>(static_cast<int64_t>(ieo - data_start) / static_cast<int64_t>(img.cluster_size));
    if (bits != 0) {
        if (ieo % img.cluster_size)
            ++bits;
        const uint64_t bytes = (bits + 7) / 8;
        auto* used = bytes <= PRL_CHECK_MAX_BITMAP_BYTES
                         ? static_cast<uint8_t*>(req.allocator->allocate(static_cast<size_t>(bytes), 8))
                         : nullptr;
        if (used == nullptr) {
            res->check_errors++;
            res->error = -guest::CHECK_ENOMEM;
            return Status::Ok;
        }
        __builtin_memset(used, 0, static_cast<size_t>(bytes));
        int32_t last = 0;
        const Status st = each_entry(dev, img, [&](uint64_t i, uint32_t e) {
            const uint64_t o = img.entry_sector(e) * PRL_SECTOR;
            if (o == 0)
                return true;
            // qemu: a uint32 cluster index; one past the bitmap is E2BIG, where qemu 10.0 asserts
            // (aborts). instar skips the entry instead (docs/formats/parallels.md).
            const uint64_t idx = static_cast<uint32_t>(static_cast<int64_t>(o - data_start) /
                                                       static_cast<int64_t>(img.cluster_size));
            if (idx + 1 > bits) {
                last = 0;
                return true;
            }
            uint8_t& b = used[idx / 8];
            const uint8_t bit = static_cast<uint8_t>(1u << (idx % 8));
            if ((b & bit) == 0) {
                b = static_cast<uint8_t>(b | bit);
                last = 0;
                return true;
            }
            last = -CHECK_EBUSY;
            // qemu copies the cluster to a new one with -r; instar leaves it (ERROR either way).
            guest::CheckLine().s("ERROR duplicate offset in BAT entry ").u(i).emit(sink);
            res->corruptions++;
            return true;
        });
        req.allocator->deallocate(used, static_cast<size_t>(bytes));
        if (st != Status::Ok)
            return st;
        if (last != 0) {
            res->error = last;
            return Status::Ok;
        }
    }
    // statistics
    res->total_clusters = img.bat_entries;
    uint64_t prev = 0;
    const Status st = each_entry(dev, img, [&](uint64_t, uint32_t e) {
        const uint64_t o = img.entry_sector(e) * PRL_SECTOR;
        if (o == 0 || o + img.cluster_size > ieo) {
            prev = 0;
            return true;
        }
        if (prev != 0 && prev + img.cluster_size != o)
            res->fragmented_clusters++;
        prev = o;
        res->allocated_clusters++;
        return true;
    });
    return st;
}

} // namespace

Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* res) {
    if (req.image == nullptr || req.allocator == nullptr || res == nullptr)
        return Status::Invalid;
    *res = guest::CheckResult{};
    PrlImage img;
    const char* why = nullptr;
    if (const Status st = prl_load(*req.image, req.qemu_version, &img, &why); st != Status::Ok)
        return st;
    const bool fix = (req.fix & guest::CHECK_FIX_ERRORS) != 0;
    if (img.unclean()) {
        guest::CheckLine().s(word(fix)).s(" image was not closed correctly").emit(sink);
        res->corruptions++;
        if (fix)
            res->corruptions_fixed++; // cleared below, after every other repair (qemu: at close)
    }
    Status st = prl_v10(req.qemu_version) ? check_10(req, img, sink, res) : check_72(req, img, sink, res);
    if (st == Status::Ok && fix && img.unclean() && res->error == 0) {
        // Last, as qemu's close does it: a crash before this leaves the image marked unclean.
        store_le32(img.raw + off::inuse, 0);
        img.inuse = 0;
        if (req.image->write(0, img.raw, PRL_HEADER_SIZE) != Status::Ok) {
            res->check_errors++;
            res->error = -guest::CHECK_EIO;
        }
    }
    if (st == Status::Ok && req.fix != 0 && req.flush != nullptr && req.flush(*req.image) != Status::Ok) {
        res->check_errors++;
        res->error = -guest::CHECK_EIO;
    }
    return st;
}

} // namespace instar::parallels
