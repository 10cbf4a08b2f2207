// qemu's parallels_co_check (prl_check.h).
#include "prl_check.h"

#include "prl_header.h"
#include "prl_used.h"

namespace instar::parallels {

using guest::Status;
using guest::check_max_lines;

namespace {

constexpr int32_t CHECK_EBUSY = 16; // EBUSY: qemu's mark_used on a duplicate

// Bytes copied per device request when a duplicate cluster is copied to a new one.
constexpr size_t PRL_COPY_CHUNK = 65536;

// The shortest "cluster N is outside image" line: "ERROR cluster 0 is outside image".
constexpr size_t PRL_OUTSIDE_LINE_MIN = 32;

const char* word(bool fixing) { return fixing ? "Repairing" : "ERROR"; }

// Copies the cluster at byte `from` to `to` (a new cluster, written whole) and makes it durable, so
// the BAT entry switched afterwards never points at a cluster not yet written. 0 or -EIO.
int32_t copy_cluster(const guest::CheckRequest& req, const PrlImage& img, uint64_t from, uint64_t to) {
    auto* buf = static_cast<uint8_t*>(req.allocator->allocate(PRL_COPY_CHUNK, 8));
    if (buf == nullptr)
        return -guest::CHECK_ENOMEM;
    Status st = Status::Ok;
    for (uint64_t done = 0; st == Status::Ok && done < img.cluster_size; done += PRL_COPY_CHUNK) {
        const size_t n = static_cast<size_t>(img.cluster_size - done < PRL_COPY_CHUNK ? img.cluster_size - done
                                                                                       : PRL_COPY_CHUNK);
        st = req.image->read(from + done, buf, n);
        if (st == Status::Ok)
            st = req.image->write(to + done, buf, n);
    }
    req.allocator->deallocate(buf, PRL_COPY_CHUNK);
    if (st == Status::Ok && req.flush != nullptr)
        st = req.flush(*req.image);
    return st == Status::Ok ? 0 : -guest::CHECK_EIO;
}

// BAT entry `i` now names the cluster at byte `at` (qemu: at / 512 / off_multiplier, as uint32).
int32_t set_entry(const guest::CheckRequest& req, const PrlImage& img, uint32_t i, uint64_t at) {
    uint8_t raw[4];
    store_le32(raw, static_cast<uint32_t>(at / PRL_SECTOR / img.off_multiplier));
    return req.image->write(prl_bat_entry_off(i), raw, 4) == Status::Ok ? 0 : -guest::CHECK_EIO;
}

Status zero_entry(guest::BlockDevice& dev, uint64_t i) {
    const uint8_t zero[4] = {};
    return dev.write(prl_bat_entry_off(i), zero, 4);
}

// qemu's leak check: space past the image end offset is reported (explicit) and, with -r leaks,
// cut off. The BAT repairs before it are made durable first, so a kill leaves no entry pointing
// into the cut space. A host without set_length (a hosted caller) gets qemu's report unrepaired.
Status leak(const guest::CheckRequest& req, const PrlImage& img, uint64_t size, bool explicit_, guest::CheckSink& sink,
            guest::CheckResult* res) {
    if (size <= res->image_end_offset)
        return Status::Ok;
    const uint64_t excess = size - res->image_end_offset;
    const uint64_t count = (excess + img.cluster_size - 1) / img.cluster_size;
    const bool fix = (req.fix & guest::CHECK_FIX_LEAKS) != 0 && req.set_length != nullptr;
    if (explicit_) {
        guest::CheckLine().s(fix ? "Repairing" : "ERROR").s(" space leaked at the end of the image ").u(excess).emit(sink);
        res->leaks += count;
    }
    if (!fix)
        return Status::Ok;
    if ((req.flush != nullptr && req.flush(*req.image) != Status::Ok) ||
        req.set_length(*req.image, res->image_end_offset) != Status::Ok) {
        res->check_errors++;
        res->error = -guest::CHECK_EIO;
        return Status::IoError;
    }
    if (explicit_)
        res->leaks_fixed += count;
    return Status::Ok;
}

// Both set *data_end to qemu's s->data_end when its close would cut the file (sectors).
Status check_72(const guest::CheckRequest& req, PrlImage& img, guest::CheckSink& sink, guest::CheckResult* res,
                uint64_t* data_end) {
    guest::BlockDevice& dev = *req.image;
    const bool fix = (req.fix & guest::CHECK_FIX_ERRORS) != 0;
    const uint64_t size = img.file_size;
    // 7.2's check never moves the data end open computed.
    if (const Status st = prl_data_end(dev, img, req.qemu_version, data_end); st != Status::Ok)
        return st;
    res->total_clusters = img.bat_entries;
    uint64_t high = 0, prev = 0;
    Status wst = Status::Ok;
    const Status st = prl_each_entry(dev, img, [&](uint64_t i, uint32_t e) {
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
    leak(req, img, size, true, sink, res);
    return Status::Ok;
}

Status check_10(const guest::CheckRequest& req, PrlImage& img, guest::CheckSink& sink, guest::CheckResult* res,
                uint64_t* data_end_out) {
    guest::BlockDevice& dev = *req.image;
    const bool fix = (req.fix & guest::CHECK_FIX_ERRORS) != 0;
    const uint64_t size = img.file_size;
    // data_end as open computed it (before any repair); the checks move it.
    uint64_t& data_end = *data_end_out;
    if (const Status st = prl_data_end(dev, img, req.qemu_version, &data_end); st != Status::Ok)
        return st;
    // qemu's open fills its used-cluster map only when the image needs no check (a clean header, a
    // valid data_off, the data end inside the file); the data_off repair fills it again. Only the
    // duplicate repair allocates from it.
    const bool fixing_dups = fix && req.set_length != nullptr;
    PrlUsedMap map(*req.allocator, PRL_CHECK_MAX_BITMAP_BYTES);
    uint32_t start;
    const bool data_off_ok = prl_test_data_off(img, size / PRL_SECTOR, &start);
    if (fixing_dups && !img.unclean() && data_off_ok && data_end <= size / PRL_SECTOR &&
        map.fill(dev, img, uint64_t{start} * PRL_SECTOR, size) == Status::NoMemory) {
        res->check_errors++;
        res->error = -guest::CHECK_ENOMEM;
        return Status::Ok;
    }
    // data_off
    if (!data_off_ok) {
        res->corruptions++;
        if (fix) {
            store_le32(img.raw + off::data_off, start);
            img.data_off = start;
            if (dev.write(0, img.raw, PRL_HEADER_SIZE) != Status::Ok) {
                res->check_errors++;
                res->error = -guest::CHECK_EIO;
                return Status::Ok;
            }
            if (fixing_dups && map.fill(dev, img, uint64_t{start} * PRL_SECTOR, size) == Status::NoMemory) {
                res->check_errors++;
                res->error = -guest::CHECK_ENOMEM;
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
    if (const Status st = prl_each_entry(dev, img, outside); st != Status::Ok)
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
        data_end = res->image_end_offset / PRL_SECTOR;
    }
    if (leak(req, img, size, true, sink, res) != Status::Ok)
        return Status::Ok;
    // duplicates: a bitmap of host clusters from data_start to the image end.
    const uint64_t data_start = uint64_t{start} * PRL_SECTOR;
    uint64_t& ieo = res->image_end_offset; // a repaired duplicate may move it
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
        int32_t last = 0, failed = 0;
        bool fixed = false;
        const Status st = prl_each_entry(dev, img, [&](uint64_t i, uint32_t e) {
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
            guest::CheckLine().s(word(fixing_dups)).s(" duplicate offset in BAT entry ").u(i).emit(sink);
            res->corruptions++;
            if (!fixing_dups)
                return true;
            // qemu copies the cluster to a new one (a hole of its used map first, else the data end).
            uint64_t at = 0;
            failed = map.allocate(img, data_start, &data_end, &at);
            if (failed == 0)
                failed = copy_cluster(req, img, o, at);
            if (failed == 0) {
                const uint64_t nidx = prl_host_cluster(img, data_start, at);
                if (nidx + 1 <= bits && (used[nidx / 8] >> (nidx % 8)) & 1u)
                    failed = -CHECK_EBUSY; // qemu restores the entry: nothing was switched yet
                else if (nidx + 1 <= bits)
                    used[nidx / 8] = static_cast<uint8_t>(used[nidx / 8] | (1u << (nidx % 8)));
            }
            if (failed == 0)
                failed = set_entry(req, img, uint32_t(i), at);
            if (failed != 0) {
                res->check_errors++;
                return false;
            }
            if (at + img.cluster_size > ieo)
                ieo = at + img.cluster_size;
            fixed = true;
            res->corruptions_fixed++;
            return true;
        });
        req.allocator->deallocate(used, static_cast<size_t>(bytes));
        if (st != Status::Ok)
            return st;
        if (failed != 0) {
            res->error = failed;
            return Status::Ok;
        }
        if (fixed) {
            // qemu's allocation grew the file by its preallocation; the leak fix cuts it back silently.
            if (leak(req, img, (dev.size() + PRL_SECTOR - 1) / PRL_SECTOR * PRL_SECTOR, false, sink, res) != Status::Ok)
                return Status::Ok;
        } else if (last != 0) {
            res->error = last;
            return Status::Ok;
        }
    }
    // statistics
    res->total_clusters = img.bat_entries;
    uint64_t prev = 0;
    const Status st = prl_each_entry(dev, img, [&](uint64_t, uint32_t e) {
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
    if (const Status st = prl_load(*req.image, req.qemu_version, &img, &why,
                                   req.fix != 0 ? PrlAccess::Write : PrlAccess::Read);
        st != Status::Ok) {
        // A repair of an image with a format extension (qemu's would destroy it): refused with the
        // reason on stderr and qemu's failed-check line (EINVAL); nothing was written.
        if (st != Status::Unsupported || why == nullptr)
            return st;
        guest::CheckLine().s("\x01").s(why).emit(sink);
        res->error = -guest::CHECK_EINVAL;
        return Status::Ok;
    }
    const bool fix = (req.fix & guest::CHECK_FIX_ERRORS) != 0;
    if (img.unclean()) {
        guest::CheckLine().s(word(fix)).s(" image was not closed correctly").emit(sink);
        res->corruptions++;
        if (fix)
            res->corruptions_fixed++; // cleared below, after every other repair (qemu: at close)
    }
    uint64_t data_end = 0;
    Status st = prl_v10(req.qemu_version) ? check_10(req, img, sink, res, &data_end)
                                          : check_72(req, img, sink, res, &data_end);
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
    // qemu's close cuts (or grows) the file to data_end. After a repair it does so only after
    // qemu-img's double check, which instar runs as a second read-only pass: then the length stays
    // as the repair left it (parallels-check-repairs; the same except where 7.2 grows the file).
    // With nothing repaired there is no second pass: the file gets qemu's length now.
    if (st == Status::Ok && req.fix != 0 && req.set_length != nullptr && res->corruptions_fixed == 0 &&
        res->leaks_fixed == 0 && data_end * PRL_SECTOR != req.image->size() &&
        req.set_length(*req.image, data_end * PRL_SECTOR) != Status::Ok) {
        res->check_errors++;
        res->error = -guest::CHECK_EIO;
    }
    return st;
}

} // namespace instar::parallels
