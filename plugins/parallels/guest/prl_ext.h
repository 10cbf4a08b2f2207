// The Parallels Format Extension as qemu 7.2 and 10.0 read it (block/parallels-ext.c): the cluster
// the header's ext_off names holds a magic, the MD5 of the rest of the cluster, and a list of
// features; the dirty bitmaps feature is the only one qemu knows. qemu loads the bitmaps read-only
// and nothing qemu-img prints shows them, so instar checks the extension as qemu's read-only open
// does (the same errors, in the same order) and keeps nothing of it.
#pragma once

#include "prl_header.h"

#include <stddef.h>
#include <stdint.h>

namespace instar::parallels {

inline constexpr uint64_t PRL_EXT_MAGIC = 0xAB234CEF23DCEA87ull;
inline constexpr uint64_t PRL_EXT_END_OF_FEATURES = 0;
inline constexpr uint64_t PRL_EXT_DIRTY_BITMAP = 0x20385FAE252CB34Aull;
inline constexpr size_t PRL_EXT_HEADER = 24;   // magic, MD5
inline constexpr size_t PRL_EXT_FEATURE = 24;  // magic, flags, data_size, unused
inline constexpr size_t PRL_EXT_BITMAP = 32;   // size, id, granularity, l1_size (the L1 table follows)
// Bytes of the extension cluster hashed per read: the cluster can be up to 2 GiB (4 M sectors).
inline constexpr size_t PRL_EXT_CHUNK = 16 * 1024; // on the guest stack (960 KiB)
// Bitmaps one extension may declare: their ids are kept to find a duplicate ("Bitmap already
// exists"). A 1 MiB cluster holds at most 18724 (56 bytes each with a 1-entry table); real images
// carry a few. More is refused with a reason (divergence parallels-ext-limits).
inline constexpr uint32_t PRL_EXT_MAX_BITMAPS = 1024; // 16 KiB of ids on the guest stack

// Checks the format extension at img.ext_off as qemu's read-only open does. On failure *why points
// at qemu's message, formatted into img.why_buf. IoError: a read of the device failed.
guest::Status prl_check_extension(guest::BlockDevice& dev, PrlImage& img, const char** why);

} // namespace instar::parallels
