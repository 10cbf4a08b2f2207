// qemu-img compare's walk (compare_engine.h).
#include "compare_engine.h"

#include "byte_scan.h"
#include "chain_reader.h"

namespace instar::convert {

using guest::Allocation;
using guest::Extent;
using guest::Status;

namespace {

constexpr uint64_t SECTOR = 512;
// qemu-img's IO_BUF_SIZE: the most compare reads of each image at a time, so its chunks (and hence
// its progress figures) are ours. Larger reads were measured no faster (1, 2, 4, 8, 16 MiB): the
// copy into guest memory and the comparison dominate, not the exits, and 2 MiB stays in cache.
constexpr uint64_t IO_BUF = 2u << 20;

uint64_t round_sector(uint64_t v) {
    return v > UINT64_MAX - (SECTOR - 1) ? UINT64_MAX / SECTOR * SECTOR : (v + SECTOR - 1) / SECTOR * SECTOR;
}

uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

// The protocol layer's answer for a RECURSE data run at file offset `at` (bdrv_co_block_status's
// want_zero recursion): a hole to the file's end adds ZERO to the whole run, another hole adds ZERO
// to the hole's length, data clips the run to the data's length.
Status file_status(guest::BlockDevice& dev, uint64_t at, uint64_t* run, uint32_t* flags) {
    const uint64_t size = dev.size();
    const uint64_t total = round_sector(size);
    if (at >= total) { // past the file: BDRV_BLOCK_EOF with no bytes
        *flags |= QBS_ZERO;
        return Status::Ok;
    }
    bool data = true;
    uint64_t n = 0;
    if (at >= size) {
        data = false;
        n = total - at;
    } else if (const Status st = dev.allocation(at, &data, &n); st != Status::Ok || n == 0) {
        return Status::Ok; // qemu ignores errors here: extra information only
    }
    if (at + n >= size)
        n = total - at; // the run reaching the file's end covers its rounded tail
    const uint64_t fp = n < *run ? n : *run;
    if (!data && at + fp == total) {
        *flags |= QBS_ZERO;
        return Status::Ok;
    }
    *run = fp;
    if (!data)
        *flags |= QBS_ZERO;
    return Status::Ok;
}

// bdrv_co_block_status of one layer (want_zero), in qemu's flag word.
Status layer_status(const CompareSide& s, uint32_t k, uint64_t offset, uint64_t bytes, uint32_t* ret,
                    uint64_t* pnum, bool* reader_data = nullptr) {
    if (reader_data != nullptr)
        *reader_data = false;
    guest::ImageReader& r = *s.chain[k];
    const uint64_t rvs = r.virtual_size();
    const uint64_t vs = round_sector(rvs);
    if (offset >= vs) {
        *ret = QBS_EOF;
        *pnum = 0;
        return Status::Ok;
    }
    if (bytes > vs - offset)
        bytes = vs - offset;
    const uint32_t lf = s.layer_flags[k];
    if ((lf & LAYER_NO_STATUS) != 0) {
        *ret = QBS_DATA | QBS_ALLOCATED | (offset + bytes == vs ? QBS_EOF : 0u);
        *pnum = bytes;
        return Status::Ok;
    }
    uint32_t flags = 0;
    uint64_t run = 0;
    if (offset >= rvs) { // the sub-sector tail qemu rounds the length up to: reads as zeros
        flags = QBS_ZERO | QBS_ALLOCATED;
        run = bytes;
    } else {
        uint64_t len = min64(bytes, rvs - offset);
        // qemu's driver answers no further than its own boundary (a qcow2 L2 slice, a vmdk grain):
        // compare steps by its answers, and -p prints by the steps.
        if (const uint64_t boundary = r.status_boundary(offset); boundary > offset && boundary - offset < len)
            len = boundary - offset;
        Extent e{};
        if (const Status st = r.status(offset, len, &e); st != Status::Ok)
            return st;
        if (e.length == 0 || e.length > len)
            return Status::Corrupt; // a reader broke its contract; never loop on it
        run = e.length;
        if (offset + run == rvs)
            run = vs - offset; // the run reaching the end covers the rounded tail
        if (e.allocation == Allocation::Data) {
            flags = QBS_DATA;
            if (reader_data != nullptr)
                *reader_data = true;
        }
        else if (e.allocation == Allocation::Zero)
            flags = QBS_ZERO;
        if ((e.flags & guest::EXTENT_OFFSET_VALID) != 0) {
            flags |= QBS_OFFSET_VALID;
            // RECURSE formats ask the protocol layer, whose holes add ZERO to DATA.
            if (e.allocation == Allocation::Zero && (lf & LAYER_HOLE_DATA) != 0)
                flags |= QBS_DATA;
            if (e.allocation == Allocation::Data && (lf & LAYER_RECURSE) != 0 && e.device == 0 &&
                s.layer_files != nullptr && s.layer_files[k] != nullptr) {
                if (const Status st = file_status(*s.layer_files[k], e.offset, &run, &flags); st != Status::Ok)
                    return st;
            }
        }
        if ((flags & (QBS_DATA | QBS_ZERO)) != 0)
            flags |= QBS_ALLOCATED;
        else if ((lf & LAYER_SUPPORTS_BACKING) != 0) {
            if (k + 1 == s.depth || offset >= round_sector(s.chain[k + 1]->virtual_size()))
                flags |= QBS_ZERO;
        }
    }
    if (offset + run == vs)
        flags |= QBS_EOF;
    *ret = flags;
    *pnum = run;
    return Status::Ok;
}



} // namespace

size_t first_diff_sector(const uint8_t* a, const uint8_t* b, size_t len) {
    if (!buffers_differ(a, b, len)) // the common case: one pass, no per-sector bookkeeping
        return len;
    for (size_t i = 0; i < len; i += SECTOR) {
        const size_t n = len - i < SECTOR ? len - i : SECTOR;
        if (buffers_differ(a + i, b + i, n))
            return i;
    }
    return len;
}

size_t first_nonzero_sector(const uint8_t* a, size_t len) {
    if (buffer_is_zero(a, len))
        return len;
    for (size_t i = 0; i < len; i += SECTOR) {
        const size_t n = len - i < SECTOR ? len - i : SECTOR;
        if (!buffer_is_zero(a + i, n))
            return i;
    }
    return len;
}

uint64_t side_length(const CompareSide& side) {
    return side.depth == 0 ? 0 : round_sector(side.chain[0]->virtual_size());
}

Status qemu_block_status(const CompareSide& s, uint64_t offset, uint64_t bytes, uint32_t* flags, uint64_t* pnum,
                         bool* top_data) {
    if (s.depth == 0 || s.chain == nullptr || s.layer_flags == nullptr || bytes == 0)
        return Status::Invalid;
    uint32_t ret = 0;
    if (const Status st = layer_status(s, 0, offset, bytes, &ret, pnum, top_data); st != Status::Ok)
        return st;
    if (*pnum == 0 || (ret & QBS_ALLOCATED) != 0) {
        *flags = ret;
        return Status::Ok;
    }
    const uint64_t eof = (ret & QBS_EOF) != 0 ? offset + *pnum : 0;
    bytes = *pnum;
    for (uint32_t k = 1; k < s.depth; ++k) {
        if (const Status st = layer_status(s, k, offset, bytes, &ret, pnum); st != Status::Ok)
            return st;
        if (*pnum == 0) { // a short backing layer: zeros synthesized past its end count as allocated
            *pnum = bytes;
            ret = QBS_ZERO | QBS_ALLOCATED;
            break;
        }
        if ((ret & QBS_ALLOCATED) != 0) {
            ret &= ~QBS_EOF;
            break;
        }
        bytes = *pnum;
    }
    if (offset + *pnum == eof)
        ret |= QBS_EOF;
    *flags = ret;
    return Status::Ok;
}

namespace {

struct Walk {
    const CompareSide* side[2];
    uint8_t* buf[2];
    CompareResult* result;
    // The last answer per side: offsets inside its run get the same word without asking again
    // (qemu's drivers answer the rest of a run with the rest of it). top_data: the top image's
    // reader said Data for the run, so its bytes come from the top reader directly.
    struct Run {
        uint64_t start = 0, end = 0;
        uint32_t flags = 0;
        bool top_data = false;
    } run[2];
    // Read-ahead (CompareParams::ahead): spare[i] receives side i's next chunk while buf[i]'s is
    // compared; `pending` until settled; ahead_offset/ahead_len the chunk both reads made whole
    // (UINT64_MAX: none).
    const ReadAheadHooks* hooks = nullptr;
    uint8_t* spare[2] = {nullptr, nullptr};
    bool ahead_on = false;
    bool pending = false;
    uint64_t ahead_offset = UINT64_MAX, ahead_len = 0;

