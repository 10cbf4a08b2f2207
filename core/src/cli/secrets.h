// `--object secret,id=ID,data=...|file=PATH[,format=raw|base64]`: qemu's user-creatable secret
// objects (crypto/secret.c), read the way qemu-img reads them while parsing its command line. The
// bytes are the user's own (trusted input); they reach the guest only through a sealed device
// (ops/image_table.h's SecretFile) and never appear in a message or log.
#pragma once

#include "cli/image_name.h"
#include "ops/info_op.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <boost/program_options/variables_map.hpp>

#include <functional>
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

// The secret an image name's options point at (one of QEMU_SECRET_OPTIONS: key-secret,
// encrypt.key-secret), looked up; nullopt when the name has neither.
Expected<std::optional<std::string>> secret_for(const SecretStore& store, const std::optional<std::string>& id);

// The one way every command that opens an image finds its secret (docs/architecture.md, "Secrets"):
// command_secrets makes the store from the command's --object arguments (in order; none: empty),
// image_secret looks up the secret `name`'s key-secret / encrypt.key-secret names (the last one
// given), nullopt when it names none; secret_id is that id.
// Errors are qemu's text without "qemu-img: ": an --object error as it is (qemu exits 1 while
// parsing), a lookup error framed "Could not open 'GIVEN': ..." as qemu's bdrv_open reports it.
Expected<SecretStore> command_secrets(const boost::program_options::variables_map& vm);
Expected<std::optional<std::string>> image_secret(const SecretStore& store, const ImageName& name);
// The secret the command line names for the image, or nullopt (none named, or an error the
// command's own unlocking reports later): for a dirty image's repair before the command
// (EditOpen::secret).
std::optional<std::string> named_image_secret(const boost::program_options::variables_map& vm,
                                              const ImageName& name);
std::optional<std::string> secret_id(const ImageName& name);
// The same for one node's strong options (ImageName::strong, or a backing_strong level).
std::optional<std::string> secret_id(const boost::json::object& strong);
// Only `option`, the key the image's driver reads (its plugin's FormatDescriptor::secret_option;
// nullptr: either): qemu opening a qcow2 backing file named with backing.key-secret finds no key.
std::optional<std::string> secret_id(const boost::json::object& strong, const char* option);
// Element d-1: what backing level d names for its key (InfoOptions::backing_keys).
std::vector<BackingKey> backing_keys_named(const boost::program_options::variables_map& vm, const ImageName& name);

// qemu looks an image's key up before it reads a LUKS header (a luks image's, or the one in a
// qcow2's crypto extension): an image that names no key, or one --object did not define, opens
// without a key (InfoOptions::opens_without_key: the guest refuses at that header). `missing` is
// the id named but not defined, for missing_key.
struct OpenKey {
    bool without = true;
    std::optional<std::string> missing;
};
OpenKey open_key(const boost::program_options::variables_map& vm, const ImageName& name);
// The guest's refusal of an image opened without a key ("Parameter '[encrypt.]key-secret' is
// required for cipher"), in qemu's words when the key was named but not defined: "No secret with
// id 'ID'". Other errors unchanged.
std::string missing_key(std::string error, const OpenKey& key);

// For the commands that open an image for I/O but read none of its data through a plan (check,
// snapshot, bitmap, resize, amend): when `link` (the opened top of `name`) is encrypted, its
// secret looked up and its key unlocked in a sandbox (ops/map_op.h's unlock_image), as qemu's
// bdrv_open does. Errors are qemu's complete messages (without "qemu-img: "). The value is the
// secret the key was unlocked with (nullopt for an image that is not encrypted), for a command that
// then reads or writes the image's data (rebase).
Expected<std::optional<std::string>> unlock_for_command(const boost::program_options::variables_map& vm, const ImageName& name,
                                  const ChainLink& link, const vmm::SandboxConfig& sandbox,
                                  std::uint32_t qemu_version);

// The secret of the encrypted backing image `depth` levels down as `name`'s backing.[…]key-secret
// / encrypt.key-secret names it under the key its driver reads (ops/info_op.h's BackingSecretFn);
// `store` and `name` outlive it.
BackingSecretFn backing_secret_fn(const SecretStore& store, const ImageName& name);

// unlock_for_command for the whole chain an edit command opened (snapshot, resize, amend): qemu
// unlocks every encrypted image's key as it opens the chain, each backing image with the key its
// backing.[…]key-secret names (errors in the top's frame). Returns the top's secret.
Expected<std::optional<std::string>> unlock_chain_for_command(const boost::program_options::variables_map& vm,
                                                              const ImageName& name, OpenedChain& chain,
                                                              const vmm::SandboxConfig& sandbox,
                                                              std::uint32_t qemu_version);

// An edit command's open failed (`failure`, framed): when the top opened and the failure is below
// it, qemu had unlocked the keys of the images above the failure first, so a key error there is
// reported instead (ops/map_op.h's unlock_above_failure), else `failure`.
std::string after_unlocking_above(const boost::program_options::variables_map& vm, const ImageName& name,
                                  OpenedChain& chain, std::string failure, const vmm::SandboxConfig& sandbox,
                                  std::uint32_t qemu_version);

} // namespace instar::cli
