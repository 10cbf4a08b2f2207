// EditCommand::SetBacking's argument bytes (docs/rebase.md): the backing file name and format a
// format writes into the image's header (qemu's bdrv_change_backing_file), or none (detach). The
// host already applied qemu-img's generic checks (a format needs a name; `-b NAME` needs `-F`); the
// format applies its own (qcow2: a name of at most 1023 bytes that fits in cluster 0).
//
// Layout: SetBackingArgs, then name_len bytes of the name, then format_len bytes of the format
// (no NULs; a NUL inside either is refused as Invalid).
#pragma once

#include <stdint.h>

namespace instar::guest {

inline constexpr uint32_t SET_BACKING_DETACH = 1; // no backing file (name and format empty)

struct SetBackingArgs {
    uint32_t flags;      // SET_BACKING_*
    uint32_t name_len;   // bytes of the name that follow
    uint32_t format_len; // bytes of the format name after it (0: none)
    uint32_t reserved;   // zero
};
static_assert(sizeof(SetBackingArgs) == 16, "set-backing args layout");

// qemu's reasons, as the host prints them after "Could not change the backing file to 'NAME': ".
inline constexpr const char SET_BACKING_NO_SPACE[] = "No space left in the file header"; // -ENOSPC
inline constexpr const char SET_BACKING_INVALID[] = "Invalid argument";                  // -EINVAL
inline constexpr const char SET_BACKING_UNSUPPORTED[] = "Operation not supported";       // -ENOTSUP

} // namespace instar::guest
