// The Services table handed to modules, and zlib inflate and zstd decompression over the arena.
#include "runtime.h"

#include <zlib.h>
// ZSTD_createDCtx_advanced (allocation through the arena) is in zstd's static-linking API.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

namespace instar::guest {
namespace {

Status send_record(uint32_t type, const void* data, size_t len) {
    return hc_record(type, data, len) == 0 ? Status::Ok : Status::Invalid;
}

void log_line(const char* text, size_t len) { hc_log(text, len); }

uint32_t crc32_fn(uint32_t crc, const void* data, size_t len) {
    // zlib's crc32 takes a uInt length: feed it in pieces.
    auto* p = static_cast<const Bytef*>(data);
    while (len > 0) {
        uInt n = len > 0x40000000u ? 0x40000000u : static_cast<uInt>(len);
        crc = static_cast<uint32_t>(::crc32(crc, p, n));
        p += n;
        len -= n;
    }
    return crc;
}

voidpf zalloc(voidpf, uInt items, uInt size) {
    if (size != 0 && items > ~uInt{0} / size) return Z_NULL;
    return arena().allocate(static_cast<size_t>(items) * size, 16);
}
void zfree(voidpf, voidpf p) { arena().deallocate(p, 0); }

constinit Services table = {};

} // namespace

Status inflate_buffer(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len,
                      int window_bits) {
    *out_len = 0;
    if (src_len > 0xFFFFFFFFu || dst_cap > 0xFFFFFFFFu) return Status::TooLarge; // uInt fields
    z_stream zs{};
    zs.zalloc = zalloc;
    zs.zfree = zfree;
    // SAFETY: zlib only reads next_in; the cast drops const for its C API.
    zs.next_in = static_cast<Bytef*>(const_cast<void*>(src));
    zs.avail_in = static_cast<uInt>(src_len);
    zs.next_out = static_cast<Bytef*>(dst);
    zs.avail_out = static_cast<uInt>(dst_cap);
    if (inflateInit2(&zs, window_bits) != Z_OK) return Status::NoMemory;
    int rc = ::inflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    inflateEnd(&zs);
    if (rc == Z_STREAM_END) return Status::Ok;
    if (rc == Z_MEM_ERROR) return Status::NoMemory;
    if (rc == Z_BUF_ERROR && zs.avail_out == 0) return Status::TooLarge;
    return Status::Corrupt;
}

namespace {

Status deflate_mem_buffer(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len,
                          int window_bits, int level, int mem_level) {
    *out_len = 0;
    if (src_len > 0xFFFFFFFFu || dst_cap > 0xFFFFFFFFu) return Status::TooLarge; // uInt fields
    z_stream zs{};
    zs.zalloc = zalloc;
    zs.zfree = zfree;
    if (deflateInit2(&zs, level, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) return Status::NoMemory;
    // SAFETY: zlib only reads next_in; the cast drops const for its C API.
    zs.next_in = static_cast<Bytef*>(const_cast<void*>(src));
    zs.avail_in = static_cast<uInt>(src_len);
    zs.next_out = static_cast<Bytef*>(dst);
    zs.avail_out = static_cast<uInt>(dst_cap);
    const int rc = ::deflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return rc == Z_STREAM_END ? Status::Ok : Status::TooLarge;
}

void* zstd_alloc(void*, size_t size) { return arena().allocate(size, 16); }
void zstd_free(void*, void* p) { arena().deallocate(p, 0); }

// One zstd frame into dst (qcow2 compression_type=zstd). Single-pass decompression writes straight
// into dst, so besides the context (about 100 KiB, from the arena) a frame costs no window buffer,
// and a frame larger than dst_cap stops at dst_cap. Only libzstd.a's decompression objects are
// linked: nothing here references its compressor.
Status zstd_decompress_buffer(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len) {
    *out_len = 0;
    ZSTD_DCtx* dctx = ZSTD_createDCtx_advanced(ZSTD_customMem{zstd_alloc, zstd_free, nullptr});
    if (dctx == nullptr) return Status::NoMemory;
    const size_t n = ZSTD_decompressDCtx(dctx, dst, dst_cap, src, src_len);
    ZSTD_freeDCtx(dctx);
    if (ZSTD_isError(n)) {
        const ZSTD_ErrorCode code = ZSTD_getErrorCode(n);
        if (code == ZSTD_error_dstSize_tooSmall) return Status::TooLarge;
        if (code == ZSTD_error_memory_allocation) return Status::NoMemory;
        return Status::Corrupt;
    }
    *out_len = n;
    return Status::Ok;
}

Status deflate_buffer(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len, int window_bits,
                      int level) {
    return deflate_mem_buffer(src, src_len, dst, dst_cap, out_len, window_bits, level, 9);
}

// Compression on the host's cores (INSTAR_HC_COMPRESS), in batches of at most the host's job limit.
// One vCPU: the job table can be static.
instar_compress_job compress_table[INSTAR_MAX_COMPRESS_JOBS];

Status compress_batch_host(CompressKind kind, CompressJob* jobs, uint32_t count) {
    uint64_t bytes = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i <= count; ++i) {
        const bool full = n == INSTAR_MAX_COMPRESS_JOBS ||
                          (i < count && bytes + jobs[i].src_len > INSTAR_MAX_COMPRESS_BATCH_BYTES);
        if (n > 0 && (i == count || full)) {
            if (hc_compress(static_cast<uint32_t>(kind), compress_table, n) != 0)
                return Status::IoError;
            for (uint32_t k = 0; k < n; ++k) {
                CompressJob& j = jobs[i - n + k];
                const instar_compress_job& r = compress_table[k];
                j.status = r.status == 0 ? Status::Ok : r.status == -INSTAR_ENOSPC ? Status::TooLarge : Status::IoError;
                j.out_len = r.status == 0 && r.out_len <= j.dst_cap ? static_cast<size_t>(r.out_len) : 0;
            }
            n = 0;
            bytes = 0;
        }
        if (i == count)
            break;
        if (jobs[i].src_len > INSTAR_MAX_COMPRESS_BYTES || jobs[i].dst_cap > 2 * INSTAR_MAX_COMPRESS_BYTES)
            return Status::Invalid;
        compress_table[n] = instar_compress_job{reinterpret_cast<uintptr_t>(jobs[i].src), jobs[i].src_len,
                                                reinterpret_cast<uintptr_t>(jobs[i].dst), jobs[i].dst_cap, 0, 0};
        bytes += jobs[i].src_len;
        ++n;
    }
    return Status::Ok;
}

// zstd compression is not linked into the guest (only its decompressor): the host compresses.
Status zstd_compress_host(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len) {
    CompressJob j{src, src_len, dst, dst_cap, 0, Status::Ok};
    if (const Status st = compress_batch_host(CompressKind::Qcow2Zstd, &j, 1); st != Status::Ok)
        return st;
    *out_len = j.out_len;
    return j.status;
}

constinit Codecs codec_table = {inflate_buffer,     zstd_decompress_buffer, deflate_buffer,
                                zstd_compress_host, deflate_mem_buffer,     compress_batch_host};

} // namespace

const Codecs& codecs() { return codec_table; }

const Services& services() {
    if (table.abi_version == 0) {
        table = Services{MODULE_ABI_VERSION, sizeof(Services), &arena(), device_count(), device,
                         send_record, log_line, inflate_buffer, crc32_fn};
    }
    return table;
}

} // namespace instar::guest

