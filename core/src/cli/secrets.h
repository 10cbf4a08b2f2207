// `--object secret,id=ID,data=...|file=PATH[,format=raw|base64]`: qemu's user-creatable secret
// objects (crypto/secret.c), read the way qemu-img reads them while parsing its command line. The
// bytes are the user's own (trusted input); they reach the guest only through a sealed device
// (ops/image_table.h's SecretFile) and never appear in a message or log.
#pragma once

#include "util/expected.h"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace instar::cli {

class SecretStore {
public:
    // One --object argument, in command-line order. Errors are qemu's text without "qemu-img: "
    // (a second line, when qemu adds a hint, follows a '\n').
    Expected<bool> add_object(std::string_view objdef);
    // qcrypto_secret_lookup: the secret's bytes, or "No secret with id 'ID'".
    Expected<std::string> lookup(const std::string& id) const;
    bool empty() const { return secrets_.empty(); }

private:
    std::map<std::string, std::string> secrets_;
    std::vector<std::string> other_ids_; // objects that are not secrets (instar makes none yet)
};

// All --object arguments of a command, in order.
Expected<SecretStore> parse_objects(const std::vector<std::string>& objdefs);

// The secret an image name's options point at: `key-secret` (luks) or `encrypt.key-secret`
// (qcow2), looked up; nullopt when the name has neither.
Expected<std::optional<std::string>> secret_for(const SecretStore& store, const std::optional<std::string>& id);

} // namespace instar::cli
