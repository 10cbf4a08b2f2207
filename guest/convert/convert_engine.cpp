// qemu-img convert's copy loop over ImageReaders and an ImageWriter (convert_engine.h). The names
// follow qemu-img.c so the port can be checked against it line by line; counts are in 512-byte
// sectors as there.
#include "convert_engine.h"

#include "byte_scan.h"
#include "chain_reader.h"

namespace instar::convert {

using guest::ImageWriter;
using guest::Status;

namespace {

constexpr uint64_t SECTOR = 512;
constexpr uint64_t BUF_SECTORS = CONVERT_BUF_BYTES / SECTOR;

enum class Blk : uint32_t { Data, Zero, BackingFile }; // qemu's ImgConvertBlockStatus

// Params::salvage_warning kinds (INSTAR_SALVAGE_READ / INSTAR_SALVAGE_STATUS).
constexpr uint32_t SALVAGE_READ = 1;
constexpr uint32_t SALVAGE_STATUS = 2;

uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

uint64_t pow2floor(uint64_t v) {
    if (v == 0)
        return 0;
    uint64_t p = 1;
    while (p <= v / 2)
        p <<= 1;
    return p;
}

// is_allocated_sectors: whether the first sector holds data; *pnum the sectors in the same state,
// with the end of the run aligned to `alignment` where qemu aligns it.
bool is_allocated_sectors(const uint8_t* buf, uint64_t n, uint64_t* pnum, uint64_t sector_num, uint64_t alignment) {
    if (n == 0) {
        *pnum = 0;
        return false;
    }
    bool is_zero = buffer_is_zero(buf, SECTOR);
    uint64_t i = 1;
    for (; i < n; ++i) {
        buf += SECTOR;
        if (is_zero != buffer_is_zero(buf, SECTOR))
            break;
    }
    if (i == n) {
        *pnum = i;
        return !is_zero;
    }
    const uint64_t tail = (sector_num + i) & (alignment - 1);
    if (tail != 0) {
        if (is_zero && i <= tail)
            is_zero = false; // the next sector is data and rewrites this tail anyway
        if (!is_zero) {
            i += alignment - tail;
            i = min_u64(i, n);
        } else {
            i -= tail;
        }
    }
    *pnum = i;
    return !is_zero;
}

// is_allocated_sectors_min: like the above, but a data run absorbs zero runs shorter than `min`.
bool is_allocated_sectors_min(const uint8_t* buf, uint64_t n, uint64_t* pnum, uint64_t min, uint64_t sector_num,
                              uint64_t alignment) {
    if (n < min)
        min = n;
    if (!is_allocated_sectors(buf, n, pnum, sector_num, alignment))
        return false;
    uint64_t num_used = *pnum;
    buf += SECTOR * *pnum;
    n -= *pnum;
    sector_num += *pnum;
    uint64_t num_checked = num_used;
    while (n > 0) {
        const bool ret = is_allocated_sectors(buf, n, pnum, sector_num, alignment);
        buf += SECTOR * *pnum;
        n -= *pnum;
        sector_num += *pnum;
        num_checked += *pnum;
        if (ret)
            num_used = num_checked;
        else if (*pnum >= min)
            break;
    }
    *pnum = num_used;
    return true;
}

void append(char* dst, size_t cap, size_t* len, const char* s) {
    while (*s != 0 && *len + 1 < cap)
        dst[(*len)++] = *s++;
    dst[*len] = 0;
}

void append_u64(char* dst, size_t cap, size_t* len, uint64_t v) {
    char d[21];
    size_t n = 0;
    do {
        d[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && *len + 1 < cap)
        dst[(*len)++] = d[--n];
    dst[*len] = 0;
}

class Converter {
public:
    Converter(const Source* sources, uint32_t count, ImageWriter& target, const Params& p, guest::ReasonSink* reasons)
        : src_(sources), count_(count), target_(target), p_(p), reasons_(reasons) {}

    Status run(guest::Allocator& alloc);

private:
    Status fail(Status st, const char* what, uint64_t byte) {
        if (reasons_ != nullptr || held_ != nullptr) {
            char text[FAIL_TEXT];
            size_t len = 0;
            text[0] = 0;
            append(text, sizeof text, &len, what);
            append_u64(text, sizeof text, &len, byte);
            append(text, sizeof text, &len, ": ");
            append(text, sizeof text, &len, guest::status_strerror(st));
            if (held_ != nullptr) { // kept for refused_read()
                __builtin_memcpy(held_, text, len + 1);
                held_len_ = len;
            } else {
                reasons_->reason(text, len);
            }
        }
        return st;
    }
    Status refused_read(Status st, const char* first, size_t first_len, uint64_t sector_num, uint64_t n,
                        uint8_t* buf);
    void select_part(uint64_t sector_num);
    Status iteration_sectors(uint64_t sector_num, uint64_t* out);
    Status co_read(uint64_t sector_num, uint64_t nb_sectors, uint8_t* buf);
    bool read_ahead(uint64_t sector_num, uint8_t* buf, uint64_t* count, bool* issued);
    Status co_write(uint64_t sector_num, uint64_t nb_sectors, uint8_t* buf, Blk status);

    static constexpr size_t FAIL_TEXT = 160; // one "error while ... at byte N: ERRNO" line

    const Source* src_;
    uint32_t count_;
    ImageWriter& target_;
    char* held_ = nullptr; // fail() keeps its line here instead of sending it
    size_t held_len_ = 0;
    const Params& p_;
    guest::ReasonSink* reasons_;

    ChainReader chains_[CONVERT_MAX_SOURCES];
    uint64_t src_sectors_[CONVERT_MAX_SOURCES] = {};
    uint64_t src_alignment_[CONVERT_MAX_SOURCES] = {};
    uint32_t src_cur_ = 0;
    uint64_t src_cur_offset_ = 0;
    uint64_t total_sectors_ = 0;
    uint64_t sector_next_status_ = 0;
    Blk status_ = Blk::Data;
    uint64_t buf_sectors_ = BUF_SECTORS;
    uint64_t cluster_sectors_ = 0;
    uint64_t min_sparse_ = 0;
    uint64_t alignment_ = 1;
    bool has_zero_init_ = false;
    bool compressed_ = false;
    uint64_t target_backing_sectors_ = UINT64_MAX; // UINT64_MAX: qemu's -1
};

void Converter::select_part(uint64_t sector_num) {
    if (sector_num >= src_cur_offset_ && sector_num < src_cur_offset_ + src_sectors_[src_cur_])
        return;
    src_cur_ = 0;
    src_cur_offset_ = 0;
    while (src_cur_ + 1 < count_ && sector_num >= src_cur_offset_ + src_sectors_[src_cur_]) {
        src_cur_offset_ += src_sectors_[src_cur_];
        ++src_cur_;
    }
}

Status Converter::iteration_sectors(uint64_t sector_num, uint64_t* out) {
    select_part(sector_num);
    uint64_t n = min_u64(total_sectors_ - sector_num, CONVERT_MAX_STATUS_SECTORS);
    bool post_backing_zero = false;
    if (target_backing_sectors_ != UINT64_MAX) {
        if (sector_num >= target_backing_sectors_)
            post_backing_zero = true;
        else if (sector_num + n > target_backing_sectors_)
            n = target_backing_sectors_ - sector_num; // zeros past it are handled differently
    }

    if (sector_next_status_ <= sector_num) {
        const uint64_t offset = (sector_num - src_cur_offset_) * SECTOR;
        ChainClass cls = ChainClass::Data;
        uint64_t count = 0;
        for (;;) {
            const Status st = chains_[src_cur_].status(offset, n * SECTOR, p_.target_has_backing, &cls, &count);
            if (st == Status::Ok)
                break;
            if (!p_.salvage)
                return fail(st, "error while reading block status at offset ", offset);
            if (n == 1) { // qemu: warn, then just try to read the data
                if (p_.salvage_warning != nullptr)
                    p_.salvage_warning(p_.salvage_ctx, SALVAGE_STATUS, offset, st);
                cls = ChainClass::Data;
                count = SECTOR;
                break;
            }
            n = (n + 3) / 4; // retry on a shorter range
        }
        n = (count + SECTOR - 1) / SECTOR;
        // Keep sector_next_status aligned to the source's cluster (qemu's src_alignment).
        const uint64_t tail = (sector_num - src_cur_offset_ + n) % src_alignment_[src_cur_];
        if (n > tail)
            n -= tail;
        if (cls == ChainClass::Zero)
            status_ = post_backing_zero ? Blk::BackingFile : Blk::Zero;
        else if (cls == ChainClass::Data)
            status_ = Blk::Data;
        else
            status_ = p_.target_has_backing ? Blk::BackingFile : Blk::Data;
        sector_next_status_ = sector_num + n;
    }

    n = min_u64(n, sector_next_status_ - sector_num);
    if (status_ == Blk::Data)
        n = min_u64(n, buf_sectors_);

    // Compressed clusters are written whole: a shorter run is taken as a whole data cluster (and,
    // as in qemu, the status stays Data for the rest of the run).
    if (compressed_) {
        if (n < cluster_sectors_) {
            n = min_u64(cluster_sectors_, total_sectors_ - sector_num);
            status_ = Blk::Data;
        } else {
            n = n / cluster_sectors_ * cluster_sectors_;
        }
    }
    *out = n;
    return Status::Ok;
}

// The read of [sector_num, sector_num + n) failed (its line is `first`): report it as qemu-img does.
// qemu runs -m coroutines (8 by default); one whose read waits for I/O before it fails lets the next
// take the next chunk, which has begun its read before the first failure stops the loop, so its
// failure is reported too. That is certain for a read a format refused through to a backing image
// (vmdk's parentCID check reads the parent's descriptor, so it always waits): two lines when the
// next chunk is read and fails the same way. Other failures (no such wait known) keep one line.
// qemu's chunk: when the top image refused, it is qemu's block status run of the top, which for
// vmdk (the one format that refuses) ends at the grain's end, the source's alignment; instar's runs
// are longer, so qemu's next chunk starts at the next grain. Deeper refusals: instar's next chunk.
Status Converter::refused_read(Status st, const char* first, size_t first_len, uint64_t sector_num, uint64_t n,
                               uint8_t* buf) {
    char second[FAIL_TEXT];
    size_t second_len = 0;
    const uint32_t layer = chains_[src_cur_].refused_layer();
    uint64_t next_sector = sector_num + n;
    if (layer == 0 && sector_num >= src_cur_offset_) {
        const uint64_t align = src_alignment_[src_cur_];
        const uint64_t grain_end = src_cur_offset_ + ((sector_num - src_cur_offset_) / align + 1) * align;
        if (grain_end < next_sector)
            next_sector = grain_end;
    }
    if (!p_.one_request && layer != ChainReader::NO_LAYER && next_sector < total_sectors_) {
        uint64_t n = 0;
        held_ = second;
        held_len_ = 0;
        if (iteration_sectors(next_sector, &n) == Status::Ok && status_ == Blk::Data)
            (void)co_read(next_sector, n, buf);
        second_len = held_len_;
        held_ = nullptr;
    }
    if (reasons_ == nullptr)
        return st;
    if (second_len == 0) {
        reasons_->reason(first, first_len);
        return st;
    }
    // Two lines: the first as a line qemu error_reports before the last ('\x01' LINE '\n').
    char text[2 * FAIL_TEXT + 2];
    size_t len = 0;
    text[len++] = '\x01';
    __builtin_memcpy(text + len, first, first_len);
    len += first_len;
    text[len++] = '\n';
    __builtin_memcpy(text + len, second, second_len);
    len += second_len;
    reasons_->reason(text, len);
    return st;
}

Status Converter::co_read(uint64_t sector_num, uint64_t nb_sectors, uint8_t* buf) {
    uint64_t single_read_until = 0; // --salvage: below this source offset, read sector by sector
    while (nb_sectors > 0) {
        select_part(sector_num);
        uint64_t n = min_u64(nb_sectors, src_sectors_[src_cur_] - (sector_num - src_cur_offset_));
        const uint64_t offset = (sector_num - src_cur_offset_) * SECTOR;
        if (single_read_until > offset)
            n = 1;
        ChainReader& c = chains_[src_cur_];
        const uint64_t vs = c.virtual_size();
        const uint64_t bytes = n * SECTOR;
        const uint64_t in = offset >= vs ? 0 : min_u64(bytes, vs - offset);
        if (in > 0) {
            if (const Status st = c.read(offset, buf, in); st != Status::Ok) {
                if (!p_.salvage)
                    return fail(st, "error while reading at byte ", sector_num * SECTOR);
                if (n > 1) {
                    single_read_until = offset + bytes;
                    continue;
                }
                if (p_.salvage_warning != nullptr)
                    p_.salvage_warning(p_.salvage_ctx, SALVAGE_READ, offset, st);
                __builtin_memset(buf, 0, in);
            }
        }
        __builtin_memset(buf + in, 0, bytes - in); // the sub-sector tail of a source
        sector_num += n;
        nb_sectors -= n;
        buf += bytes;
    }
    return Status::Ok;
}

// Read-ahead (Params::ahead): reads the chunk at sector_num into buf now, when the next
// iteration will surely take it as one data chunk of one lone, reads-ahead-safe source and no block
// status query comes first (its status is already known, so nothing can fail or be reported out of
// order). true: buf holds (or will, once settled) the chunk's bytes, *count sectors of them.
// *issued: a read was made into buf (settle before touching it), whatever the outcome. A failed read
// is left for the chunk's own read to report, in its place.
bool Converter::read_ahead(uint64_t sector_num, uint8_t* buf, uint64_t* count, bool* issued) {
    *issued = false;
    if (sector_num >= total_sectors_ || sector_next_status_ <= sector_num)
        return false;
    uint64_t n = 0;
    if (iteration_sectors(sector_num, &n) != Status::Ok || status_ != Blk::Data)
        return false;
    ChainReader& c = chains_[src_cur_];
    if (!c.reads_ahead_safe() || n > src_sectors_[src_cur_] - (sector_num - src_cur_offset_))
        return false;
    const uint64_t offset = (sector_num - src_cur_offset_) * SECTOR;
    const uint64_t vs = c.virtual_size();
    const uint64_t bytes = n * SECTOR;
    const uint64_t in = offset >= vs ? 0 : min_u64(bytes, vs - offset);
    Status st = Status::Ok;
    if (in > 0) {
        *issued = true;
        st = p_.ahead.ahead(buf, bytes, [&] { return c.read(offset, buf, in); });
    }
    if (st != Status::Ok)
        return false;
    __builtin_memset(buf + in, 0, bytes - in); // the sub-sector tail of a source
    *count = n;
    return true;
}

Status Converter::co_write(uint64_t sector_num, uint64_t nb_sectors, uint8_t* buf, Blk status) {
    while (nb_sectors > 0) {
        uint64_t n = nb_sectors;
        bool zero = false;
        switch (status) {
        case Blk::BackingFile:
            break; // left unallocated: the target's backing shows through
        case Blk::Data:
            if (min_sparse_ == 0 ||
                (!compressed_ && is_allocated_sectors_min(buf, n, &n, min_sparse_, sector_num, alignment_)) ||
                (compressed_ && !buffer_is_zero(buf, n * SECTOR))) {
                const Status st = compressed_ ? target_.write_compressed(sector_num * SECTOR, buf, n * SECTOR)
                                              : target_.write(sector_num * SECTOR, buf, n * SECTOR);
                if (st != Status::Ok)
                    return fail(st, "error while writing at byte ", sector_num * SECTOR);
                break;
            }
            zero = true;
            break;
        case Blk::Zero:
            zero = true;
            break;
        }
        if (zero && !has_zero_init_) {
            const Status st = target_.write_zeroes(sector_num * SECTOR, n * SECTOR, true);
            if (st != Status::Ok)
                return fail(st, "error while writing at byte ", sector_num * SECTOR);
        }
        sector_num += n;
        nb_sectors -= n;
        buf += n * SECTOR;
    }
    return Status::Ok;
}

Status Converter::run(guest::Allocator& alloc) {
    if (count_ == 0 || count_ > CONVERT_MAX_SOURCES || (p_.min_sparse % SECTOR) != 0)
        return Status::Invalid;
    for (uint32_t i = 0; i < count_; ++i) {
        if (src_[i].chain == nullptr || src_[i].depth == 0 || src_[i].depth > CONVERT_MAX_CHAIN)
            return Status::Invalid;
        chains_[i] = ChainReader(src_[i].chain, src_[i].depth);
        const uint64_t vs = chains_[i].virtual_size();
        src_sectors_[i] = vs / SECTOR + (vs % SECTOR != 0 ? 1 : 0);
        src_alignment_[i] = src_[i].alignment / SECTOR > 1 ? src_[i].alignment / SECTOR : 1;
        if (total_sectors_ + src_sectors_[i] < total_sectors_)
            return Status::TooLarge;
        total_sectors_ += src_sectors_[i];
    }
    min_sparse_ = p_.min_sparse / SECTOR;
    compressed_ = p_.compressed || target_.needs_compressed_writes(); // qemu-img: bdi.needs_compressed_writes
    cluster_sectors_ = target_.cluster_size() / SECTOR;
    // Align write requests (qemu: MAX(pow2floor(min_sparse), request_alignment in sectors), and
    // every target instar writes has a request alignment of at most one sector).
    alignment_ = pow2floor(min_sparse_) > 1 ? pow2floor(min_sparse_) : 1;
    uint64_t backing_size = p_.target_backing_size;
    ChainImageReader backing(p_.target_backing_chain, p_.target_backing_depth);
    if (p_.target_has_backing && p_.target_backing_chain != nullptr) {
        if (p_.target_backing_depth == 0 || p_.target_backing_depth > CONVERT_MAX_CHAIN)
            return Status::Invalid;
        if (backing_size == UINT64_MAX)
            backing_size = backing.virtual_size();
        target_.set_backing(&backing);
    }
    // qemu's target_backing_sectors: bdrv_nb_sectors of the backing, rounded up.
    if (p_.target_has_backing && !p_.existing_target && backing_size != UINT64_MAX)
        target_backing_sectors_ = backing_size / SECTOR + (backing_size % SECTOR != 0 ? 1 : 0);

    // convert_do_copy: zero initialisation.
    has_zero_init_ = p_.target_is_zero && !p_.target_has_backing;
    if (!has_zero_init_ && !p_.existing_target && min_sparse_ != 0 && !p_.target_has_backing)
        has_zero_init_ = target_.zero_init();

    if (compressed_) {
        if (cluster_sectors_ == 0 || cluster_sectors_ > buf_sectors_) {
            if (reasons_ != nullptr) {
                static constexpr char TEXT[] = "invalid cluster size";
                reasons_->reason(TEXT, sizeof TEXT - 1);
            }
            return Status::Invalid;
        }
        buf_sectors_ = cluster_sectors_;
    }

    // The allocation pass: how many sectors will be copied, for the progress display.
    uint64_t allocated_sectors = 0;
    for (uint64_t sector_num = 0; sector_num < total_sectors_;) {
        uint64_t n = 0;
        if (const Status st = iteration_sectors(sector_num, &n); st != Status::Ok)
            return st;
        if (status_ == Blk::Data || (min_sparse_ == 0 && status_ == Blk::Zero))
            allocated_sectors += n;
        sector_num += n;
    }

    const size_t buf_bytes = static_cast<size_t>(buf_sectors_ * SECTOR);
    uint8_t* bufs[2] = {static_cast<uint8_t*>(alloc.allocate(buf_bytes, 64)), nullptr};
    if (bufs[0] == nullptr)
        return Status::NoMemory;
    // Write-behind: a second buffer to read into while the host writes the first, once the host is
    // seen to defer (without it, each refill waits for the buffer's write).
    const bool behind = p_.defer_writes != nullptr && p_.settle_writes != nullptr && p_.writes_deferred != nullptr;
    unsigned turn = 0;
    // Read-ahead: the next chunk is read into the other buffer while this one is written. `ahead`
    // is the buffer a read was made into and not yet settled; `ahead_sector`/`ahead_n` the chunk it
    // holds when that read was whole and went well (UINT64_MAX: none).
    // Not with write-behind (a host that defers writes: the two would share the second buffer).
    bool ahead_on = !p_.salvage && p_.ahead.available();
    if (ahead_on) {
        bufs[1] = static_cast<uint8_t*>(alloc.allocate(buf_bytes, 64));
        ahead_on = bufs[1] != nullptr; // no room: read each chunk when it comes
    }
    uint8_t* ahead = nullptr;
    uint64_t ahead_sector = UINT64_MAX;
    uint64_t ahead_n = 0;

    Status result = Status::Ok;
    uint64_t allocated_done = 0;
    sector_next_status_ = 0;
    src_cur_ = 0;
    src_cur_offset_ = 0;
    for (uint64_t sector_num = 0; sector_num < total_sectors_;) {
        uint64_t n = 0;
        result = iteration_sectors(sector_num, &n);
        if (result != Status::Ok)
            break;
        Blk status = status_;
        if (min_sparse_ == 0 && status == Blk::Zero)
            n = min_u64(n, buf_sectors_);
        // The buffer turns only when this chunk uses it: a zero or backing chunk touches no buffer,
        // so the next data chunk would otherwise land in the buffer whose write is still in flight
        // (alternating data and zero runs made every refill wait for the write before it).
        uint8_t* buf = bufs[turn];
        if (bufs[1] != nullptr && (status == Blk::Data || (min_sparse_ == 0 && status == Blk::Zero)))
            turn ^= 1;
        if (behind)
            p_.settle_writes(buf); // its last write may still be in flight
        bool read_already = false;
        if (ahead == buf) { // its read ahead is complete (and checked) before anything touches it
            read_already = p_.ahead.settle_reads() == 0 && ahead_sector == sector_num && ahead_n == n && status == Blk::Data;
            ahead = nullptr;
        }
        if (status == Blk::Data || (min_sparse_ == 0 && status == Blk::Zero)) {
            if (p_.progress == nullptr) {
                allocated_done += n;
            } else {
                // qemu's iterations end where its driver ends a block-status answer (a vmdk grain):
                // one report per such step, so that -p prints qemu's figures.
                for (uint64_t s = sector_num; s < sector_num + n;) {
                    uint64_t e = sector_num + n;
                    const uint64_t at = (s - src_cur_offset_) * SECTOR;
                    const uint64_t b = chains_[src_cur_].lone_status_boundary(at);
                    if (b > at && b != UINT64_MAX && (b - at) / SECTOR < e - s)
                        e = s + (b - at + SECTOR - 1) / SECTOR;
                    allocated_done += e - s;
                    p_.progress(p_.progress_ctx, allocated_done, allocated_sectors);
                    s = e;
                }
            }
        }
        if (status == Blk::Data && !read_already) {
            char line[FAIL_TEXT];
            held_ = line;
            held_len_ = 0;
            result = co_read(sector_num, n, buf);
            held_ = nullptr;
            if (result != Status::Ok) {
                if (held_len_ != 0)
                    result = refused_read(result, line, held_len_, sector_num, n, buf);
                break;
            }
        } else if (min_sparse_ == 0 && status == Blk::Zero) {
            status = Blk::Data;
            __builtin_memset(buf, 0, n * SECTOR);
        }
        if (ahead_on && behind && p_.writes_deferred())
            ahead_on = false;
        if (ahead_on) {
            bool issued = false;
            uint64_t next_n = 0;
            ahead_sector = read_ahead(sector_num + n, bufs[turn], &next_n, &issued) ? sector_num + n : UINT64_MAX;
            ahead_n = next_n;
            if (issued) {
                ahead = bufs[turn];
                ahead_on = p_.ahead.reads_ahead(); // a host that reads at once overlaps nothing: stop
            }
        }
        if (behind)
            p_.defer_writes(buf, buf_bytes);
        result = co_write(sector_num, n, buf, status);
        if (behind) {
            p_.defer_writes(nullptr, 0);
            if (bufs[1] == nullptr && p_.writes_deferred()) {
                bufs[1] = static_cast<uint8_t*>(alloc.allocate(buf_bytes, 64));
                turn = bufs[1] != nullptr ? 1 : 0; // no room: one buffer, each refill settled
            }
        }
        if (result != Status::Ok)
            break;
        sector_num += n;
    }
    if (ahead != nullptr)
        (void)p_.ahead.settle_reads(); // the host is done with the buffer; a failure no chunk needed is moot
    for (uint8_t* b : bufs)
        if (b != nullptr) {
            if (behind)
                p_.settle_writes(b);
            alloc.deallocate(b, buf_bytes);
        }
    if (result != Status::Ok)
        return result;
    // qemu signals the end of a compressed convert with an empty compressed write (qcow2 aligns
    // its file's end to a sector; vmdk's streamOptimized writes its end-of-stream marker).
    if (compressed_) {
        if (const Status st = target_.write_compressed(0, nullptr, 0); st != Status::Ok) {
            if (reasons_ != nullptr)
                reasons_->reason(guest::CONVERT_END_OF_STREAM_FAILED, sizeof guest::CONVERT_END_OF_STREAM_FAILED - 1);
            return st;
        }
    }
    if (const Status st = target_.finish(); st != Status::Ok)
        return fail(st, "error while writing at byte ", total_sectors_ * SECTOR);
    return Status::Ok;
}

} // namespace

Status run_convert(const Source* sources, uint32_t count, ImageWriter& target, const Params& p,
                   guest::Allocator& alloc, guest::ReasonSink* reasons) {
    if (sources == nullptr)
        return Status::Invalid;
    Converter c(sources, count, target, p, reasons);
    return c.run(alloc);
}

} // namespace instar::convert
