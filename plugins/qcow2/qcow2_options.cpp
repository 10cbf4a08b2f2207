// qcow2's `-o` table: the keys, types and help texts of `qemu-img create -f qcow2 -o help`
// (identical in qemu-img 7.2 and 10.0), with instar's policy for each.
#include "qcow2_plugin.h"

namespace instar::qcow2 {
namespace {

constexpr const char* COMPAT_CHOICES[] = {"0.10", "1.1", "v2", "v3", nullptr};
constexpr const char* COMPRESSION_CHOICES[] = {"zlib", "zstd", nullptr};
constexpr const char* PREALLOC_CHOICES[] = {"off", "metadata", "falloc", "full", nullptr};

constexpr OptionPolicy H = OptionPolicy::Honoured;
constexpr OptionType STR = OptionType::String;

} // namespace

// In qemu's QemuOptsList order (the order `qemu-img create` prints them in its "Formatting" line);
// default_value is qemu's def_value_str, which that line prints for keys the user did not set.
const OptionDesc OPTIONS[] = {
    {"encryption", OptionType::Bool, nullptr,
     "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)", H, nullptr,
     nullptr, 0, 0},
    {"encrypt.format", STR, nullptr, "Encrypt the image, format choices: 'aes', 'luks'", H, nullptr,
     nullptr, 0, 0},
    {"encrypt.key-secret", STR, nullptr, "ID of secret providing qcow AES key or LUKS passphrase", H,
     nullptr, nullptr, 0, 0},
    {"encrypt.cipher-alg", STR, nullptr, "Name of encryption cipher algorithm", H, nullptr, nullptr, 0, 0},
    {"encrypt.cipher-mode", STR, nullptr, "Name of encryption cipher mode", H, nullptr, nullptr, 0, 0},
    {"encrypt.ivgen-alg", STR, nullptr, "Name of IV generator algorithm", H, nullptr, nullptr, 0, 0},
    {"encrypt.ivgen-hash-alg", STR, nullptr, "Name of IV generator hash algorithm", H, nullptr, nullptr,
     0, 0},
    {"encrypt.hash-alg", STR, nullptr, "Name of encryption hash algorithm", H, nullptr, nullptr, 0, 0},
    {"encrypt.iter-time", OptionType::Number, nullptr, "Time to spend in PBKDF in milliseconds", H,
     nullptr, nullptr, 0, 0},
    {"cluster_size", OptionType::Size, "65536", "qcow2 cluster size", H, nullptr, nullptr, 0, 0},
    {"extended_l2", OptionType::Bool, "off", "Extended L2 tables", H, nullptr, nullptr, 0, 0},
    {"preallocation", STR, nullptr, "Preallocation mode (allowed values: off, metadata, falloc, full)", H, nullptr,
     PREALLOC_CHOICES, 0, 0},
    {"compression_type", STR, "zlib", "Compression method used for image cluster compression", H, nullptr,
     COMPRESSION_CHOICES, 0, 0},
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    {"compat", STR, nullptr, "Compatibility level (v2 [0.10] or v3 [1.1])", H, nullptr, COMPAT_CHOICES, 0, 0},
    {"backing_file", STR, nullptr, "File name of a base image", H, nullptr, nullptr, 0, 0},
    {"backing_fmt", STR, nullptr, "Image format of the base image", H, nullptr, nullptr, 0, 0},
    // The host creates the data file (any directory, a `file:` prefix taken off) atomically with
    // the image and hands it to the guest as a device.
    {"data_file", STR, nullptr, "File name of an external data file", H, nullptr, nullptr, 0, 0},
    {"data_file_raw", OptionType::Bool, nullptr, "The external data file must stay valid as a raw image", H,
     nullptr, nullptr, 0, 0},
    {"lazy_refcounts", OptionType::Bool, "off", "Postpone refcount updates", H, nullptr, nullptr, 0, 0},
    {"refcount_bits", OptionType::Number, "16", "Width of a reference count entry in bits", H, nullptr, nullptr, 0,
     0},
};
const std::uint32_t OPTION_COUNT = sizeof OPTIONS / sizeof OPTIONS[0];

// qemu's qcow2_amend_opts, in its QemuOptsList order: the order qcow2_amend_options meets the keys
// in, so the order of its image-dependent refusals. The encrypt.* keys are LUKS key-slot changes
// (FormatDescriptor::amend_keyslot_prefix).
const OptionDesc AMEND_OPTIONS[] = {
    {"encrypt.state", OptionType::String, nullptr, "Select new state of affected keyslots (active/inactive)", H,
     nullptr, nullptr, 0, 0},
    {"encrypt.keyslot", OptionType::Number, nullptr, "Select a single keyslot to modify explicitly", H, nullptr,
     nullptr, 0, 0},
    {"encrypt.old-secret", OptionType::String, nullptr, "Select all keyslots that match this password", H, nullptr,
     nullptr, 0, 0},
    {"encrypt.new-secret", OptionType::String, nullptr,
     "New secret to set in the matching keyslots. Empty string to erase", H, nullptr, nullptr, 0, 0},
    {"encrypt.iter-time", OptionType::Number, nullptr, "Time to spend in PBKDF in milliseconds", H, nullptr, nullptr,
     0, 0},
    {"size", OptionType::Size, nullptr, "Virtual disk size", H, nullptr, nullptr, 0, 0},
    {"compat", OptionType::String, nullptr, "Compatibility level (v2 [0.10] or v3 [1.1])", H, nullptr, nullptr, 0,
     0},
    {"backing_file", OptionType::String, nullptr, "File name of a base image", H, nullptr, nullptr, 0, 0},
    {"backing_fmt", OptionType::String, nullptr, "Image format of the base image", H, nullptr, nullptr, 0, 0},
    {"data_file", OptionType::String, nullptr, "File name of an external data file", H, nullptr, nullptr, 0, 0},
    {"data_file_raw", OptionType::Bool, nullptr, "The external data file must stay valid as a raw image", H, nullptr,
     nullptr, 0, 0},
    {"lazy_refcounts", OptionType::Bool, nullptr, "Postpone refcount updates", H, nullptr, nullptr, 0, 0},
    {"refcount_bits", OptionType::Number, nullptr, "Width of a reference count entry in bits", H, nullptr, nullptr,
     0, 0},
};
const std::uint32_t AMEND_OPTION_COUNT = sizeof AMEND_OPTIONS / sizeof AMEND_OPTIONS[0];

} // namespace instar::qcow2
