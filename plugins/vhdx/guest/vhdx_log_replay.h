// Replaying the VHDX log into the image: what qemu's read-write open does (vhdx_log_flush) before
// convert -n writes into an image whose log holds an active sequence (docs/formats/vhdx.md).
#pragma once

#include <stdint.h>

#include <instar/guest/edit_device.h>

#include "vhdx_header.h"
#include "vhdx_log.h"

namespace instar::vhdx {

// Zero bytes a replay writes at most ("zero" descriptors; qemu writes them as data). qemu's own
// log writes never use them; Hyper-V's cover metadata ranges (the BAT of a 64 TiB disk with
// 32 MiB blocks is 16 MiB), far below this.
inline constexpr uint64_t VHDX_LOG_REPLAY_ZERO_MAX = 256u << 20;

// qemu's vhdx_log_flush of `seq` (vhdx_log_search's choice) into `dev`: both headers get new file
// and data write GUIDs (labels VHDX_REPLAY_GUID_LABEL.. of `random`, vhdx_derived_guid) with the
// log GUID kept, then each entry's descriptors are written where they say (data sectors as
// leading 8 bytes + 4084 logged bytes + trailing 4 bytes, zero runs as written zeros) and the file
// grows to an unaligned last_file_offset rounded up to 1 MiB, as qemu's truncate does; then a
// flush, then both headers with a zero log GUID. Crash-consistent: until the final header write
// the current header names the log, and writing the same sectors again is harmless, so a kill at
// any point leaves an image qemu (or this) replays again. Corrupt where qemu fails with -EINVAL
// (an entry past the cursor's end, FlushedFileOffset past the file's end, a data sector whose
// sequence number differs); TooLarge past VHDX_LOG_REPLAY_ZERO_MAX.
inline constexpr uint64_t VHDX_REPLAY_GUID_LABEL = 32;
guest::Status vhdx_log_replay(guest::SizedDevice& dev, guest::EditHost& host, guest::Allocator& alloc,
                              const VhdxLogSequence& seq, const uint8_t* random);

} // namespace instar::vhdx