    Status status(uint32_t i, uint64_t offset, uint64_t bytes, uint32_t* flags, uint64_t* pnum) {
        Run& r = run[i];
        if (offset < r.start || offset >= r.end) {
            uint64_t n = 0;
            if (const Status st = qemu_block_status(*side[i], offset, bytes, &r.flags, &n, &r.top_data);
                st != Status::Ok || n == 0) {
                r = Run{};
                return st != Status::Ok ? st : Status::Corrupt;
            }
            r.start = offset;
            r.end = offset + n;
        }
        *flags = r.flags;
        *pnum = min64(r.end - offset, bytes);
        return Status::Ok;
    }

    // Side i's read of [offset, offset + len) is the top reader's own when its run is data there.
    bool direct(uint32_t i, uint64_t offset, uint64_t len) const {
        const Run& r = run[i];
        return r.top_data && offset >= r.start && len <= r.end - offset &&
               offset + len <= side[i]->chain[0]->virtual_size();
    }

    Status read_into(uint32_t i, uint64_t offset, uint64_t len, uint8_t* dst) const {
        if (direct(i, offset, len))
            return side[i]->chain[0]->read(offset, dst, len);
        return ChainReader(side[i]->chain, side[i]->depth).read(offset, dst, len);
    }

    bool read(uint32_t i, uint64_t offset, uint64_t len) {
        if (const Status st = read_into(i, offset, len, buf[i]); st != Status::Ok) {
            result->outcome = CompareOutcome::ReadFailed;
            result->read_status = st;
            result->side = i;
            result->offset = offset;
            return false;
        }
        return true;
    }

