// Hosted driver for the vmdk/vpc/vhdx resize code (docs/resize.md "vmdk, vpc, vhdx"): runs a
// format's guest `edit` with EditCommand::Resize on real files, as INSTAR_OP_EDIT would, for the
// resize_formats_*.py tests. Honours INSTAR_TEST_KILL_AT_WRITE=N as the host does (docs/edit.md).
#pragma once

#include <instar/guest/edit_api.h>

namespace instar::hosted {

// `TOOL IMAGE NEW_SIZE [--shrink] [--preallocation=MODE] [--file PATH]...`: resizes IMAGE (its
// named files given with --file, in the order the format's open names them). Prints the reason on
// stderr and exits 1 on refusal.
int resize_formats_main(int argc, char** argv, guest::EditFn edit);

} // namespace instar::hosted
