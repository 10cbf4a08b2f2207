// `instar measure`: qemu-img measure's command line and checks, in img_measure's order; the
// arithmetic and the source's walk are ops/measure_op.
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/measure_op.h"
#include "options/option_list.h"
#include "options/size.h"
#include "output/json_pretty.h"
#include "output/option_help.h"

#include <boost/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <ostream>

namespace instar::cli {
namespace {

// qemu-img 10.0's text (its typo included), then instar's own options.
constexpr std::string_view MEASURE_HELP =
    "Usage:\n"
    "Calculate file size requred for a new image.  Usage:\n"
    "\n"
    "  qemu-img measure [-f FMT|--image-opts] [-o OPTIONS] [-O OUTPUT_FMT]\n"
    "       [--output OFMT] [--object OBJDEF] [-l SNAPSHOT_PARAM]\n"
    "       (--size SIZE | FILENAME)\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -O, --target-format FMT\n"
    "     desired target/output image format (default raw)\n"
    "  -s, --size SIZE\n"
    "     measure file size for given image size\n"
    "  FILENAME\n"
    "     measure file size required to convert from FILENAME\n"
    "  -f, --format\n"
    "     specify format of FILENAME explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "     instead of a file name (incompatible with --format)\n"
    "  -l, --snapshot SNAPSHOT\n"
    "     use this snapshot in FILENAME as source\n"
    "  --output human|json\n"
    "     output format\n"
    "  -U, --force-share\n"
    "     open images in shared mode for concurrent access\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images (backing files, extents) under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "  --estimate\n"
    "     for vmdk, vpc and vhdx targets (which qemu-img cannot measure): upper bounds of what\n"
    "     instar convert writes (docs/measure.md)\n"
    "\n";

// Long options only qemu-img 10.0 has; 7.2's getopt refuses them.
constexpr const char* LONG_OPTIONS_72[] = {"help", "image-opts", "object", "output", "size", "force-share",
                                           "qemu-version", "max-guest-memory"};
constexpr const char* LONG_OPTIONS_INSTAR[] = {"allow-path", "unsafe-quirks", "estimate"};

// qemu's block drivers that are not instar plugins, by what measure says about them (the formats
// qemu-img lists as supported in each profile; 7.2 has a few more network protocols).
constexpr const char* NO_CREATE[] = {"blkdebug", "blklogwrites", "blkverify", "bochs", "cloop", "compress",
                                     "copy-before-write", "copy-on-read", "dmg", "null-aio", "null-co",
                                     "preallocate", "quorum", "replication", "snapshot-access", "throttle",
                                     "vvfat"};
constexpr const char* NO_CREATE_72[] = {"ftp", "ftps", "http", "https"};
constexpr const char* NO_MEASURE[] = {"file", "host_cdrom", "host_device", "nbd", "nvme", "parallels", "qcow",
                                      "qed", "vdi"};
constexpr const char* NO_MEASURE_72[] = {"gluster", "iscsi", "iser", "nfs", "rbd", "ssh"};

template <std::size_t N>
bool listed(const char* const (&list)[N], std::string_view name) {
    return std::find(std::begin(list), std::end(list), name) != std::end(list);
}

constexpr const char* SIZE_HINT =
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

// qemu's luks format's create options (block/crypto.c), for `-O luks`.
constexpr OptionPolicy LUKS_H = OptionPolicy::Honoured;
const OptionDesc LUKS_OPTIONS[] = {
    {"size", OptionType::Size, nullptr, "Virtual disk size", LUKS_H, nullptr, nullptr, 0, 0},
    {"key-secret", OptionType::String, nullptr, "ID of secret providing LUKS passphrase", LUKS_H, nullptr, nullptr, 0, 0},
    {"cipher-alg", OptionType::String, nullptr, "Name of encryption cipher algorithm", LUKS_H, nullptr, nullptr, 0, 0},
    {"cipher-mode", OptionType::String, nullptr, "Name of encryption cipher mode", LUKS_H, nullptr, nullptr, 0, 0},
    {"ivgen-alg", OptionType::String, nullptr, "Name of IV generator algorithm", LUKS_H, nullptr, nullptr, 0, 0},
    {"ivgen-hash-alg", OptionType::String, nullptr, "Name of IV generator hash algorithm", LUKS_H, nullptr, nullptr, 0,
     0},
    {"hash-alg", OptionType::String, nullptr, "Name of encryption hash algorithm", LUKS_H, nullptr, nullptr, 0, 0},
    {"iter-time", OptionType::Number, nullptr, "Time to spend in PBKDF in milliseconds", LUKS_H, nullptr, nullptr, 0,
     0},
    {"detached-header", OptionType::Bool, nullptr, "Create a detached LUKS header", LUKS_H, nullptr, nullptr,
     qemu_version(9, 0), 0},
    // The luks plugin's extension (divergence luks2-create): a LUKS2 volume's header size.
    {"luks-version", OptionType::String, nullptr, "LUKS on-disk format version: 1 (qemu-img's) or 2",
     OptionPolicy::Extension, "measures the LUKS2 volume the luks plugin creates", nullptr, 0, 0},
};
// What the luks plugin's LUKS2 creation puts before the data (plugins/luks/guest/luks2_create.cpp:
// cryptsetup's default 16 MiB segment offset), whatever the cipher.
constexpr std::uint64_t LUKS2_NEW_SEGMENT_OFFSET = 16u << 20;

// qemu_opts_do_parse against the target's create options (the format's, then the file protocol's):
// the value's type is checked, nothing else. Returns qemu's message on failure.
std::optional<std::string> check_measure_options(const std::vector<OptionItem>& items,
                                                 std::span<const OptionDesc> table, std::uint32_t profile,
                                                 std::vector<std::string>& warnings) {
    for (const auto& item : items) {
        const OptionDesc* d = find_option(table, item.key, profile);
        if (!d)
            d = find_option(file_protocol_options(), item.key, profile);
        if (!d)
            return "Invalid parameter '" + item.key + "'";
        switch (d->type) {
        case OptionType::String:
            break;
        case OptionType::Bool:
            if (item.value != "on" && item.value != "off" && item.value != "yes" && item.value != "no" &&
                item.value != "true" && item.value != "false" && item.value != "y" && item.value != "n")
                return "Parameter '" + item.key + "' expects 'on' or 'off'";
            break;
        case OptionType::Number: {
            const std::string s = item.value;
            errno = 0;
            char* end = nullptr;
            (void)std::strtoull(s.c_str(), &end, 0);
            if (s.empty() || end == s.c_str() || *end != '\0')
                return "Parameter '" + item.key + "' expects a number";
            if (errno == ERANGE)
                return "Value '" + item.value + "' is too large for parameter '" + item.key + "'";
            break;
        }
        case OptionType::Size: {
            const SizeParse p = parse_qemu_size(item.value, profile);
            if (p.status == ParseStatus::OutOfRange)
                return "Value '" + item.value + "' is out of range for parameter '" + item.key + "'";
            if (p.status != ParseStatus::Ok)
                return "Parameter '" + item.key + "' expects a non-negative number below 2^64\n" + SIZE_HINT;
            if (p.warning)
                warnings.push_back(*p.warning);
            break;
        }
        }
    }
    return std::nullopt;
}

// The last setting of a key (qemu_opt_get finds the latest).
const std::string* last_value(const std::vector<OptionItem>& items, std::string_view key) {
    const std::string* v = nullptr;
    for (const auto& item : items)
        if (item.key == key)
            v = &item.value;
    return v;
}

bool bool_value(const std::string& v) { return v == "on" || v == "yes" || v == "true" || v == "y"; }

// block_crypto_measure / qcow2_measure for a LUKS header, in qemu's order: the QAPI visitor of
// QCryptoBlockCreateOptionsLUKS (the enum members in field order, then an unexpected
// detached-header), then qcrypto_block_luks_create's checks: the key-secret, its lookup, the
// algorithms qemu's LUKS code offers, the ESSIV cipher, the cipher mode. Then
// qcrypto_block_calculate_payload_offset: the partition header and key-slot headers (4 KiB), and
// 8 key slots of the master key split into 4000 stripes, each rounded up to 4 KiB (the master key
// is the cipher's key length, doubled for XTS). Messages are qemu's (Debian's builds: no sm4).
Expected<std::uint64_t> luks_measure(const std::vector<OptionItem>& items, const std::string& prefix,
                                     const std::vector<std::string>& secrets, std::uint32_t profile) {
    struct Alg {
        const char* name;
        std::uint64_t key;
        const char* family; // qemu's ESSIV lookup names the family; nullptr: no ESSIV with it
    };
    // QCryptoCipherAlgo; key 0: in the enum but not offered by qemu's LUKS code.
    constexpr Alg ALGS[] = {{"aes-128", 16, "AES"},          {"aes-192", 24, "AES"},
                            {"aes-256", 32, "AES"},          {"des", 0, nullptr},
                            {"3des", 0, nullptr},            {"cast5-128", 16, nullptr},
                            {"serpent-128", 16, "Serpent"},  {"serpent-192", 24, "Serpent"},
                            {"serpent-256", 32, "Serpent"},  {"twofish-128", 16, "Twofish"},
                            {"twofish-192", 24, "Twofish"},  {"twofish-256", 32, "Twofish"},
                            {"sm4", 0, nullptr}};
    constexpr const char* MODES[] = {"ecb", "cbc", "xts", "ctr"};
    constexpr const char* IVGENS[] = {"plain", "plain64", "essiv"};
    struct Hash {
        const char* name;
        std::uint64_t digest;
    };
    constexpr Hash HASHES[] = {{"md5", 16},    {"sha1", 20},   {"sha224", 28},    {"sha256", 32},
                               {"sha384", 48}, {"sha512", 64}, {"ripemd160", 20}, {"sm3", 32}};
    // sm4 and sm3 are enum values from qemu 9.0 (the guest's LUKS_SM_QEMU_VERSION).
    const bool sm = profile >= qemu_version(9, 0);
    auto known = [&](std::string_view v) { return sm || (v != "sm4" && v != "sm3"); };
    const std::string* alg = last_value(items, prefix + "cipher-alg");
    const std::string* mode = last_value(items, prefix + "cipher-mode");
    const std::string* ivgen = last_value(items, prefix + "ivgen-alg");
    const std::string* ivhash = last_value(items, prefix + "ivgen-hash-alg");
    const std::string* hash = last_value(items, prefix + "hash-alg");
    const Alg* a = std::find_if(std::begin(ALGS), std::end(ALGS), [&](const Alg& x) { return alg && *alg == x.name; });
    const Hash* ih = std::find_if(std::begin(HASHES), std::end(HASHES),
                                  [&](const Hash& x) { return ivhash && *ivhash == x.name; });
    auto in = [](const std::string* v, const auto& names) {
        return std::find_if(std::begin(names), std::end(names), [&](const char* n) { return *v == n; }) !=
               std::end(names);
    };
    auto bad = [](const char* key, const std::string& v) {
        return Error{"Parameter '" + std::string(key) + "' does not accept value '" + v + "'"};
    };
    if (alg && (a == std::end(ALGS) || !known(*alg)))
        return bad("cipher-alg", *alg);
    if (mode && !in(mode, MODES))
        return bad("cipher-mode", *mode);
    if (ivgen && !in(ivgen, IVGENS))
        return bad("ivgen-alg", *ivgen);
    if (ivhash && (ih == std::end(HASHES) || !known(*ivhash)))
        return bad("ivgen-hash-alg", *ivhash);
    if (hash && (std::none_of(std::begin(HASHES), std::end(HASHES), [&](const Hash& x) { return *hash == x.name; }) ||
                 !known(*hash)))
        return bad("hash-alg", *hash);
    // qemu 9.0+ lists detached-header among luks's create options, but block_crypto_measure's
    // QCryptoBlockCreateOptions has no such member: any value is refused before the secret.
    if (prefix.empty() && last_value(items, "detached-header"))
        return Error{"Parameter 'detached-header' is unexpected"};
    const std::string* luks_version = prefix.empty() ? last_value(items, "luks-version") : nullptr;
    if (luks_version && *luks_version != "1" && *luks_version != "2")
        return bad("luks-version", *luks_version);
    const std::string* secret = last_value(items, prefix + "key-secret");
    if (!secret)
        return Error{"Parameter '" + prefix + "key-secret' is required for cipher"};
    if (std::find(secrets.begin(), secrets.end(), *secret) == secrets.end())
        return Error{"No secret with id '" + *secret + "'"};
    if (!alg)
        a = &ALGS[2]; // aes-256
    const std::string mode_name = mode ? *mode : "xts";
    if (a->key == 0)
        return Error{"Algorithm '" + std::string(a->name) + "' not supported"};
    if (ivgen && *ivgen == "essiv") {
        if (a->family == nullptr)
            return Error{"Cipher " + std::string(a->name) + " not supported with essiv"};
        const std::uint64_t digest = ivhash ? ih->digest : 32; // sha256
        if (digest != 16 && digest != 24 && digest != 32)
            return Error{"No " + std::string(a->family) + " cipher with key size " + std::to_string(digest) +
                         " available"};
    }
    if (mode_name == "xts" && a->family == nullptr) // cast5's 8-byte blocks
        return Error{"Unsupported cipher mode xts"};
    if (luks_version && *luks_version == "2")
        return LUKS2_NEW_SEGMENT_OFFSET;
    constexpr std::uint64_t STRIPES = 4000, SLOTS = 8, ALIGN = 4096;
    const std::uint64_t key = a->key * (mode_name == "xts" ? 2 : 1);
    const std::uint64_t slot = (key * STRIPES + ALIGN - 1) / ALIGN * ALIGN;
    return ALIGN + SLOTS * slot;
}

Expected<Qcow2MeasureParams> qcow2_params(const std::vector<OptionItem>& items, std::uint32_t profile,
                                          const std::vector<std::string>& secrets) {
    Qcow2MeasureParams p;
    if (const std::string* v = last_value(items, "extended_l2"))
        p.extended_l2 = bool_value(*v);
    if (const std::string* v = last_value(items, "cluster_size"))
        p.cluster_size = parse_qemu_size(*v, profile).value;
    {
        // validate_cluster_size: qemu takes ctz32 of the value truncated to 32 bits.
        const auto low = static_cast<std::uint32_t>(p.cluster_size);
        const int bits = low == 0 ? 32 : std::countr_zero(low);
        if (bits < 9 || bits > 21 || (1ull << bits) != p.cluster_size)
            return Error{"Cluster size must be a power of two between 512 and 2048k"};
        if (p.extended_l2 && p.cluster_size < 512 * 32)
            return Error{"Extended L2 entries are only supported with cluster sizes of at least 16384 bytes"};
    }
    if (const std::string* v = last_value(items, "compat")) {
        if (*v == "0.10")
            p.version = 2;
        else if (*v == "1.1")
            p.version = 3;
        else
            return Error{"Invalid compatibility level: '" + *v + "'"};
    }
    if (const std::string* v = last_value(items, "refcount_bits"))
        p.refcount_bits = std::strtoull(v->c_str(), nullptr, 0);
    if (p.refcount_bits > 64 || !std::has_single_bit(p.refcount_bits))
        return Error{"Refcount width must be a power of two and may not exceed 64 bits"};
    if (p.version < 3 && p.refcount_bits != 16)
        return Error{"Different refcount widths than 16 bits require compatibility level 1.1 or above (use "
                     "compat=1.1 or greater)"};
    if (const std::string* v = last_value(items, "preallocation")) {
        if (*v == "full" || *v == "falloc")
            p.full_preallocation = true;
        else if (*v != "off" && *v != "metadata")
            return Error{"invalid parameter value: " + *v};
    }
    p.has_backing = last_value(items, "backing_file") != nullptr;
    if (const std::string* v = last_value(items, "encrypt.format"); v && *v == "luks") {
        auto header = luks_measure(items, "encrypt.", secrets, profile);
        if (!header)
            return Error{header.error()};
        p.luks_payload = (*header + p.cluster_size - 1) / p.cluster_size * p.cluster_size;
    }
    return p;
}

// The ids of --object secret,id=ID,... (qemu creates them while parsing the command line).
std::vector<std::string> secret_ids(const po::variables_map& vm) {
    std::vector<std::string> secrets;
    if (!vm.count("object"))
        return secrets;
    for (const auto& o : vm["object"].as<std::vector<std::string>>()) {
        const auto parts = split_option_list(o);
        bool secret = !parts.empty() && parts.front().key == "secret" && parts.front().value == "on";
        std::string id;
        for (const auto& part : parts) {
            if (part.key == "qom-type" && part.value == "secret")
                secret = true;
            if (part.key == "id")
                id = part.value;
        }
        if (secret && !id.empty())
            secrets.push_back(id);
    }
    return secrets;
}

void print_figures(Context& ctx, OutputFormat output, const MeasureFigures& figures) {
    if (output == OutputFormat::Human) {
        ctx.out << "required size: " << figures.required << '\n'
                << "fully allocated size: " << figures.fully_allocated << '\n';
        if (figures.bitmaps)
            ctx.out << "bitmaps size: " << *figures.bitmaps << '\n';
        return;
    }
    boost::json::object o;
    if (figures.bitmaps)
        o["bitmaps"] = *figures.bitmaps;
    o["required"] = figures.required;
    o["fully-allocated"] = figures.fully_allocated;
    ctx.out << qemu_json_pretty(o) << '\n';
}

// -l: "snapshot.id=ID,snapshot.name=NAME" (either or both) or an id or name.
struct SnapshotRequest {
    bool params = false; // snapshot.id= / snapshot.name= given (they win over a plain id or name)
    std::optional<std::string> id;
    std::optional<std::string> name;
    std::optional<std::string> id_or_name;
};

// bdrv_snapshot_load_tmp[_by_id_or_name]'s lookup in the top image's snapshot table: the id to read.
Expected<std::string> find_snapshot(const SnapshotRequest& want, const NodeInfo& top) {
    if (top.format != "qcow2")
        return Error{"Failed to load snapshot: Block format '" + top.format +
                     "' used by device '' does not support temporarily loading internal snapshots"};
    if (!want.params && want.id_or_name) {
        for (const auto& s : top.snapshots)
            if (s.id == *want.id_or_name)
                return s.id;
        for (const auto& s : top.snapshots)
            if (s.name == *want.id_or_name)
                return s.id;
    } else {
        for (const auto& s : top.snapshots)
            if ((!want.id || s.id == *want.id) && (!want.name || s.name == *want.name))
                return s.id;
    }
    return Error{"Failed to load snapshot: Can't find snapshot"};
}

// The cluster size the walk will use, where it is known before the source is open (a qcow2 target
// whose options are valid and name no backing file): the source is then inspected and walked in
// one sandbox start (measure_op.h). Nothing is reported here: the checks after the open do that.
std::optional<std::uint32_t> walk_cluster_before_open(Context& ctx, const std::string& fmt,
                                                      const std::string& options,
                                                      const std::vector<std::string>& secrets) {
    const LoadedPlugin* plugin = ctx.plugins().find(fmt);
    if (plugin == nullptr || fmt != "qcow2" || fmt != (*plugin)->name)
        return std::nullopt;
    const FormatDescriptor& d = **plugin;
    std::vector<OptionItem> items = split_option_list(options);
    std::vector<std::string> warnings;
    if (check_measure_options(items, {d.options, d.option_count}, ctx.profile.version, warnings))
        return std::nullopt;
    auto params = qcow2_params(items, ctx.profile.version, secrets);
    if (!params || params->has_backing)
        return std::nullopt;
    return static_cast<std::uint32_t>(params->cluster_size);
}

// qemu-img 7.2's img_measure sends getopt's '?' to help(): getopt's message on stderr (named after
// the subcommand, qemu-img's argv[0] there), the global help on stdout, exit status 0. Scans like
// getopt_long("hf:O:o:l:U") with 7.2's long options; true when it handled an error.
bool measure_getopt_72(Context& ctx, std::span<const std::string> args, int& status) {
    constexpr std::string_view SHORT_WITH_ARG = "fOol";
    constexpr std::string_view SHORT_FLAGS = "hU";
    constexpr const char* LONG_WITH_ARG[] = {"object", "output", "size", "qemu-version", "max-guest-memory",
                                             "allow-path"};
    auto fail = [&](const std::string& message) {
        ctx.err << "measure: " << message << '\n';
        print_global_help(ctx);
        status = 0;
        return true;
    };
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--")
            break;
        if (a.size() < 2 || a[0] != '-')
            continue;
        if (a[1] == '-') {
            const auto eq = a.find('=');
            const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
            if (!listed(LONG_OPTIONS_72, name) && !listed(LONG_OPTIONS_INSTAR, name))
                return fail("unrecognized option '--" + name + "'");
            const bool takes = listed(LONG_WITH_ARG, name);
            if (takes && eq == std::string::npos && i + 1 >= args.size())
                return fail("option '--" + name + "' requires an argument");
            if (!takes && eq != std::string::npos)
                return fail("option '--" + name + "' doesn't allow an argument");
            if (takes && eq == std::string::npos)
                ++i;
            continue;
        }
        for (std::size_t k = 1; k < a.size(); ++k) {
            const char c = a[k];
            if (SHORT_WITH_ARG.find(c) != std::string_view::npos) {
                if (k + 1 == a.size()) {
                    if (i + 1 >= args.size())
                        return fail(std::string("option requires an argument -- '") + c + "'");
                    ++i;
                }
                break;
            }
            if (SHORT_FLAGS.find(c) == std::string_view::npos)
                return fail(std::string("invalid option -- '") + c + "'");
        }
    }
    return false;
}

// The options that take a value, in the order given, as getopt_long hands them to img_measure's loop
// (short and long spellings folded to the long name). Parsing has already succeeded.
std::vector<std::pair<std::string, std::string>> ordered_values(std::span<const std::string> args) {
    constexpr std::pair<char, const char*> SHORT[] = {{'f', "format"}, {'O', "target-format"}, {'o', "options"},
                                                      {'l', "snapshot"}};
    constexpr const char* LONG_WITH_ARG[] = {"format", "target-format", "options", "snapshot", "object", "output",
                                             "size", "qemu-version", "max-guest-memory", "allow-path"};
    std::vector<std::pair<std::string, std::string>> out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--")
            break;
        if (a.size() < 2 || a[0] != '-')
            continue;
        if (a[1] == '-') {
            const auto eq = a.find('=');
            const std::string name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
            if (!listed(LONG_WITH_ARG, name))
                continue;
            if (eq != std::string::npos)
                out.emplace_back(name, a.substr(eq + 1));
            else if (i + 1 < args.size())
                out.emplace_back(name, args[++i]);
            continue;
        }
        for (std::size_t k = 1; k < a.size(); ++k) {
            const auto* s = std::find_if(std::begin(SHORT), std::end(SHORT), [&](const auto& e) { return e.first == a[k]; });
            if (s == std::end(SHORT))
                continue;
            if (k + 1 < a.size())
                out.emplace_back(s->second, a.substr(k + 1));
            else if (i + 1 < args.size())
                out.emplace_back(s->second, args[++i]);
            break;
        }
    }
    return out;
}

} // namespace

