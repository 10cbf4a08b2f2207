// The DMG (Apple UDIF) format's guest half: the koly trailer, the blkx chunk table (from the binary
// resource fork or the XML property list), probe and `info`. Read-only, as qemu's block/dmg.c.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/format_util.h>
#include <instar/guest/info_sink.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::dmg {

// Chunk (block entry) types, qemu's names.
inline constexpr uint32_t UDZE = 0;          // zeroes
inline constexpr uint32_t UDRW = 1;          // raw
inline constexpr uint32_t UDIG = 2;          // ignore (zeroes)
inline constexpr uint32_t UDZO = 0x80000005; // zlib
inline constexpr uint32_t UDBZ = 0x80000006; // bzip2: Debian's qemu-img has no dmg-bz2 module
inline constexpr uint32_t ULFO = 0x80000007; // lzfse: nor a dmg-lzfse module
inline constexpr uint32_t UDCM = 0x7ffffffe; // comment
inline constexpr uint32_t UDLE = 0xffffffff; // last entry

// qemu's DMG_LENGTHS_MAX: a chunk's stored length, so a chunk buffer stays at most 64 MiB.
inline constexpr uint64_t DMG_LENGTHS_MAX = 64u * 1024 * 1024;
// qemu's DMG_SECTORCOUNTS_MAX: a data chunk's sectors, so its inflated buffer stays at most 64 MiB.
inline constexpr uint64_t DMG_SECTORCOUNTS_MAX = DMG_LENGTHS_MAX / 512;
// qemu's cap on the XML property list it reads whole ("a test sample had about 1 MiB").
inline constexpr uint64_t DMG_PLIST_MAX = 16u * 1024 * 1024;
// Ours: the chunk table lives in guest memory (32 bytes an entry, 32 MiB at most); qemu grows it
// without a bound. A million chunks is a 1 TiB disk of 1 MiB chunks.
inline constexpr uint32_t DMG_MAX_CHUNKS = 1u << 20;
// Ours: resources walked in the binary resource fork (each costs a device read); real images hold
// a handful (one blkx per partition, a few others).
inline constexpr uint32_t DMG_MAX_RESOURCES = 1u << 16;

inline constexpr uint64_t DMG_TRAILER_SIZE = 512;
inline constexpr uint32_t MISH_MAGIC = 0x6d697368; // "mish"
inline constexpr uint32_t MISH_HEADER_SIZE = 204;  // up to the first chunk entry
inline constexpr uint32_t MISH_MIN_SIZE = 244;     // a header and one entry: smaller blocks are skipped
inline constexpr uint32_t MISH_ENTRY_SIZE = 40;
// qemu's BDRV_MAX_LENGTH (format_util.h): requests past it fail (EIO), and a disk larger is "File
// too large".
inline constexpr uint64_t BDRV_MAX_LENGTH = guest::QEMU_BDRV_MAX_LENGTH;

struct DmgChunk {
    uint64_t sector; // first virtual sector
    uint64_t count;  // sectors
    uint64_t offset; // in the file
    uint32_t length; // stored bytes (<= DMG_LENGTHS_MAX)
    uint32_t type;   // UDZE, UDRW, UDIG or UDZO: the others are not kept (qemu skips them)
};

// What dmg_open leaves in BDRVDMGState.
struct DmgImage {
    uint64_t total_sectors = 0;
    DmgChunk* chunks = nullptr; // nullptr when loaded without the table (info)
    uint32_t n_chunks = 0;
    uint32_t max_compressed_size = 1;   // the compressed buffer's size, less one
    uint32_t max_sectors_per_chunk = 1; // the inflated buffer's size in sectors
    bool has_zlib = false;              // a UDZO chunk: the reader needs inflate
};

// Reason text for a refusal: qemu's words, some with numbers in them.
struct DmgWhy {
    char text[160];
};

// dmg_open's steps in its order, and the block layer's size checks after it. With `table` the chunk
// table is allocated from `alloc` (release with dmg_free); without, only counted and checked.
guest::Status dmg_load(guest::BlockDevice& dev, guest::Allocator& alloc, bool table, DmgImage* out,
                       DmgWhy* why);
void dmg_free(guest::Allocator& alloc, DmgImage& img);

// Reads as qemu's bdrv_pread on the file does: zeros past the end of the file, EIO past
// BDRV_MAX_LENGTH.
guest::Status dmg_pread(guest::BlockDevice& dev, uint64_t offset, void* buf, size_t len);

// glib's g_base64_decode over [in, in + len): characters outside the alphabet are skipped, '=' ends
// a quantum short. `out` must hold len / 4 * 3 bytes. Returns the decoded length.
size_t dmg_base64_decode(const char* in, size_t len, uint8_t* out);

guest::Status probe(guest::BlockDevice& dev, bool* match);
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::dmg
