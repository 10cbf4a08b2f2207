// The instar plugin SDK: how a format plugin's host half describes its format to instar, as data.
//
// A plugin's host half is a shared object that exports exactly two symbols, both through
// INSTAR_DECLARE_PLUGIN (which wraps BOOST_DLL_ALIAS):
//   instar_plugin_abi_version   -> std::uint32_t(): the INSTAR_PLUGIN_ABI_VERSION it was built with.
//   instar_format_plugin_v<N>   -> const instar::FormatDescriptor*(): the format, as static data.
// The ABI-version function's name and signature never change, so instar can refuse a plugin built for
// another ABI with a message naming both versions before it touches anything else in it.
//
// Only trivially-copyable structs, C strings, arrays with counts and (measure.h) noexcept function
// pointers cross the boundary: no STL
// ownership, no exceptions (the factory is noexcept; instar still survives one that throws).
// Everything a descriptor points to must live in the plugin's static storage; instar keeps the
// library loaded for as long as it holds the descriptor.
#pragma once

#include "instar/measure.h"

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace instar {

// Bumped whenever a struct below changes layout or meaning.
// 2: FormatDescriptor::qemu_traits (round 5).
// 3: ProbeMatch::compare (round 7).
// 4: ProbeRule::flags (round 25).
// 5: OptionPolicy::Extension (round 29).
// 6: FormatDescriptor::measure, the target measurement hooks (instar/measure.h; round 30).
// 7: FormatDescriptor::secret_option, detached_header_since, amend_options, amend_keyslot_prefix
//    (round 30).
inline constexpr std::uint32_t INSTAR_PLUGIN_ABI_VERSION = 7;

// qemu-img version profiles are encoded as major*10000 + minor*100 + micro (7.2.0 -> 70200).
constexpr std::uint32_t qemu_version(std::uint32_t major, std::uint32_t minor, std::uint32_t micro = 0) {
    return major * 10000 + minor * 100 + micro;
}

// The subcommands a format supports (FormatDescriptor::capabilities is a mask of these).
enum Capability : std::uint32_t {
    CAP_INFO = 1u << 0,
    CAP_CHECK = 1u << 1,
    CAP_CREATE = 1u << 2,
    CAP_CONVERT = 1u << 3, // a convert source: the guest half reads the virtual disk (read_api.h)
    CAP_COMPARE = 1u << 4,
    CAP_MAP = 1u << 5,
    CAP_MEASURE = 1u << 6, // implied by FormatDescriptor::measure (ABI 6); setting it alone does nothing
    CAP_RESIZE = 1u << 7,
    CAP_SNAPSHOT = 1u << 8,
    CAP_REBASE = 1u << 9,
    CAP_COMMIT = 1u << 10,
    CAP_AMEND = 1u << 11,
    // The format has no metadata: an image is its data. The host creates it as a plain file
    // (create + truncate + preallocation) instead of asking the guest half (raw).
    CAP_CREATE_PLAIN_FILE = 1u << 12,
    // The format's guest half can create an image with a backing file even though qemu-img's
    // option table has no backing_file (vpc, vhdx: differencing disks, an instar extension).
    CAP_CREATE_DIFFERENCING = 1u << 13,
    // A convert target: the guest half creates the image and writes its data (write_api.h).
    CAP_CONVERT_TARGET = 1u << 14,
    // The target format stores compressed data (qemu's bdrv_co_pwritev_compressed): convert -c.
    CAP_CONVERT_COMPRESS = 1u << 15,
    // qemu's driver refuses every read-write open before it reads the header
    // (bdrv_apply_auto_read_only: bochs, cloop, dmg): resize, rebase, commit, amend, snapshot -c/-d/-a,
    // bitmap, check -r and convert -n fail with "Could not open 'X': Image is read-only".
    CAP_READ_ONLY = 1u << 16,
    // qemu's driver has bdrv_make_empty: commit (without -d) empties the top image afterwards, and
    // the guest half handles EditCommand::MakeEmpty (qcow; qcow2 is handled by core as before).
    CAP_MAKE_EMPTY = 1u << 17,
    // qemu's driver changes the image when it opens it read-write (vhdx replays its log): before a
    // read-write open inspects the image, the host runs the guest half's EditCommand::ReplayLog on
    // it (core/src/ops/open_replay.h; convert -n).
    CAP_OPEN_REPLAY = 1u << 18,
};

// How qemu's block driver for the format answers block status and backing where a reader's Extents
// cannot say it (FormatDescriptor::qemu_traits is a mask of these). map, compare and measure derive
// their rules from it, so a format says its behaviour from its plugin, with no format name in core.
// 0 is qemu's BlockDriver default: the driver has bdrv_co_block_status and no backing files.
enum QemuTrait : std::uint32_t {
    // BlockDriver.supports_backing: an unallocated run falls through to the backing file, and reads
    // as ZERO where the chain ends (qcow2, qed, vmdk, qcow, parallels). Without it an unallocated run
    // is neither data nor zero, and map/compare never look below the image.
    QEMU_SUPPORTS_BACKING = 1u << 0,
    // No bdrv_co_block_status: qemu's block layer calls every byte DATA, with no offset (vhdx, luks,
    // bochs, cloop, dmg).
    QEMU_NO_BLOCK_STATUS = 1u << 1,
    // The driver sets BDRV_BLOCK_RECURSE on allocated runs (vmdk flat extents, vpc fixed disks, vdi
    // static images): where the reader reports Zero with an offset (a hole of the file), qemu says
    // DATA|ZERO.
    QEMU_RECURSE_HOLES = 1u << 2,
    // The driver answers ZERO (not 0) for its unallocated blocks (vpc dynamic disks).
    QEMU_UNALLOCATED_ZERO = 1u << 3,
    // The image is its file (raw): a partial last sector is ZERO past the file's end.
    QEMU_SPLIT_EOF = 1u << 4,
    // qcow2_detect_metadata_preallocation: qemu sets BDRV_BLOCK_RECURSE on data of an image whose
    // file holds fewer allocated clusters than the image uses, so data over file holes reads ZERO too.
    QEMU_DETECT_METADATA_PREALLOC = 1u << 5,
    // map names the format's external data files as the image header writes them (qcow2's
    // data_file), not joined with the image's directory (vmdk's extents).
    QEMU_FILES_AS_WRITTEN = 1u << 6,
    // The driver answers bdrv_supports_persistent_dirty_bitmap from qemu 8.2 on (parallels: "parallels:
    // mark driver as supporting CBT", merged September 2023 after 8.1.0), not in 7.2: under an 8.2+
    // profile measure -O qcow2 (compat 1.1) of such a source prints "bitmaps" (0 unless the source
    // carries bitmaps). qcow2 keeps its own rule (v3 images, their bitmaps' sizes).
    QEMU_PERSISTENT_BITMAPS_SINCE_8_2 = 1u << 7,
};
inline constexpr std::uint32_t QEMU_TRAITS_ALL = (1u << 8) - 1;

// Value types, with the spelling qemu-img's `-o help` uses for each.
enum class OptionType : std::uint8_t {
    String, // <str>
    Size,   // <size>: bytes, optional k/M/G/T/P/E suffix
    Number, // <num>
    Bool,   // <bool (on/off)>
};

// What instar does with a key a user passes.
enum class OptionPolicy : std::uint8_t {
    Honoured, // implemented as qemu-img implements it
    Ignored,  // accepted for compatibility, has no effect (reason says why)
    Rejected, // refused with the reason as the error message
    // An instar-only key (ABI 5), honoured: qemu-img has no such key, so instar keeps it out of
    // what it prints in qemu's words (`-o help`, "Accepted parameters: ..."), which stay
    // byte-identical to qemu-img's; `instar formats --output=json` and the docs list it, and
    // create's "Formatting" line shows it only when given (give it no default_value). The reason
    // says what it does.
    Extension,
};
inline constexpr std::uint8_t OPTION_POLICY_LAST = static_cast<std::uint8_t>(OptionPolicy::Extension);

struct OptionDesc {
    const char* key;            // e.g. "cluster_size"
    OptionType type;
    const char* default_value;  // qemu's def_value_str (printed in create's "Formatting" line), or nullptr
    const char* help;           // qemu-img's help text, verbatim
    OptionPolicy policy;
    const char* reason;         // why Ignored/Rejected; nullptr when Honoured
    const char* const* choices; // nullptr-terminated allowed values for String options, or nullptr
    std::uint32_t min_qemu;     // first qemu-img profile that has the key (0: all)
    std::uint32_t max_qemu;     // last qemu-img profile that has the key (0: all)
};

// One byte comparison at a fixed offset of the file. Offsets count from the start, or back from the
// end (FromEnd: offset 512 means the 512 bytes before EOF start the match).
struct ProbeMatch {
    enum Anchor : std::uint8_t { FromStart, FromEnd };
    // How the file's `length` bytes compare with `bytes` (ABI 3). AtLeast reads both as big-endian
    // unsigned numbers (a plain byte-wise comparison): a version field "2 or later" is
    // {FromStart, 4, "\0\0\0\2", 4, AtLeast}, as qemu's probes test `version >= 2`.
    enum Compare : std::uint8_t { Equal, AtLeast };
    Anchor anchor;
    std::uint64_t offset;
    const unsigned char* bytes;
    std::uint32_t length;
    // Last, with a default, so matches written before ABI 3 (four initialisers) still compile: Equal.
    Compare compare = Equal;
};

// What a probe rule is (ABI 4): PROBE_RULE_EXTENSION marks a rule qemu's probe does not have (an
// instar extension, listed as a divergence), so --unsafe-quirks, which probes as qemu-img does,
// skips it.
enum ProbeRuleFlag : std::uint32_t {
    PROBE_RULE_EXTENSION = 1u << 0,
};
inline constexpr std::uint32_t PROBE_RULE_FLAGS_ALL = PROBE_RULE_EXTENSION;

// A rule matches when all its matches do; a format matches when any of its rules does.
struct ProbeRule {
    const ProbeMatch* matches;
    std::uint32_t match_count;
    // Mask of ProbeRuleFlag (ABI 4); defaulted, so two-field rules still compile: 0, qemu's own.
    std::uint32_t flags = 0;
};

// A known, deliberate difference from qemu-img.
struct Divergence {
    const char* id;         // stable identifier, e.g. "raw-needs-partition-table"
    const char* subcommand; // "info", "create", ... or "*"
    const char* what;       // what instar does differently
    const char* why;        // the reason (usually safety)
};

enum ProbePriority : std::uint32_t {
    PROBE_NORMAL = 100,
    PROBE_CATCH_ALL = 1000, // raw: probed last
};

struct FormatDescriptor {
    std::uint32_t abi_version;   // INSTAR_PLUGIN_ABI_VERSION
    const char* name;            // qemu-img's format name: "qcow2", "vpc", ...
    const char* const* aliases;  // nullptr-terminated other names ("vhd"), or nullptr
    const char* version;         // the plugin's own version string
    const char* description;     // one line for `instar formats`
    std::uint32_t capabilities;  // mask of Capability
    std::uint32_t probe_priority;
    const ProbeRule* probe_rules;
    std::uint32_t probe_rule_count;
    const OptionDesc* options;   // the `-o` table in qemu's QemuOptsList order (`-o help` sorts it)
    std::uint32_t option_count;
    const Divergence* divergences;
    std::uint32_t divergence_count;
    const char* guest_module;    // file name of the guest half beside the .so, or nullptr
    // Mask of QemuTrait (ABI 2). The default member initialiser keeps descriptors written without
    // it compiling warning-free (-Wmissing-field-initializers): 0 is qemu's BlockDriver default.
    std::uint32_t qemu_traits = 0;
    // `instar measure -O <this format>` (ABI 6; instar/measure.h): the format's size arithmetic, or
    // nullptr where qemu-img's driver has no bdrv_measure ("does not support size measurement").
    // Code, not data: the hooks run in the host process on trusted inputs only.
    const MeasureHooks* measure = nullptr;

    // What qemu's driver reads from the image's options when it opens or amends one (ABI 7), so
    // that core names no format for them (docs/plugins.md, "Keys, headers and amend").
    // The runtime option naming the --object secret that unlocks an image of the format
    // ("key-secret": luks; "encrypt.key-secret": qcow2), or nullptr. An image name's options and its
    // backing.[...] levels are searched for every installed plugin's secret option.
    const char* secret_option = nullptr;
    // The first qemu-img profile whose driver takes a detached header in a file of its own
    // (`driver=FMT,header.filename=...`: luks from qemu 9.0), or 0. The header file is opened like
    // the image (path policy) and attached to the image's guest runs as its first file.
    std::uint32_t detached_header_since = 0;
    // amend's -o table (the driver's amend_opts, in qemu's QemuOptsList order: the order its
    // image-dependent refusals follow), or nullptr: "Format driver 'X' does not support option
    // amendment". Printed by `amend -o help`.
    const OptionDesc* amend_options = nullptr;
    std::uint32_t amend_option_count = 0;
    // The prefix of LUKS key-slot keys among the amend options (state, keyslot, old-secret,
    // new-secret, iter-time), which core checks as qemu's QAPI visitor does and passes to the guest
    // half as KeySlotArgs with the secrets they name (instar/guest/edit_amend.h); nullptr: none.
    // "" (luks): every amend option is one and the check comes first; any other prefix ("encrypt.",
    // qcow2): the driver meets them after its own options, so a failed check travels to the guest
    // half to be reported in its turn.
    const char* amend_keyslot_prefix = nullptr;
};

static_assert(std::is_trivially_copyable_v<FormatDescriptor> && std::is_aggregate_v<FormatDescriptor>,
              "descriptors cross the .so boundary as plain data");

using PluginAbiVersionFn = std::uint32_t();
using FormatPluginFactoryFn = const FormatDescriptor*();

} // namespace instar

#define INSTAR_PLUGIN_ABI_SYMBOL "instar_plugin_abi_version"
#define INSTAR_PLUGIN_FACTORY_SYMBOL "instar_format_plugin_v7"

// Exports a plugin's two symbols. Use once, at namespace scope, in the plugin's registration file:
//   INSTAR_DECLARE_PLUGIN(my_fmt::descriptor)   where descriptor() returns const FormatDescriptor*.
#include <boost/dll/alias.hpp>
#define INSTAR_DECLARE_PLUGIN(factory)                                                            \
    namespace instar_plugin_export {                                                              \
    inline std::uint32_t abi_version() noexcept { return ::instar::INSTAR_PLUGIN_ABI_VERSION; }   \
    inline const ::instar::FormatDescriptor* make() noexcept { return factory(); }                \
    BOOST_DLL_ALIAS(instar_plugin_export::abi_version, instar_plugin_abi_version)                 \
    BOOST_DLL_ALIAS(instar_plugin_export::make, instar_format_plugin_v7)                          \
    }
