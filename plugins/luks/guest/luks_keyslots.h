// Changing a LUKS1 header's key slots in place (qemu: crypto/block-luks.c
// qcrypto_block_luks_amend_options): `amend` of a luks image's state/keyslot/new-secret/old-secret/
// iter-time, and of a qcow2 image's encrypt.* (the header inside the image's crypto clusters).
#pragma once

#include <instar/guest/edit_amend.h>
#include <instar/guest/edit_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::luks {

// The key-slot part of an amend: KeySlotArgs with its ids (not NUL-terminated), and the keys'
// prefix in qemu's messages ("" for luks, "encrypt." for qcow2).
struct KeySlotChange {
    guest::KeySlotArgs args{};
    const char* new_id = nullptr;
    size_t new_id_len = 0;
    const char* old_id = nullptr;
    size_t old_id_len = 0;
    bool force = false;
};

// Reads KeySlotArgs and its ids from req.args at `at` (after AmendArgs and its strings). Invalid:
// the bytes do not add up.
guest::Status read_keyslot_change(const guest::EditRequest& req, size_t at, bool force, KeySlotChange* out);

// Bytes from `base` a luks image's header and key material may use: the whole device.
inline constexpr uint64_t LUKS_AMEND_NO_LIMIT = UINT64_MAX;

// qemu's amend of the LUKS1 header at `base` of `dev` (key slot offsets count from there), with the
// image's key in req.secrets[EDIT_SECRET_KEY]: adds a key slot (state=active) or erases the ones a
// keyslot index or old-secret selects (state=inactive), with qemu's checks and messages in its
// order. Crash-safe order: a new slot's key material is written and flushed before the header
// entry that enables it; an erased slot is disabled in the header (flushed) before its material is
// overwritten. Writes stay inside [base, base + limit) (qcow2: the crypto header extension's
// clusters; qemu's qcow2_crypto_hdr_write_func refuses the rest). A change carrying the host's
// check error (KEYSLOT_ERROR) is refused with it before anything is read. Refusals go to `host`'s
// reason.
guest::Status luks_amend_keyslots(guest::BlockDevice& dev, uint64_t base, uint64_t limit,
                                  const KeySlotChange& change, const guest::EditRequest& req, guest::EditHost& host);

} // namespace instar::luks
