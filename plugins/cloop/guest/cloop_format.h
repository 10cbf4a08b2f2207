// The cloop format's guest half: the header, qemu's open rules (block/cloop.c cloop_open), probe and
// info. Layout (V2.0, big-endian), as qemu reads it:
//   0    the shell-script preamble "#!/bin/sh\n#V2.0 Format\nmodprobe cloop ..." (128 bytes with padding)
//   128  u32 block_size (uncompressed bytes per block, a multiple of 512)
//   132  u32 n_blocks
//   136  u64 offsets[n_blocks + 1]: block i is the zlib stream at [offsets[i], offsets[i + 1])
// Block i inflates to exactly block_size bytes; the disk is n_blocks * block_size bytes (qemu's
// uint32 sector arithmetic, wrapping included).
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::cloop {

inline constexpr uint64_t CLOOP_BLOCK_SIZE_AT = 128;
inline constexpr uint64_t CLOOP_OFFSETS_AT = 136;
// qemu's MAX_BLOCK_SIZE: an uncompressed block is held in memory ("block_size N must be 64 MB or less").
inline constexpr uint32_t CLOOP_MAX_BLOCK_SIZE = 64u * 1024 * 1024;
// qemu's bound on one compressed block (2 * MAX_BLOCK_SIZE): it is held in memory too.
inline constexpr uint64_t CLOOP_MAX_COMPRESSED = 2ull * CLOOP_MAX_BLOCK_SIZE;
// qemu's bound on n_blocks, so (n_blocks + 1) * 8 fits a uint32.
inline constexpr uint32_t CLOOP_MAX_N_BLOCKS = (0xffffffffu - 1) / 8;
// qemu's bound on the offsets array (512 MiB): instar never holds it, but refuses the same images.
inline constexpr uint64_t CLOOP_MAX_OFFSETS_BYTES = 512ull * 1024 * 1024;
// qemu's BDRV_MAX_LENGTH (INT64_MAX aligned down to 1 GiB): a file offset past it is -EIO.
inline constexpr uint64_t CLOOP_MAX_FILE_OFFSET = 0x7fffffffc0000000ull;
// Offsets are scanned (and cached by the reader) in pages of this many (4 KiB, one device read).
inline constexpr uint32_t CLOOP_OFFSET_PAGE = 512;

struct CloopImage {
    uint32_t block_size;
    uint32_t n_blocks;
    uint64_t max_compressed; // the largest offsets[i + 1] - offsets[i] (at least 1, as qemu's)

    uint64_t virtual_size() const {
        const uint32_t sectors = n_blocks * (block_size / 512); // qemu's uint32 product
        return uint64_t{sectors} * 512;
    }
};

// A refusal in qemu's words (numbers included).
struct CloopMessage {
    char text[112];
};

// Builds "HEAD<number>TAIL" in msg (the three together under 112 bytes) and returns msg->text.
const char* cloop_message(CloopMessage* msg, const char* head, uint64_t v, const char* tail);

// Reads [pos, pos + len) of the file with zeros past its end, as qemu's block layer does; a range
// past qemu's BDRV_MAX_LENGTH is its -EIO.
guest::Status read_zero_past_eof(guest::BlockDevice& dev, uint64_t pos, uint8_t* dst, uint64_t len);
inline uint64_t load_be64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = v << 8 | p[i];
    return v;
}

// cloop_open's checks, in its order, including the scan of every offset. *why points into msg or
// at a constant.
guest::Status cloop_load(guest::BlockDevice& dev, CloopImage* out, const char** why, CloopMessage* msg);

guest::Status probe(guest::BlockDevice& dev, bool* match);
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::cloop
