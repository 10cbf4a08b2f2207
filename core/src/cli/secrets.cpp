// --object secret (secrets.h).
#include "cli/secrets.h"

#include "ops/map_op.h"
#include "options/option_list.h"
#include "plugins/secret_options.h"

#include <nettle/aes.h>
#include <nettle/cbc.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace instar::cli {
namespace {

// qemu's id_wellformed: a letter, then letters, digits, '-', '.', '_'.
bool id_wellformed(const std::string& id) {
    if (id.empty() || !std::isalpha(static_cast<unsigned char>(id[0])))
        return false;
    for (char c : id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
            return false;
    return true;
}

// RFC 4648 base64 as glib's g_base64_decode reads it: characters outside the alphabet are skipped,
// '=' ends the data.
std::string base64_decode(std::string_view in) {
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (char c : in) {
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else if (c == '=') break;
        else continue;
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    return out;
}

// qemu's qbase64_decode: only the alphabet, '=' and newlines, then glib's decoding.
Expected<std::string> qbase64_decode(std::string_view in) {
    static constexpr std::string_view VALID =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n";
    if (in.find('\0') != std::string_view::npos)
        return Error{"Base64 data contains embedded NUL characters"};
    if (in.find_first_not_of(VALID) != std::string_view::npos)
        return Error{"Base64 data contains invalid characters"};
    return base64_decode(in);
}

// qcrypto_secret_decrypt: the data is AES-256-CBC ciphertext (base64 with format=base64) under the
// 32-byte secret `key` and the base64 `iv`, padded as PKCS#7 (qemu checks only the last byte).
Expected<std::string> decrypt_secret(const std::string& key, const std::optional<std::string>& iv_text,
                                     const std::string& input, bool base64) {
    if (key.size() != 32)
        return Error{"Key should be 32 bytes in length"};
    if (!iv_text)
        return Error{"IV is required to decrypt secret"};
    auto iv = qbase64_decode(*iv_text);
    if (!iv)
        return Error{iv.error()};
    if (iv->size() != 16)
        return Error{"IV should be 16 bytes in length not " + std::to_string(iv->size())};
    std::string cipher = input;
    if (base64) {
        auto decoded = qbase64_decode(input);
        if (!decoded)
            return Error{decoded.error()};
        cipher = std::move(*decoded);
    }
    if (cipher.size() % AES_BLOCK_SIZE != 0)
        return Error{"Length " + std::to_string(cipher.size()) + " must be a multiple of block size " +
                     std::to_string(AES_BLOCK_SIZE)};
    aes256_ctx ctx{};
    aes256_set_decrypt_key(&ctx, reinterpret_cast<const std::uint8_t*>(key.data()));
    std::string plain(cipher.size(), '\0');
    auto* ivp = reinterpret_cast<std::uint8_t*>(iv->data());
    cbc_decrypt(&ctx, reinterpret_cast<nettle_cipher_func*>(aes256_decrypt), AES_BLOCK_SIZE, ivp, cipher.size(),
                reinterpret_cast<std::uint8_t*>(plain.data()), reinterpret_cast<const std::uint8_t*>(cipher.data()));
    std::fill(cipher.begin(), cipher.end(), '\0');
    // qemu reads plaintext[len - 1] even for empty data (its buffer has a NUL there): 0 padding bytes.
    const unsigned pad = plain.empty() ? 0 : static_cast<unsigned char>(plain.back());
    if (pad > 16 || pad > plain.size())
        return Error{"Incorrect number of padding bytes (" + std::to_string(pad) + ") found on decrypted data"};
    plain.resize(plain.size() - pad);
    return plain;
}

} // namespace

Expected<bool> SecretStore::add_object(std::string_view objdef) {
    auto items = split_option_list(objdef);
    // qemu's object_parse: the first item without '=' is the type (split_option_list makes it "on").
    std::optional<std::string> type;
    std::optional<std::string> id, data, file, format, keyid, iv;
    for (std::size_t i = 0; i < items.size(); ++i) {
        const std::string& key = items[i].key;
        const std::string& value = items[i].value;
        if (i == 0 && value == "on" && objdef.substr(0, key.size()) == key &&
            (objdef.size() == key.size() || objdef[key.size()] == ',')) {
            type = key;
            continue;
        }
        if (key == "qom-type") type = value;
        else if (key == "id") id = value;
        else if (key == "data") data = value;
        else if (key == "file") file = value;
        else if (key == "format") format = value;
        else if (key == "keyid") keyid = value;
        else if (key == "iv") iv = value;
        else if (type && *type == "secret")
            return Error{"Parameter '" + key + "' is unexpected"};
    }
    if (!type)
        return Error{"Parameter 'qom-type' is missing"};
    if (*type != "secret")
        return Error{"Parameter 'qom-type' does not accept value '" + *type + "'"};
    if (!id)
        return Error{"Parameter 'id' is missing"};
    if (!id_wellformed(*id))
        return Error{"Parameter 'id' expects an identifier\n"
                     "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter."};
    if (format && *format != "raw" && *format != "base64")
        return Error{"Parameter 'format' does not accept value '" + *format + "'"};
    if (secrets_.count(*id) || std::find(other_ids_.begin(), other_ids_.end(), *id) != other_ids_.end())
        return Error{"attempt to add duplicate property '" + *id + "' to object (type 'container')"};
    std::string bytes;
    if (file) {
        if (data)
            return Error{"'file' and 'data' are mutually exclusive"};
        std::ifstream in(*file, std::ios::binary);
        if (!in) {
            const int e = errno;
            return Error{"Unable to read " + *file + ": Failed to open file \xe2\x80\x9c" + *file +
                         "\xe2\x80\x9d: " + std::strerror(e)};
        }
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    } else if (data) {
        bytes = *data;
    } else {
        return Error{"Either 'file' or 'data' must be provided"};
    }
    if (keyid) {
        if (!secrets_.count(*keyid))
            return Error{"No secret with id '" + *keyid + "'"};
        auto plain = decrypt_secret(secrets_.at(*keyid), iv, bytes, format && *format == "base64");
        std::fill(bytes.begin(), bytes.end(), '\0');
        if (!plain)
            return Error{plain.error()};
        bytes = std::move(*plain);
    } else if (format && *format == "base64") {
        bytes = base64_decode(bytes);
    }
    secrets_.emplace(*id, std::move(bytes));
    return true;
}

Expected<std::string> SecretStore::lookup(const std::string& id) const {
    auto it = secrets_.find(id);
    if (it == secrets_.end())
        return Error{"No secret with id '" + id + "'"};
    return it->second;
}

Expected<SecretStore> parse_objects(const std::vector<std::string>& objdefs) {
    SecretStore store;
    for (const auto& o : objdefs)
        if (auto ok = store.add_object(o); !ok)
            return Error{ok.error()};
    return store;
}

Expected<std::optional<std::string>> secret_for(const SecretStore& store, const std::optional<std::string>& id) {
    if (!id)
        return std::optional<std::string>{};
    auto bytes = store.lookup(*id);
    if (!bytes)
        return Error{bytes.error()};
    return std::optional<std::string>(std::move(*bytes));
}

std::optional<std::string> secret_id(const boost::json::object& strong) {
    std::optional<std::string> id;
    for (const std::string_view key : QEMU_SECRET_OPTIONS)
        if (const auto* v = strong.if_contains(key); v && v->is_string())
            id = std::string(v->as_string());
    return id;
}

std::optional<std::string> secret_id(const boost::json::object& strong, const char* option) {
    if (option == nullptr)
        return secret_id(strong);
    if (const auto* v = strong.if_contains(option); v && v->is_string())
        return std::string(v->as_string());
    return std::nullopt;
}

std::optional<std::string> secret_id(const ImageName& name) { return secret_id(name.strong); }

std::vector<BackingKey> backing_keys_named(const boost::program_options::variables_map& vm, const ImageName& name) {
    const auto store = command_secrets(vm); // (an --object error is reported before any open)
    std::vector<BackingKey> keys;
    for (const auto& level : name.backing_strong) {
        BackingKey k;
        for (const std::string_view key : QEMU_SECRET_OPTIONS)
            if (const auto* v = level.if_contains(key); v && v->is_string()) {
                const std::string id(v->as_string());
                k.named.emplace_back(std::string(key), BackingKey::Named{id, store && store->lookup(id).ok()});
            }
        keys.push_back(std::move(k));
    }
    return keys;
}

Expected<SecretStore> command_secrets(const boost::program_options::variables_map& vm) {
    if (!vm.count("object"))
        return SecretStore{};
    return parse_objects(vm["object"].as<std::vector<std::string>>());
}

Expected<std::optional<std::string>> image_secret(const SecretStore& store, const ImageName& name) {
    auto secret = secret_for(store, secret_id(name));
    if (!secret)
        return Error{"Could not open '" + name.given + "': " + secret.error()};
    return secret;
}

OpenKey open_key(const boost::program_options::variables_map& vm, const ImageName& name) {
    OpenKey key;
    const auto id = secret_id(name);
    if (!id)
        return key;
    key.without = false;
    if (auto store = command_secrets(vm); store && !store->lookup(*id)) {
        key.without = true;
        key.missing = *id;
    }
    return key;
}

std::string missing_key(std::string error, const OpenKey& key) {
    if (!key.missing)
        return error;
    for (const std::string_view option : QEMU_SECRET_OPTIONS) {
        const std::string param = "Parameter '" + std::string(option) + "' is required for cipher";
        if (const auto at = error.find(param); at != std::string::npos)
            return error.replace(at, param.size(), "No secret with id '" + *key.missing + "'");
    }
    return error;
}

std::optional<std::string> named_image_secret(const boost::program_options::variables_map& vm,
                                              const ImageName& name) {
    auto store = command_secrets(vm);
    if (!store)
        return std::nullopt;
    auto secret = image_secret(*store, name);
    return secret ? *secret : std::nullopt;
}

Expected<std::optional<std::string>> unlock_for_command(const boost::program_options::variables_map& vm,
                                                        const ImageName& name, const ChainLink& link,
                                                        const vmm::SandboxConfig& sandbox,
                                                        std::uint32_t qemu_version) {
    if (!link.node.encrypted.value_or(false))
        return std::optional<std::string>{};
    auto store = command_secrets(vm);
    if (!store)
        return Error{store.error()};
    auto secret = image_secret(*store, name);
    if (!secret)
        return Error{secret.error()};
    if (auto unlocked = unlock_image(link, *secret, sandbox, qemu_version); !unlocked)
        return Error{quote_given(name, unlocked.error())};
    return std::move(*secret);
}

BackingSecretFn backing_secret_fn(const SecretStore& store, const ImageName& name) {
    return [&store, &name](std::size_t depth, const char* secret_option) {
        const auto& levels = name.backing_strong;
        return secret_for(store, depth <= levels.size() ? secret_id(levels[depth - 1], secret_option) : std::nullopt);
    };
}

Expected<std::optional<std::string>> unlock_chain_for_command(const boost::program_options::variables_map& vm,
                                                              const ImageName& name, OpenedChain& chain,
                                                              const vmm::SandboxConfig& sandbox,
                                                              std::uint32_t qemu_version) {
    auto top = unlock_for_command(vm, name, chain.links.front(), sandbox, qemu_version);
    if (!top || chain.links.size() < 2)
        return top;
    auto store = command_secrets(vm);
    if (!store)
        return Error{store.error()};
    const BackingSecretFn secret_of = backing_secret_fn(*store, name);
    if (auto named = assign_backing_secrets(chain, secret_of, name.path, sandbox, qemu_version, 1); !named)
        return Error{quote_given(name, named.error())};
    if (auto keys = unlock_chain(chain, chain.links.size(), name.path, sandbox, qemu_version, 1); !keys)
        return Error{quote_given(name, keys.error())};
    return top;
}

std::string after_unlocking_above(const boost::program_options::variables_map& vm, const ImageName& name,
                                  OpenedChain& chain, std::string failure, const vmm::SandboxConfig& sandbox,
                                  std::uint32_t qemu_version) {
    if (chain.links.empty() || chain.links.front().plugin == nullptr)
        return failure;
    auto store = command_secrets(vm);
    if (!store)
        return store.error();
    auto top = image_secret(*store, name);
    if (!top)
        return top.error();
    return quote_given(name, unlock_above_failure(chain, Error{std::move(failure)}, *top,
                                                  backing_secret_fn(*store, name), name.path, sandbox, qemu_version)
                                 .message);
}

} // namespace instar::cli
