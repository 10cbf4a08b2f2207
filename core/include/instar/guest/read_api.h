// What format code offers to read an image's virtual disk: the guest side of convert, compare, map,
// dd, commit and rebase. Freestanding-clean, like format_api.h: the same sources run in the guest
// module, in hosted unit tests and in fuzz targets. Documented in docs/convert.md.
//
// A reader answers for ONE image. Backing chains are composed by the caller (the runtime's chain
// reader): where an image says Unallocated, the caller asks the next image down, and past the end of
// the chain reads zeros, as qemu's bdrv_block_status_above and backing reads do.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

// What one image says about a range of its virtual disk (qemu's BDRV_BLOCK_DATA / _ZERO / neither).
enum class Allocation : uint32_t {
    Data = 0,        // stored in this image: read() returns the bytes (which may happen to be zeros)
    Zero = 1,        // reads as zeros by this image's own metadata; the backing file is not consulted
    Unallocated = 2, // not in this image: the backing image's bytes, or zeros when there is none
};

// Extent::flags
inline constexpr uint32_t EXTENT_COMPRESSED = 1u;   // the data is stored compressed (qemu map's "compressed")
inline constexpr uint32_t EXTENT_OFFSET_VALID = 2u; // device/offset say where the data lies, uncompressed
inline constexpr uint32_t EXTENT_ENCRYPTED = 4u;    // stored encrypted (no offset is reported)

struct Extent {
    uint64_t length;       // > 0 and <= the length asked for: the run with the same answer
    Allocation allocation;
    uint32_t flags;        // EXTENT_*
    uint32_t device;       // with EXTENT_OFFSET_VALID: 0 the image, 1 + i the request's files[i]
    uint32_t reserved;
    uint64_t offset;       // with EXTENT_OFFSET_VALID: byte offset of the extent's first byte there
};

// Why an operation was refused, in qemu-img's words (one line, at most CREATE_MAX_REASON bytes);
// "{image}" in the text is replaced by the image's name on the host.
class ReasonSink {
public:
    virtual void reason(const char* text, size_t len) = 0;

protected:
    ~ReasonSink() = default;
};

// Passes a NUL-terminated reason to the sink, if there is one.
inline void say_reason(ReasonSink* sink, const char* text) {
    if (sink == nullptr || text == nullptr)
        return;
    size_t n = 0;
    while (text[n] != 0)
        ++n;
    sink->reason(text, n);
}

// One buffer of a compress_batch call: the caller fills src/src_len/dst/dst_cap (destinations must
// not overlap each other or any source); the call fills out_len and status (Ok, TooLarge when the
// result does not fit in dst_cap, IoError).
struct CompressJob {
    const void* src;
    size_t src_len;
    void* dst;
    size_t dst_cap;
    size_t out_len;
    Status status;
};
// What compress_batch makes of each buffer (the values of instar_compress_kind).
enum class CompressKind : uint32_t {
    Qcow2Zlib = 1, // `deflate` with window -12, level 6 (qcow2)
    Qcow2Zstd = 2, // `zstd_compress` (qcow2)
    Zlib = 3,      // `deflate_mem` with window 15, level 6, memLevel 8: zlib's compress() (vmdk)
};

// Decompressors for untrusted data. Each stops with TooLarge when the output would exceed dst_cap,
// so a decompression bomb costs at most dst_cap bytes; Corrupt on bad data.
struct Codecs {
    // One complete deflate stream; window_bits as zlib's inflateInit2 (-12: qcow2's raw deflate).
    Status (*inflate)(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len,
                      int window_bits);
    // One zstd frame (qcow2 compression_type=zstd); nullptr where zstd is not available.
    Status (*zstd_decompress)(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len);
    // Compressors for writing (-c): TooLarge when the result would not fit in dst_cap (the caller
    // then stores the data uncompressed). window_bits as zlib's deflateInit2; level 1..9.
    Status (*deflate)(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len,
                      int window_bits, int level);
    Status (*zstd_compress)(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len);
    // deflate with zlib's memLevel as well (deflateInit2's 1..9): vmdk's grains are zlib's
    // compress(), whose memLevel is 8, where `deflate` above uses qcow2's 9; the output differs.
    Status (*deflate_mem)(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len,
                          int window_bits, int level, int mem_level);
    // Many buffers at once, on every host core (INSTAR_HC_COMPRESS); the results are the bytes the
    // single-buffer functions above give. nullptr where not available: callers then compress one by
    // one. A non-Ok return (bad arguments) says nothing about the jobs.
    Status (*compress_batch)(CompressKind kind, CompressJob* jobs, uint32_t count);
};

// One opened image's virtual disk.
class ImageReader {
public:
    virtual uint64_t virtual_size() const = 0;
    // What backs [offset, offset + length): the first run's answer. offset < virtual_size(),
    // length > 0 and offset + length <= virtual_size() (callers clip).
    virtual Status status(uint64_t offset, uint64_t length, Extent* out) = 0;
    // This image's bytes for [offset, offset + len) (inside the virtual size): Data as stored, Zero
    // and Unallocated ranges as zeros (the caller composes the chain over Unallocated ranges).
    virtual Status read(uint64_t offset, void* buf, size_t len) = 0;
    // Releases everything the reader allocated. The reader is unusable afterwards.
    virtual void close() = 0;

