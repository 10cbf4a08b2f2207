// amend's LUKS key-slot options on the host (docs/amend.md): luks's state, keyslot, new-secret,
// old-secret, iter-time and qcow2's encrypt.* ones. What qemu checks before it reads the header
// (the QAPI visitor of QCryptoBlockAmendOptionsLUKS, block_crypto's option combinations) and the
// bytes and secrets the guest's key-slot code (plugins/luks/guest/luks_keyslots.h) needs.
#pragma once

#include "options/option_list.h"
#include "util/expected.h"

#include <instar/guest/edit_amend.h>

#include <boost/program_options/variables_map.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace instar::cli {

struct KeySlotAmend {
    guest::KeySlotArgs args{};
    std::string new_id, old_id;
    std::optional<std::string> new_secret, old_secret; // nullopt: no such --object (the guest says so in order)
};

// The key-slot options among `items` (keys `prefix` + name; the last value of a key wins), checked
// as qemu checks them before it reads the header. Errors are qemu's text without "qemu-img: ".
Expected<KeySlotAmend> keyslot_amend(const std::vector<OptionItem>& items, const std::string& prefix,
                                     const boost::program_options::variables_map& vm);

// A key-slot change that carries only the check's error (KEYSLOT_ERROR), for a format that reports
// it later in its own order (qcow2).
KeySlotAmend keyslot_error(const std::string& message);

// KeySlotArgs and its ids as EditCommand::Amend's trailing bytes (edit_amend.h).
void append_keyslot_args(std::vector<std::uint8_t>& out, const KeySlotAmend& k);

} // namespace instar::cli
