// The format-independent convert engine: qemu-img convert's copy loop (qemu-img.c: img_convert,
// convert_do_copy, convert_iteration_sectors, convert_co_do_copy, convert_co_write,
// is_allocated_sectors_min), replayed over ImageReaders and one ImageWriter so that the writer sees
// exactly the request sequence qemu's target driver sees. Freestanding: runs in the guest runtime,
// hosted tests and fuzz targets alike. Documented in docs/convert.md.
#pragma once

#include <instar/guest/read_api.h>
#include <instar/guest/write_api.h>

#include "read_ahead.h"

#include <stddef.h>
#include <stdint.h>

namespace instar::convert {

// One source image with its backing chain: chain[0] is the image named on the command line,
// chain[i + 1] is chain[i]'s backing image.
struct Source {
    guest::ImageReader* const* chain;
    uint32_t depth;
    // chain[0]'s allocation unit as qemu's bdrv_get_info reports it (qcow2 cluster size, ...), 0 when
    // it has none (raw). qemu trims block-status runs to it (src_alignment); 0 is safe for raw.
    uint64_t alignment = 0;
};

struct Params {
    uint64_t min_sparse = 4096;       // -S in bytes (a 512 multiple); 0 = write everything
    bool compressed = false;          // -c
    bool target_has_backing = false;  // -B: the target gets a backing file
    bool target_is_zero = false;      // --target-is-zero
    bool existing_target = false;     // -n
    bool out_of_order = false;        // -W (writes are issued in order anyway: see docs/convert.md)
    bool one_request = false;         // -m 1: qemu-img has no second request in flight (see run())
    // Called whenever qemu's progress would move: done and total in 512-byte sectors, exactly qemu's
    // allocated_done / allocated_sectors (percentage = 100.0 * done / total).
    void (*progress)(void* ctx, uint64_t done, uint64_t total) = nullptr;
    void* progress_ctx = nullptr;
    // -B: the target's backing file's virtual size (qemu's target_backing_sectors * 512); zero ranges
    // past it are left unallocated. UINT64_MAX: unknown, as qemu treats a failed size query.
    uint64_t target_backing_size = UINT64_MAX;
    // -B: the target's backing file opened as a chain (chain[0] the -B image), handed to the writer
    // (ImageWriter::set_backing) for copy-on-write; also gives target_backing_size when that is
    // UINT64_MAX. nullptr: none (the writer then takes the backing as reading zeros).
    guest::ImageReader* const* target_backing_chain = nullptr;
    uint32_t target_backing_depth = 0;
    // --salvage: a failed read is retried sector by sector and each sector that still fails reads
    // as zeros; a failed block-status query is retried on a quarter of the range, down to one
    // sector, which is then taken as data. Each such sector is reported (kind: 1 read, 2 block
    // status, as INSTAR_SALVAGE_*; offset: the source's byte offset) where qemu-img warns.
    bool salvage = false;
    void (*salvage_warning)(void* ctx, uint32_t kind, uint64_t offset, guest::Status st) = nullptr;
    void* salvage_ctx = nullptr;
    // Write-behind (docs/convert.md): with all three set, the engine calls defer_writes(buf, len)
    // around each write of its copy buffer's data (len 0 after it), so the host may finish those
    // writes later, and settle_writes(buf) before it fills or frees a buffer. Once writes_deferred()
    // says the host does defer, a second buffer is allocated and the two alternate, so the next
    // chunk is read while the last one is written. nullptr: one buffer, every write done when it
    // returns (tests, fuzz targets).
    void (*defer_writes)(const void* buf, uint64_t len) = nullptr;
    void (*settle_writes)(const void* buf) = nullptr;
    bool (*writes_deferred)() = nullptr;
    // Read-ahead (docs/convert.md): without deferred writes and --salvage, the engine reads the next
    // chunk of a source whose chain allows it (ChainReader::reads_ahead_safe) before it writes the
    // current one. Empty hooks: no read-ahead.
    ReadAheadHooks ahead;
};

// qemu-img's IO_BUF_SIZE: the copy buffer, the most data one write request carries.
inline constexpr uint64_t CONVERT_BUF_BYTES = 2u << 20;
// qemu's BDRV_REQUEST_MAX_SECTORS (INT_MAX >> 9): the most one block-status query asks about.
inline constexpr uint64_t CONVERT_MAX_STATUS_SECTORS = 0x7fffffffu >> 9;
// Sources one convert concatenates: qemu takes any number on the command line; a bound keeps the
// per-source state fixed (the host refuses more).
inline constexpr uint32_t CONVERT_MAX_SOURCES = 64;
// Backing-chain depth followed for one source (qemu's own limit on chain length is similar).
inline constexpr uint32_t CONVERT_MAX_CHAIN = 64;

// Copies the concatenated sources into `target`, then calls target.finish(). With -c every data
// write is target.write_compressed() of one cluster (the disk's last may be shorter), and the end
// of the copy is signalled, as qemu-img does, by write_compressed(0, nullptr, 0) before finish(). On failure a reason in
// qemu-img's words goes to `reasons` (may be nullptr).
guest::Status run_convert(const Source* sources, uint32_t count, guest::ImageWriter& target, const Params& p,
                          guest::Allocator& alloc, guest::ReasonSink* reasons);

} // namespace instar::convert