int cmd_measure(Context& ctx, std::span<const std::string> args) {
    if (int status = 0; !ctx.profile.getopt_messages() && measure_getopt_72(ctx, args, status))
        return status;
    po::options_description opts("measure options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::vector<std::string>>())
        ("target-format,O", po::value<std::vector<std::string>>())
        ("options,o", po::value<std::vector<std::string>>())
        ("snapshot,l", po::value<std::vector<std::string>>())
        ("force-share,U", "")
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("output", po::value<std::vector<std::string>>())
        ("size", po::value<std::vector<std::string>>())
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "")
        ("estimate", "");
    int status = 0;
    auto parsed = parse_command(ctx, "measure", opts, args, status);
    if (!parsed)
        return status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, MEASURE_HELP);
        return 0;
    }
    // The option loop's own checks, in command-line order as img_measure's getopt loop meets them.
    std::string options;
    SnapshotRequest snapshot;
    bool has_snapshot = false;
    OutputFormat output = OutputFormat::Human;
    std::optional<std::uint64_t> img_size;
    std::optional<std::string> source_fmt;
    std::string fmt = "raw";
    for (const auto& [key, value] : ordered_values(args)) {
        if (key == "format") {
            source_fmt = value;
        } else if (key == "target-format") {
            fmt = value;
        } else if (key == "options") {
            if (auto err = accumulate_option_list(options, value))
                return report_error(ctx, err->message);
        } else if (key == "snapshot") {
            has_snapshot = true;
            if (value.rfind("snapshot.", 0) == 0) {
                // qemu: sn_opts replaces an earlier -l snapshot.*; a plain name is kept beside it.
                std::string why;
                const auto opts = parse_internal_snapshot_opts(ctx, value, why);
                if (!opts)
                    return report_error(ctx, why);
                snapshot.id = opts->id;
                snapshot.name = opts->name;
                snapshot.params = true; // "snapshot.X..." parsed: at least one snapshot.id/name item
            } else {
                snapshot.id_or_name = value;
            }
        } else if (key == "output") {
            const auto o = parse_output_format(ctx, "measure", value);
            if (!o)
                return 1;
            output = *o;
        } else if (key == "size") {
            const SizeParse p = parse_qemu_size(value, ctx.profile.version);
            if (p.status == ParseStatus::Invalid) {
                if (ctx.profile.version >= qemu_version(8, 0))
                    return report_error(ctx, "Invalid image size specified: '" + value + "'.");
                report_error(ctx, "Invalid image size specified. You may use k, M, G, T, P or E suffixes for");
                return report_error(ctx, "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
            }
            if (p.status == ParseStatus::OutOfRange || p.value > static_cast<std::uint64_t>(INT64_MAX))
                return report_error(ctx, "Invalid image size specified. Must be between 0 and " +
                                             std::to_string(INT64_MAX) + ".");
            if (p.warning)
                report_warning(ctx, *p.warning);
            img_size = p.value;
        }
    }

    if (parsed->positional.size() > 1)
        return report_error(ctx, "At most one filename argument is allowed.");
    const std::string* filename = parsed->positional.empty() ? nullptr : &parsed->positional[0];
    if (!filename && (vm.count("image-opts") || source_fmt || has_snapshot))
        return report_error(ctx, "--image-opts, -f, and -l require a filename argument.");
    if (filename && img_size)
        return report_error(ctx, "--size N cannot be used together with a filename.");
    if (!filename && !img_size)
        return report_error(ctx, "Either --size N or one filename must be specified.");
    const bool image_opts = vm.count("image-opts") > 0;
    if (image_opts && source_fmt)
        return report_error(ctx, "--image-opts and --format are mutually exclusive");

    MeasureSourceSpec src;
    MeasureSource source;
    std::optional<ImageName> source_name;
    if (filename) {
        // file:, json:{...} and --image-opts name local files only (cli/image_name.h, docs/info.md).
        auto parsed_name = image_opts ? parse_image_opts(*filename) : parse_image_name(*filename, true);
        if (!parsed_name)
            return report_error(ctx, "Could not open '" + *filename + "': " + parsed_name.error());
        source_name = std::move(*parsed_name);
        for (const auto& w : source_name->warnings)
            report_warning(ctx, w);
        src.filename = source_name->path;
        src.format = source_fmt ? source_fmt : source_name->format;
        auto secrets = command_secrets(vm);
        if (!secrets)
            return report_error(ctx, secrets.error());
        auto secret = image_secret(*secrets, *source_name);
        if (!secret)
            return report_error(ctx, secret.error());
        src.secret = std::move(*secret);
        if (vm.count("allow-path"))
            src.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
        src.unsafe_quirks = vm.count("unsafe-quirks") > 0;
        if (!has_snapshot)
            src.quick_cluster_size = walk_cluster_before_open(ctx, fmt, options, secret_ids(vm));
        if (auto ok = open_measure_source(src, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, source); !ok)
            return report_error(ctx, quote_given(*source_name, ok.error()));
        // qemu opens (and probes) the image before it refuses an option given to it.
        if (source_name->unsupported_option)
            return report_error(ctx, unsupported_option_error(*source_name, source.chain.links.front().node.format));
        if (has_snapshot) {
            auto id = find_snapshot(snapshot, source.chain.links.front().node);
            if (!id)
                return report_error(ctx, id.error());
            src.snapshot = *id;
        }
    }

    const LoadedPlugin* plugin = ctx.plugins().find(fmt);
    if (plugin && fmt != (*plugin)->name)
        plugin = nullptr; // qemu's bdrv_find_format knows no aliases ("vhd" is not "vpc")
    const bool v72 = ctx.profile.version < qemu_version(8, 0);
    // luks targets are measured here whether or not the luks plugin is installed (qemu-img measures
    // them without creating anything; LUKS2, the plugin's extension, from LUKS2_NEW_SEGMENT_OFFSET).
    if (!plugin || fmt == "luks" || listed(NO_CREATE, fmt)) { // bochs, cloop: read-only plugins
        if (listed(NO_CREATE, fmt) || (v72 && listed(NO_CREATE_72, fmt)))
            return report_error(ctx, "Format driver '" + fmt + "' does not support image creation");
        if (listed(NO_MEASURE, fmt) || (v72 && listed(NO_MEASURE_72, fmt)))
            return report_error(ctx, "Block driver '" + fmt + "' does not support size measurement");
        if (fmt != "luks")
            return report_error(ctx, unknown_format(fmt));
        // block_crypto_measure: the LUKS header, then the whole disk (encrypted data is never sparse).
        std::vector<OptionItem> litems = split_option_list(options);
        std::vector<std::string> lwarnings;
        const auto lbad = check_measure_options(litems, LUKS_OPTIONS, ctx.profile.version, lwarnings);
        for (const auto& w : lwarnings)
            report_warning(ctx, w);
        if (lbad) {
            report_error(ctx, *lbad);
            return report_error(ctx, "Invalid options for file format 'luks'");
        }
        std::uint64_t size = img_size.value_or(0);
        if (!img_size)
            if (const std::string* v = last_value(litems, "size"))
                size = parse_qemu_size(*v, ctx.profile.version).value;
        if (filename)
            size = source.virtual_size;
        auto header = luks_measure(litems, "", secret_ids(vm), ctx.profile.version);
        if (!header)
            return report_error(ctx, header.error());
        // A LUKS2 volume holds whole 512-byte sectors (the plugin rounds the size up).
        if (const std::string* v = last_value(litems, "luks-version"); v && *v == "2")
            size = (size + 511) / 512 * 512;
        MeasureFigures lf;
        lf.required = lf.fully_allocated = *header + size;
        print_figures(ctx, output, lf);
        return 0;
    }
    const FormatDescriptor& d = **plugin;
    const std::string name = d.name;
    const std::span<const OptionDesc> table{d.options, d.option_count};
    std::vector<OptionItem> items = split_option_list(options);
    std::vector<std::string> warnings;
    const auto bad = check_measure_options(items, table, ctx.profile.version, warnings);
    for (const auto& w : warnings)
        report_warning(ctx, w);
    if (bad) {
        report_error(ctx, *bad);
        return report_error(ctx, "Invalid options for file format '" + fmt + "'");
    }
    if (img_size)
        items.push_back({"size", std::to_string(*img_size)});

    MeasureFigures figures;
    if (name == "raw") {
        std::uint64_t size_opt = 0;
        if (const std::string* v = last_value(items, "size"))
            size_opt = parse_qemu_size(*v, ctx.profile.version).value;
        figures = raw_measure(filename ? std::optional(source.virtual_size) : std::nullopt, size_opt);
    } else if (name == "qcow2") {
        const std::vector<std::string> secrets = secret_ids(vm);
        auto params = qcow2_params(items, ctx.profile.version, secrets);
        if (!params)
            return report_error(ctx, params.error());
        std::uint64_t size_opt = 0;
        if (const std::string* v = last_value(items, "size"))
            size_opt = parse_qemu_size(*v, ctx.profile.version).value;
        if (qcow2_image_too_large(*params, size_opt))
            return report_error(ctx, "The image size is too large (try using a larger cluster size)");
        std::uint64_t data = 0;
        std::optional<std::vector<MeasureBitmap>> bitmaps;
        if (filename) {
            // qemu walks block status unless a backing file makes every cluster required. Formats
            // without block status in qemu (vhdx, luks: the plugin's qemu_traits) are data everywhere.
            const bool no_block_status =
                ((*source.chain.links.front().plugin)->qemu_traits & QEMU_NO_BLOCK_STATUS) != 0;
            if (!params->has_backing && no_block_status) {
                data = (source.virtual_size + params->cluster_size - 1) / params->cluster_size * params->cluster_size;
            } else if (!params->has_backing) {
                auto walked = measure_data_clusters(src, source, static_cast<std::uint32_t>(params->cluster_size),
                                                    ctx.sandbox_config(), ctx.profile.version);
                if (!walked)
                    return report_error(ctx, walked.error());
                data = *walked;
            }
            if (source.qcow2_v3)
                bitmaps = source.bitmaps;
            else if (((*source.chain.links.front().plugin)->qemu_traits & QEMU_PERSISTENT_BITMAPS_SINCE_8_2) != 0 &&
                     ctx.profile.version >= qemu_version(8, 2))
                bitmaps = std::vector<MeasureBitmap>{};
        }
        figures = qcow2_measure(*params, filename ? source.virtual_size : size_opt, filename != nullptr, data, bitmaps);
    } else if (vm.count("estimate") && (name == "vmdk" || name == "vpc" || name == "vhdx")) {
        // instar's extension: size options in bytes, then the writer's layout over the walk.
        for (auto& item : items)
            if (const OptionDesc* od = find_option(table, item.key, ctx.profile.version);
                od && od->type == OptionType::Size)
                item.value = std::to_string(parse_qemu_size(item.value, ctx.profile.version).value);
        std::uint64_t size = 0;
        if (filename) {
            size = source.virtual_size;
        } else if (const std::string* v = last_value(items, "size")) {
            size = std::strtoull(v->c_str(), nullptr, 10);
        }
        std::optional<std::uint64_t> data;
        const std::uint64_t unit = estimate_unit(name, items, size);
        if (filename && unit != 0) {
            auto walked = measure_data_clusters(src, source, static_cast<std::uint32_t>(unit), ctx.sandbox_config(),
                                                ctx.profile.version);
            if (!walked)
                return report_error(ctx, walked.error());
            data = *walked;
        } else if (!filename) {
            data = 0;
        }
        figures = estimate_figures(name, items, size, data);
    } else {
        return report_error(ctx, "Block driver '" + name + "' does not support size measurement");
    }

    print_figures(ctx, output, figures);
    return 0;
}

} // namespace instar::cli