    // check_empty_sectors: true when [offset, offset + len) of side i reads as zeros.
    bool empty(uint32_t i, uint64_t offset, uint64_t len) {
        if (!read(i, offset, len))
            return false;
        const size_t at = first_nonzero_sector(buf[i], len);
        if (at < len) {
            result->outcome = CompareOutcome::Mismatch;
            result->offset = offset + at;
            return false;
        }
        return true;
    }

    // Waits for the reads made ahead; true when they hold exactly [offset, offset + len) of both
    // sides, which then become buf[0] and buf[1]. A failed read ahead is made again in its place.
    bool take_ahead(uint64_t offset, uint64_t len) {
        if (!pending)
            return false;
        pending = false;
        const bool ok = hooks->settle_reads() == 0 && ahead_offset == offset && ahead_len == len;
        if (ok)
            for (uint32_t i = 0; i < 2; ++i) {
                uint8_t* t = buf[i];
                buf[i] = spare[i];
                spare[i] = t;
            }
        return ok;
    }

    // Reads the chunk at `next` of both sides ahead when the next step will surely read both
    // there: both are allocated and not both zero, -s would not stop there, and both reads allow
    // it. A side whose run does not cover `next` is asked for its status now, its reasons dropped
    // (the walk's own step then finds the answer in the run; a failure is asked again and
    // reported there, in order).
    void read_ahead(uint64_t next, uint64_t total, const uint64_t size[2], uint64_t cap, bool strict) {
        if (!ahead_on || next >= total)
            return;
        uint64_t len = cap;
        for (uint32_t i = 0; i < 2; ++i) {
            if (next < run[i].start || next >= run[i].end) {
                uint32_t flags = 0;
                uint64_t pnum = 0;
                if (hooks->quietly([&] { return status(i, next, size[i] - next, &flags, &pnum); }) != Status::Ok)
                    return;
            }
            if ((run[i].flags & QBS_ALLOCATED) == 0)
                return;
            len = min64(len, min64(run[i].end - next, size[i] - next));
        }
        if ((strict && run[0].flags != run[1].flags) || ((run[0].flags & run[1].flags & QBS_ZERO) != 0))
            return;
        for (uint32_t i = 0; i < 2; ++i) {
            const bool safe = direct(i, next, len) ? side[i]->chain[0]->reads_ahead_safe()
                                                   : ChainReader(side[i]->chain, side[i]->depth).reads_ahead_safe();
            if (!safe)
                return;
        }
        pending = true;
        bool whole = true;
        for (uint32_t i = 0; whole && i < 2; ++i)
            whole = hooks->ahead(spare[i], len, [&] { return read_into(i, next, len, spare[i]); }) == Status::Ok;
        ahead_offset = whole ? next : UINT64_MAX;
        ahead_len = len;
        ahead_on = hooks->reads_ahead(); // a host that reads at once overlaps nothing: stop
    }

