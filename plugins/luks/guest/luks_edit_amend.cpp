// luks: `amend` (EditCommand::Amend, docs/amend.md): qemu's block_crypto_amend_options_luks, the
// key-slot options only (luks_keyslots.h). The host checked the option types and qemu's QAPI and
// option-combination checks; AmendArgs carries no qcow2 key here.
#include "luks_edit.h"

#include "luks_keyslots.h"

namespace instar::luks {

guest::Status edit_amend(const guest::EditRequest& req, guest::EditHost& host) {
    guest::AmendArgs a{};
    if (req.args_len < sizeof a)
        return guest::Status::Invalid;
    __builtin_memcpy(&a, req.args, sizeof a);
    const size_t strings = size_t{a.compat_len} + a.backing_file_len + a.backing_fmt_len + a.data_file_len;
    if (a.given != guest::AMEND_ENCRYPT || strings != 0)
        return guest::Status::Invalid;
    KeySlotChange change;
    if (const guest::Status st = read_keyslot_change(req, sizeof a, (a.flags & guest::AMEND_FORCE) != 0, &change);
        st != guest::Status::Ok)
        return st;
    return luks_amend_keyslots(*req.image, 0, LUKS_AMEND_NO_LIMIT, change, req, host);
}

} // namespace instar::luks
