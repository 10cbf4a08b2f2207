// amend's key-slot options on the host (amend_keyslots.h).
#include "cli/amend_keyslots.h"

#include "cli/secrets.h"

#include <cstdlib>

namespace instar::cli {

namespace {

const std::string* last_of(const std::vector<OptionItem>& items, const std::string& key) {
    const std::string* v = nullptr;
    for (const auto& item : items)
        if (item.key == key)
            v = &item.value;
    return v;
}

} // namespace

Expected<KeySlotAmend> keyslot_amend(const std::vector<OptionItem>& items, const std::string& prefix,
                                     const boost::program_options::variables_map& vm) {
    KeySlotAmend k;
    auto value = [&](const char* name) { return last_of(items, prefix + name); };
    // The QAPI visitor: state is the one required member, an enum. qemu visits the keys with the
    // prefix taken off (qcow2_extract_crypto_opts), so its messages name "state" for qcow2 too.
    const std::string* state = value("state");
    if (state == nullptr)
        return Error{"Parameter 'state' is missing"};
    if (*state != "active" && *state != "inactive")
        return Error{"Parameter 'state' does not accept value '" + *state + "'"};
    k.args.active = *state == "active" ? 1 : 0;
    // The host's option check (check_items) already refused a keyslot or iter-time that is no number.
    if (const std::string* v = value("keyslot")) {
        k.args.given |= guest::KEYSLOT_KEYSLOT;
        k.args.keyslot = std::strtoull(v->c_str(), nullptr, 0);
    }
    if (const std::string* v = value("iter-time")) {
        k.args.given |= guest::KEYSLOT_ITER_TIME;
        k.args.iter_time = std::strtoull(v->c_str(), nullptr, 0);
    }
    const std::string* new_id = value("new-secret");
    const std::string* old_id = value("old-secret");
    // qcrypto_block_luks_amend_options: the combinations each state allows.
    if (k.args.active) {
        if (new_id == nullptr)
            return Error{"'new-secret' is required to activate a keyslot"};
        if (old_id != nullptr)
            return Error{"'old-secret' must not be given when activating keyslots"};
    } else {
        if (new_id != nullptr)
            return Error{"'new-secret' must not be given when erasing keyslots"};
        if ((k.args.given & guest::KEYSLOT_ITER_TIME) != 0)
            return Error{"'iter-time' must not be given when erasing keyslots"};
    }
    auto store = command_secrets(vm);
    if (!store)
        return Error{store.error()};
    auto take = [&](const std::string* id, std::uint32_t bit, std::string& dst_id, std::optional<std::string>& dst,
                    std::uint32_t& len) {
        if (id == nullptr)
            return;
        k.args.given |= bit;
        dst_id = id->substr(0, guest::AMEND_MAX_STRING);
        len = static_cast<std::uint32_t>(dst_id.size());
        if (auto s = store->lookup(*id))
            dst = std::move(*s);
    };
    take(new_id, guest::KEYSLOT_NEW_SECRET, k.new_id, k.new_secret, k.args.new_id_len);
    take(old_id, guest::KEYSLOT_OLD_SECRET, k.old_id, k.old_secret, k.args.old_id_len);
    return k;
}

KeySlotAmend keyslot_error(const std::string& message) {
    KeySlotAmend k;
    k.args.given = guest::KEYSLOT_ERROR;
    k.new_id = message.substr(0, guest::AMEND_MAX_STRING);
    k.args.new_id_len = static_cast<std::uint32_t>(k.new_id.size());
    return k;
}

void append_keyslot_args(std::vector<std::uint8_t>& out, const KeySlotAmend& k) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&k.args);
    out.insert(out.end(), p, p + sizeof k.args);
    out.insert(out.end(), k.new_id.begin(), k.new_id.end());
    out.insert(out.end(), k.old_id.begin(), k.old_id.end());
}

} // namespace instar::cli