    void settle() {
        if (pending)
            (void)hooks->settle_reads(); // the host is done with the buffers; a failure no step needed is moot
        pending = false;
    }
};

} // namespace

Status run_compare(const CompareSide& a, const CompareSide& b, const CompareParams& p, guest::Allocator& alloc,
                   CompareResult* result) {
    if (a.depth == 0 || b.depth == 0 || result == nullptr)
        return Status::Invalid;
    *result = CompareResult{};
    const uint64_t size[2] = {side_length(a), side_length(b)};
    const uint64_t total = min64(size[0], size[1]);
    const uint64_t base = size[0] > size[1] ? size[0] : size[1];
    if (p.strict && size[0] != size[1]) {
        result->outcome = CompareOutcome::SizeStrict;
        return Status::Ok;
    }
    Walk w{{&a, &b}, {nullptr, nullptr}, result, {}};
    const uint64_t cap = IO_BUF;
    auto release = [&] {
        uint8_t* const all[] = {w.buf[0], w.buf[1], w.spare[0], w.spare[1]};
        for (uint8_t* b : all)
            if (b != nullptr)
                alloc.deallocate(b, cap);
    };
    w.buf[0] = static_cast<uint8_t*>(alloc.allocate(cap, 64));
    w.buf[1] = static_cast<uint8_t*>(alloc.allocate(cap, 64));
    if (w.buf[0] == nullptr || w.buf[1] == nullptr) {
        release();
        return Status::NoMemory;
    }
    if (p.ahead.available()) {
        w.hooks = &p.ahead;
        w.spare[0] = static_cast<uint8_t*>(alloc.allocate(cap, 64));
        w.spare[1] = static_cast<uint8_t*>(alloc.allocate(cap, 64));
        w.ahead_on = w.spare[0] != nullptr && w.spare[1] != nullptr; // no room: read each chunk when it comes
    }
    auto done = [&](uint64_t chunk) {
        if (p.progress != nullptr)
            p.progress(p.progress_ctx, chunk, base);
    };
    bool go = true;
    uint64_t offset = 0;
    while (go && offset < total) {
        uint32_t st[2] = {};
        uint64_t pn[2] = {};
        for (uint32_t i = 0; i < 2; ++i) {
            if (w.status(i, offset, size[i] - offset, &st[i], &pn[i]) != Status::Ok) {
                result->outcome = CompareOutcome::StatusFailed;
                result->side = i;
                go = false;
                break;
            }
        }
        if (!go)
            break;
        uint64_t chunk = min64(pn[0], pn[1]);
        if (p.strict && st[0] != st[1]) {
            result->outcome = CompareOutcome::StatusStrict;
            result->offset = offset;
            break;
        }
        const bool al0 = (st[0] & QBS_ALLOCATED) != 0, al1 = (st[1] & QBS_ALLOCATED) != 0;
        if ((st[0] & QBS_ZERO) != 0 && (st[1] & QBS_ZERO) != 0) {
            // both read as zeros: nothing to read
        } else if (al0 == al1) {
            if (al0) {
                chunk = min64(chunk, cap);
                if (!w.take_ahead(offset, chunk) && (!w.read(0, offset, chunk) || !w.read(1, offset, chunk)))
                    break;
                w.read_ahead(offset + chunk, total, size, cap, p.strict);
                const size_t at = first_diff_sector(w.buf[0], w.buf[1], chunk);
                if (at < chunk) {
                    result->outcome = CompareOutcome::Mismatch;
                    result->offset = offset + at;
                    break;
                }
            }
        } else {
            chunk = min64(chunk, cap);
            if (!w.empty(al0 ? 0 : 1, offset, chunk))
                break;
        }
        offset += chunk;
        done(chunk);
    }
    w.settle();
    if (go && result->outcome == CompareOutcome::Identical && size[0] != size[1]) {
        result->size_mismatch = true;
        const uint32_t over = size[0] > size[1] ? 0 : 1;
        while (offset < base) {
            uint32_t st = 0;
            uint64_t chunk = 0;
            if (w.status(over, offset, base - offset, &st, &chunk) != Status::Ok) {
                result->outcome = CompareOutcome::StatusFailed;
                result->side = over;
                break;
            }
            if ((st & QBS_ALLOCATED) != 0 && (st & QBS_ZERO) == 0) {
                chunk = min64(chunk, cap);
                if (!w.empty(over, offset, chunk))
                    break;
            }
            offset += chunk;
            done(chunk);
        }
    }
    release();
    return Status::Ok;
}

} // namespace instar::convert
