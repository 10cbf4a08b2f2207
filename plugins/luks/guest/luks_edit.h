// The luks format's in-place changes (ModuleOps::edit, instar/guest/edit_api.h, docs/edit.md): one
// entry point that hands each command to its own file.
#pragma once

#include <instar/guest/edit_api.h>
#include <instar/guest/edit_resize_file.h>

namespace instar::luks {

guest::Status edit(const guest::EditRequest& req, guest::EditHost& host);

// `resize`: the payload after the header grows or shrinks (qemu's block_crypto_co_truncate).
guest::Status edit_resize(const guest::EditRequest& req, guest::EditHost& host);

// The file truncated to `payload_offset` + the new size, with qemu's length bound (LUKS1 above, and
// a LUKS2 segment of dynamic size: luks2_format.cpp).
guest::Status resize_payload(const guest::EditRequest& req, guest::EditHost& host, const guest::ResizeArgs& a,
                             uint64_t payload_offset);

// `amend`: key-slot changes (luks_keyslots.h).
guest::Status edit_amend(const guest::EditRequest& req, guest::EditHost& host);

} // namespace instar::luks