    // Appended in module ABI 7 (docs/guest-abi.md): how a format ties an image to its backing image.
    //
    // The image's content identifier of `kind`, when it has one. `kind` is a tag the format chooses
    // (a four-character code), so a format only ever recognises identifiers of its own: vmdk's CID,
    // which a child records as its parentCID. false: no identifier of that kind.
    virtual bool content_id(uint32_t kind, uint32_t* out) const {
        (void)kind;
        (void)out;
        return false;
    }
    // Whether reads that fall through this image's Unallocated ranges to `backing` (the next image
    // down) may go on. false: each such read fails with Invalid (the chain reader's answer), as
    // qemu's vmdk fails them with -EINVAL when the child's parentCID is not its parent's CID. Block
    // status is not affected (map and the allocation walk still see through).
    virtual bool backing_valid(const ImageReader& backing) const {
        (void)backing;
        return true;
    }

    // Appended in module ABI 8 (docs/guest-abi.md): where qemu's driver ends a block-status answer
    // that starts at `offset` (offset < virtual_size()), which may be before the end of the run
    // status() reports: qcow2 answers at most one L2 slice, vmdk one grain, vdi one block. qemu-img
    // compare steps (and prints its progress) by those answers, so its walk stops there too.
    // UINT64_MAX: the driver answers whole runs (the default).
    virtual uint64_t status_boundary(uint64_t offset) const {
        (void)offset;
        return UINT64_MAX;
    }

    // Appended in module ABI 9 (docs/guest-abi.md): whether read() may be called one chunk early and
    // its device reads into buf completed late (convert's and compare's read-ahead,
    // docs/convert.md): it never looks at or changes what a device read put into buf (it decrypts or
    // decompresses elsewhere and copies in), and a call has no effect a later one depends on but
    // caches of what it read (tables), so a failed call made again fails the same way (its reasons,
    // dropped the first time, are given again). false (the default): every read is made when its
    // chunk comes, and done when read() returns.
    virtual bool reads_ahead_safe() const { return false; }

protected:
    ~ImageReader() = default;
};

// What a format's open entry point gets.
struct OpenRequest {
    BlockDevice* image;
    // The files the image names other than its backing file, opened by the host's path policy, in
    // the order info reported them (vmdk extents in descriptor order, a qcow2 data file).
    BlockDevice* const* files;
    uint32_t file_count;
    Allocator* allocator; // everything the reader keeps comes from here, so memory stays bounded
    const Codecs* codecs;
    ReasonSink* reasons;  // may be nullptr
    const char* snapshot; // -l: an internal snapshot's id or name to read instead; nullptr for the image
    uint32_t qemu_version;
    // The image's secret, when the user named one (--object secret,id=ID plus key-secret=ID for
    // luks, encrypt.key-secret=ID for qcow2): a LUKS passphrase or a qcow2 AES key, at most
    // INSTAR_MAX_SECRET_BYTES. nullptr when none was named: a format that needs one refuses with
    // qemu's "Parameter '...key-secret' is required for cipher". Never echo it in a reason.
    const uint8_t* secret = nullptr;
    size_t secret_len = 0;
    // open_writer (convert -n) only: sets `image`'s file length, cutting it (qemu's close truncates
    // some formats to their data end) or growing it with a hole. nullptr for readers and where the
    // caller offers no resizing; the host refuses a length past the output's limit. Appended with a
    // default (round 7): formats that ignore it are unchanged.
    Status (*set_length)(BlockDevice& dev, uint64_t length) = nullptr;
    // Appended in module ABI 10: `-l snapshot.id=ID,snapshot.name=NAME` (convert). With
    // snapshot_exact, the snapshot to read is the first whose id is snapshot_id and whose name is
    // snapshot_name, each only when not nullptr (qemu's find_snapshot_by_id_and_name); `snapshot` is
    // then one of the two (not nullptr), so a format without snapshots refuses as for a plain -l.
    bool snapshot_exact = false;
    const char* snapshot_id = nullptr;
    const char* snapshot_name = nullptr;
    // open_writer only (round 33): the writes come from qemu-img commit's mirror job, which copies
    // whole chunks of bdrv_get_default_bitmap_granularity (the image's cluster size clamped to
    // [4 KiB, 64 KiB]) wherever a chunk holds a byte allocated above the base. A writer that
    // records writes in the image's dirty bitmaps (qcow2) records each request rounded out to
    // those chunks, so the bits are qemu's; the data written is the caller's exact ranges. Appended
    // with a default: modules that ignore it are unchanged.
    bool mirror_chunks = false;
};

// A reason starting with this is a failure to load -l's snapshot (qemu's bdrv_snapshot_load_tmp,
// after the open): the host prints it as it is, not framed as an open error ("Could not open ...").
inline constexpr char SNAPSHOT_LOAD_FAILED[] = "Failed to load snapshot: ";

// qemu's bdrv_snapshot_load_tmp on a driver without it (every format but qcow2): `convert -l` and
// `measure -l` fail after the open with "Failed to load snapshot: Block format 'FMT' used by device
// '' does not support temporarily loading internal snapshots". True, with that reason said, when
// `req` names a snapshot.
inline bool refuse_snapshot_load(const OpenRequest& req, const char* format) {
    if (req.snapshot == nullptr)
        return false;
    char text[160];
    size_t n = 0;
    const char* const parts[] = {SNAPSHOT_LOAD_FAILED, "Block format '", format,
                                 "' used by device '' does not support temporarily loading internal snapshots"};
    for (const char* part : parts)
        for (size_t i = 0; part[i] != 0 && n + 1 < sizeof text; ++i)
            text[n++] = part[i];
    text[n] = 0;
    say_reason(req.reasons, text);
    return true;
}

// Opens a reader (allocated from req.allocator). A non-Ok Status leaves *out untouched; Unsupported
// for valid images the format code cannot read yet (with a reason naming what).
using OpenFn = Status (*)(const OpenRequest& req, ImageReader** out);

} // namespace instar::guest
