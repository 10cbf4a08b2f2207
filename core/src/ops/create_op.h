// `create` as an operation: a plain file for formats without metadata (raw), else the format's
// guest half writes the metadata in the sandbox. Either way the files appear atomically: written
// under temporary names and renamed into place only on success (ops/atomic_output.h).
#pragma once

#include "chain/path_policy.h"
#include "options/option_list.h"
#include "plugins/loaded_plugin.h"
#include "util/expected.h"
#include "vmm/sandbox.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct CreateSpec {
    std::string filename;                  // as the user named it
    const LoadedPlugin* plugin = nullptr;
    std::uint64_t size = 0;                // virtual size in bytes
    // The user's settings for the format except size/backing_file/backing_fmt, normalised (sizes and
    // numbers in decimal, booleans on/off), each key once.
    std::vector<OptionItem> options;
    std::optional<std::string> backing_file; // verbatim, stored in the image
    std::optional<std::string> backing_fmt;
    const OpenedFile* backing = nullptr;   // opened through the path policy; nullptr with -u
    std::uint64_t backing_size = 0;
    std::uint32_t qemu_version = 0;
    std::string preallocation = "off";     // for plain-file formats: off, falloc or full
    // qcow2's external data file: the path to create (the user's name with a `file:` prefix taken
    // off), made atomically with the image and given to the format as a device. The name stored in
    // the image is the `data_file` option's value.
    std::optional<std::string> data_file;
    // The new image's secret (the --object secret its key-secret / encrypt.key-secret names): a LUKS
    // passphrase. create hands it to the guest in a sealed device (INSTAR_CREATE_SECRET_DEVICE),
    // convert in its secrets device as the target's entry. Never printed.
    std::optional<std::string> secret;
};

struct CreateOutcome {
    std::uint64_t unit_size = 0;      // the cluster/grain/block size the format settled on (0: none)
    std::uint64_t metadata_bytes = 0; // bytes the format wrote (fills and plain data not counted)
    std::uint64_t file_size = 0;      // the image file's length afterwards
};

// Errors are qemu-img's messages without the "prog: " prefix ("FILE: REASON" where qemu names the
// file).
Expected<CreateOutcome> create_image(const CreateSpec& spec, const vmm::SandboxConfig& sandbox);

// The guest's view of a create: instar_create_arg, then the NUL-terminated strings it describes (file
// name, backing name and format, option pairs). convert sends the same bytes for its target.
Expected<std::vector<std::uint8_t>> encode_create_arg(const CreateSpec& spec);

} // namespace instar
