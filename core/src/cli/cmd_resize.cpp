// `instar resize`: qemu-img resize's command line, messages and exit codes; the image is changed in
// place by the format's guest half through INSTAR_OP_EDIT (ops/edit_op, docs/resize.md).
#include "cli/commands.h"
#include "cli/help.h"
#include "cli/image_name.h"
#include "cli/secrets.h"
#include "ops/edit_op.h"
#include "ops/image_range.h"
#include "options/size.h"
#include "output/json_pretty.h"

#include <instar/guest/edit_resize.h>

#include <boost/json/object.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <cerrno>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace instar::cli {
namespace {

// Files a resize adds beside the image (vmdk twoGbMaxExtentFlat: new NAME-fNNN.vmdk extents),
// created exclusively (never over an existing file) and kept: the format writes them before the
// descriptor that names them, so a kill leaves at worst an unnamed extra file.
class BesideFiles final : public vmm::OutputFiles {
public:
    explicit BesideFiles(const std::string& image) {
        const auto slash = image.rfind('/');
        dir_ = slash == std::string::npos ? "" : image.substr(0, slash + 1);
    }
    ~BesideFiles() override {
        for (const int fd : fds_)
            ::close(fd);
    }
    BesideFiles(const BesideFiles&) = delete;
    BesideFiles& operator=(const BesideFiles&) = delete;
    std::optional<vmm::Device> add(const std::string& name, std::string& error) override {
        const std::string path = dir_ + name;
        const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0) {
            error = "Could not create '" + path + "': " + std::strerror(errno);
            return std::nullopt;
        }
        fds_.push_back(fd);
        vmm::Device dev = vmm::output_device(fd);
        dev.early_writeback = true; // resize flushes the files it adds
        return dev;
    }

private:
    std::string dir_;
    std::vector<int> fds_;
};

// Removes the files a shrink left unnamed (RESIZE_DATA_DROPPED_FILE records: indexes into the
// image's files), after the command succeeded. The index comes from the guest and the names from an
// untrusted descriptor, so a file goes only when it lies in the image's own directory, its name is
// the image's stem and a dash ("disk.vmdk" -> "disk-s002.vmdk"), it is still the regular file that
// was opened (device and inode), and no other file of the image (nor the image) is that file. Any
// other is left in place with a warning (docs/resize.md, "Dropped files").
void remove_dropped_files(Context& ctx, const ChainLink& link, const EditReport& report) {
    std::vector<bool> drop(link.files.size(), false);
    for (const auto& [kind, bytes] : report.data) {
        std::uint32_t i = 0;
        if (kind != guest::RESIZE_DATA_DROPPED_FILE || bytes.size() != sizeof i)
            continue;
        std::memcpy(&i, bytes.data(), sizeof i);
        if (i < drop.size())
            drop[i] = true;
    }
    const std::filesystem::path& image = link.image.path;
    const std::string stem = image.stem().string() + "-";
    for (std::size_t i = 0; i < drop.size(); ++i) {
        if (!drop[i])
            continue;
        const OpenedFile& f = link.files[i];
        const std::string name = f.path.filename().string();
        bool shared = f.device == link.image.device && f.inode == link.image.inode;
        for (std::size_t k = 0; k < link.files.size(); ++k)
            shared = shared || (!drop[k] && link.files[k].device == f.device && link.files[k].inode == f.inode);
        struct stat st {};
        const bool same = ::lstat(f.path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                          static_cast<std::uint64_t>(st.st_dev) == f.device &&
                          static_cast<std::uint64_t>(st.st_ino) == f.inode;
        if (f.path.parent_path() != image.parent_path() || name.rfind(stem, 0) != 0 || name.size() == stem.size() ||
            shared || !same) {
            ctx.err << "WARNING: '" << f.display << "' is no longer part of '" << link.image.display
                    << "'; left in place (instar removes only the image's own NAME-* files beside it)\n";
            continue;
        }
        if (::unlink(f.path.c_str()) != 0)
            ctx.err << "WARNING: could not remove '" << f.display << "', no longer part of the image: "
                    << std::strerror(errno) << "\n";
    }
}

// qemu-img 10.0's text, then instar's own options.
constexpr std::string_view RESIZE_HELP =
    "Usage:\n"
    "Resize the image to the new size.  Usage:\n"
    "\n"
    "  qemu-img resize [-f FMT | --image-opts] [--preallocation PREALLOC] [--shrink]\n"
    "        [--object OBJECTDEF] [-q] FILENAME [+-]SIZE[bkKMGTPE]\n"
    "\n"
    "Arguments:\n"
    "  -h, --help\n"
    "     print this help and exit\n"
    "  -q, --quiet\n"
    "     quiet operation\n"
    "  -f, --format FMT\n"
    "     specify FILENAME format explicitly\n"
    "  --image-opts\n"
    "     indicates that FILENAME is a complete image specification\n"
    "   instead of a file name (incompatible with --format)\n"
    "  --shrink\n"
    "     allow operation when new size is smaller than original\n"
    "  --preallocation PREALLOC\n"
    "     specify preallocation type for the new areas\n"
    "  --object OBJDEF\n"
    "     QEMU user-creatable object (eg encryption key)\n"
    "  FILENAME\n"
    "     image file (specification) to resize\n"
    "  [+-]SIZE[bkKMGTPE]\n"
    "     new image size or amount by which to shrink/grow,\n"
    "     with optional suffix (1024-based multiplies)\n"
    "\n"
    "instar options:\n"
    "  --allow-path DIR\n"
    "     also allow files named inside images under DIR\n"
    "  --unsafe-quirks\n"
    "     qemu-img's raw fallback for unrecognised files (see docs/quirks.md)\n"
    "\n";

constexpr const char* SIZE_HINT =
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

// qemu-img 7.2's resize knows these long options; the rest are 10.0's or instar's.
constexpr std::string_view LONG_OPTIONS_72[] = {"help", "object", "image-opts", "preallocation", "shrink"};
// instar's own: --output=json is an instar extension (qemu-img resize has no --output; docs/resize.md).
constexpr std::string_view INSTAR_OWN[] = {"allow-path", "unsafe-quirks", "output"};

// Options that take a value (short letters and long names), for finding where positionals are.
bool takes_value(std::string_view long_name) {
    return long_name == "format" || long_name == "object" || long_name == "preallocation" ||
           long_name == "allow-path" || long_name == "qemu-version" || long_name == "max-guest-memory" ||
           long_name == "sandbox" || long_name == "output";
}

// qemu-img 10.0 (Debian's backport of the reworked option parsing): options anywhere, and a
// "-DIGIT..." word is the size when the file name came before it and no size yet. Returns the
// arguments with such a word moved behind a "--", where the generic parser takes it as positional.
std::vector<std::string> move_negative_size(std::span<const std::string> args, std::size_t& marker) {
    std::vector<std::string> out;
    std::optional<std::string> negative;
    std::size_t positionals = 0;
    std::size_t i = 0;
    for (; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--")
            break;
        if (a.size() >= 2 && a[0] == '-' && a[1] >= '0' && a[1] <= '9' && positionals == 1 && !negative) {
            negative = a;
            ++positionals;
            continue;
        }
        out.push_back(a);
        if (a.size() >= 2 && a[0] == '-' && a[1] == '-') {
            const std::string name = long_option_name(a);
            if (a.find('=') == std::string::npos && takes_value(name) && i + 1 < args.size())
                out.push_back(args[++i]);
        } else if (a.size() >= 2 && a[0] == '-') {
            // A cluster of short options: -f takes the rest of the word or the next one.
            for (std::size_t k = 1; k < a.size(); ++k) {
                if (a[k] == 'f') {
                    if (k + 1 == a.size() && i + 1 < args.size())
                        out.push_back(args[++i]);
                    break;
                }
            }
        } else {
            ++positionals;
        }
    }
    marker = out.size();
    out.push_back("--");
    std::vector<std::string> rest;
    if (negative)
        rest.push_back(*negative);
    for (std::size_t k = i + (i < args.size() ? 1 : 0); k < args.size(); ++k)
        rest.push_back(args[k]);
    // Positionals keep their order: those before the "--" first, then the moved size, then the rest.
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
}

// getopt's verdict on short options (":f:hq"), which Program_options words differently: the first
// unknown letter. 10.0 names the letter; 7.2 prints argv[optind-1], which is the word itself when
// the letter ends it and the word before it otherwise ("resize" for the first).
// `end`: where the words the user gave before a "--" end (the "--" move_negative_size added).
std::optional<int> refuse_unknown_short(Context& ctx, const std::vector<std::string>& words, std::size_t end) {
    for (std::size_t i = 0; i < words.size() && i < end; ++i) {
        const std::string& a = words[i];
        if (a == "--")
            break;
        if (a.size() >= 2 && a[0] == '-' && a[1] == '-') {
            const std::string name = long_option_name(a);
            if (a.find('=') == std::string::npos && takes_value(name))
                ++i;
            continue;
        }
        if (a.size() < 2 || a[0] != '-')
            continue;
        for (std::size_t k = 1; k < a.size(); ++k) {
            const char c = a[k];
            if (c == 'f') {
                if (k + 1 == a.size() && i + 1 >= end)
                    return report_option_error(ctx, "resize", OptionErrorKind::MissingArgument,
                                               ctx.profile.getopt_messages() ? std::string("-f") : a);
                if (k + 1 == a.size())
                    ++i;
                break;
            }
            if (c == 'h' || c == 'q')
                continue;
            if (ctx.profile.getopt_messages())
                return report_option_error(ctx, "resize", OptionErrorKind::Unknown, std::string("-") + c);
            const std::string shown = k + 1 == a.size() ? a : (i == 0 ? std::string("resize") : words[i - 1]);
            return report_option_error(ctx, "resize", OptionErrorKind::Unknown, shown);
        }
    }
    return std::nullopt;
}

guest::Prealloc parse_prealloc(const std::string& s, bool& ok) {
    ok = true;
    if (s == "off")
        return guest::Prealloc::Off;
    if (s == "metadata")
        return guest::Prealloc::Metadata;
    if (s == "falloc")
        return guest::Prealloc::Falloc;
    if (s == "full")
        return guest::Prealloc::Full;
    ok = false;
    return guest::Prealloc::Off;
}

const char* prealloc_name(guest::Prealloc p) {
    switch (p) {
    case guest::Prealloc::Off: return "off";
    case guest::Prealloc::Metadata: return "metadata";
    case guest::Prealloc::Falloc: return "falloc";
    case guest::Prealloc::Full: return "full";
    }
    return "off";
}

// What a successful resize reports: "Image resized." (qemu-img), or with --output=json the
// envelope docs/resize.md describes (an instar extension).
struct ResizeOutcome {
    std::string filename;
    std::string format;
    std::int64_t old_size;
    std::int64_t new_size;
    std::uint64_t file_size; // the image file's length afterwards
};

void print_resized(Context& ctx, bool json, const ResizeOutcome& r) {
    if (!json) {
        ctx.out << "Image resized.\n";
        return;
    }
    boost::json::object o;
    o["filename"] = r.filename;
    o["format"] = r.format;
    o["action"] = r.new_size > r.old_size ? "grow" : r.new_size < r.old_size ? "shrink" : "noop";
    o["old_virtual_size"] = r.old_size;
    o["new_virtual_size"] = r.new_size;
    o["new_file_size"] = r.file_size;
    ctx.out << qemu_json_pretty(o) << "\n";
}

} // namespace

int cmd_resize(Context& ctx, std::span<const std::string> args) {
    const bool v10 = ctx.profile.getopt_messages();
    // qemu-img 7.2 takes the last word as the size before parsing options (so that "-1G" is no
    // option); 10.0 parses options anywhere and recognises a negative size after the file name.
    std::vector<std::string> words;
    std::optional<std::string> size_word;
    std::size_t end = std::string::npos;
    if (v10) {
        words = move_negative_size(args, end);
    } else {
        if (args.size() < 2)
            return report_usage_error(ctx, "resize", "Not enough arguments");
        size_word = args.back();
        words.assign(args.begin(), args.end() - 1);
        if (auto st = refuse_unknown_long_options(ctx, "resize", words, LONG_OPTIONS_72, INSTAR_OWN))
            return *st;
    }
    if (auto st = refuse_unknown_short(ctx, words, end))
        return *st;
    po::options_description opts("resize options");
    opts.add_options()
        ("help,h", "")
        ("format,f", po::value<std::vector<std::string>>())
        ("quiet,q", "")
        ("object", po::value<std::vector<std::string>>())
        ("image-opts", "")
        ("preallocation", po::value<std::vector<std::string>>())
        ("shrink", "")
        ("output", po::value<std::vector<std::string>>())
        ("allow-path", po::value<std::vector<std::string>>())
        ("unsafe-quirks", "");
    int parse_status = 0;
    auto parsed = parse_command(ctx, "resize", opts, words, parse_status);
    if (!parsed)
        return parse_status;
    const auto& vm = parsed->vm;
    if (vm.count("help")) {
        print_command_help(ctx, RESIZE_HELP);
        return 0;
    }
    guest::Prealloc prealloc = guest::Prealloc::Off;
    bool prealloc_given = false;
    if (vm.count("preallocation")) {
        // getopt sees them in order: the first bad one stops it, the last good one counts.
        for (const auto& p : vm["preallocation"].as<std::vector<std::string>>()) {
            bool ok = false;
            prealloc = parse_prealloc(p, ok);
            if (!ok)
                return report_error(ctx, "Invalid preallocation mode '" + p + "'");
        }
        prealloc_given = true;
    }
    std::vector<std::string> positional = parsed->positional;
    if (!v10) {
        if (positional.size() != 1)
            return report_usage_error(ctx, "resize", "Expecting image file name and size");
        positional.push_back(*size_word);
    } else {
        if (positional.size() < 2)
            return report_usage_error(ctx, "resize", "Expecting image file name and size");
        if (positional.size() > 2)
            return report_usage_error(ctx, "resize", "Extra argument(s) in command line");
    }
    const std::string given = positional[0];
    std::string size_text = positional[1];
    int relative = 0;
    if (!size_text.empty() && (size_text[0] == '+' || size_text[0] == '-')) {
        relative = size_text[0] == '+' ? 1 : -1;
        size_text.erase(0, 1);
    }
    const SizeParse sp = parse_qemu_size(size_text, ctx.profile.version);
    if (sp.status == ParseStatus::OutOfRange)
        return report_error(ctx, "Value '" + size_text + "' is out of range for parameter 'size'");
    if (sp.status != ParseStatus::Ok)
        return report_error(ctx, std::string("Parameter 'size' expects a non-negative number below 2^64\n") + SIZE_HINT);
    if (sp.warning)
        report_warning(ctx, *sp.warning);
    const bool quiet = vm.count("quiet") > 0;
    bool json = false;
    if (vm.count("output")) {
        const std::string o = vm["output"].as<std::vector<std::string>>().back();
        if (o != "human" && o != "json")
            return report_error(ctx, "--output must be used with human or json as argument.");
        json = o == "json";
    }

    const bool image_opts = vm.count("image-opts") > 0;
    if (image_opts && vm.count("format"))
        return report_error(ctx, "--image-opts and --format are mutually exclusive");
    auto name = image_opts ? parse_image_opts(given, true) : parse_image_name(given, true, true);
    if (!name)
        return report_error(ctx, "Could not open '" + given + "': " + name.error());
    for (const auto& w : name->warnings)
        report_warning(ctx, w);

    EditOpen eo;
    eo.filename = name->path;
    if (vm.count("format"))
        eo.format = vm["format"].as<std::vector<std::string>>().back(); // getopt: the last one counts
    else if (name->format)
        eo.format = name->format;
    eo.unsafe_quirks = vm.count("unsafe-quirks") > 0;
    eo.backing_chain = true; // qemu-img resize opens the chain: a missing backing file fails the same way
    eo.read_write = true;
    eo.repair_dirty = [&](const std::string& text) { print_guest_text(ctx, text); }; // qemu's read-write open
    eo.secret = named_image_secret(vm, *name);
    const OpenKey open_with = open_key(vm, *name); // qemu looks a luks key up before it reads the header
    eo.opens_without_key = open_with.without;
    eo.backing_keys = backing_keys_named(vm, *name);
    if (vm.count("allow-path"))
        eo.allow_paths = vm["allow-path"].as<std::vector<std::string>>();
    // qemu-img's checks on the sizes, once the current size is known: 0 to go on, else the exit status.
    std::int64_t total = 0;
    auto check_sizes = [&](std::int64_t current) -> int {
        // qemu-img's arithmetic and checks, shared with the guest's one-start path (edit_resize.h).
        total = guest::resize_new_size(current, sp.value, relative > 0, relative < 0);
        const auto verdict =
            guest::resize_check(current, total, prealloc != guest::Prealloc::Off, vm.count("shrink") > 0);
        if (verdict == guest::ResizeCheck::NotPositive)
            return report_error(ctx, "New image size must be positive");
        if (verdict == guest::ResizeCheck::PreallocNotGrowing)
            return report_error(ctx, "Preallocation can only be used for growing images");
        if (verdict == guest::ResizeCheck::NeedShrink) {
            report_error(ctx, "Use the --shrink option to perform a shrink operation.");
            report_warning(ctx, "Shrinking an image will delete all data beyond the shrunken image's end. Before "
                                "performing such an operation, make sure there is no important data there.");
            return 1;
        }
        return 0;
    };

    // Device files with -f raw: qemu's file-posix cannot change their length. Nothing of them is
    // parsed, so the host answers as qemu does without the sandbox.
    struct stat st {};
    if (eo.format == "raw" && ::stat(eo.filename.c_str(), &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
        const int fd = ::open(eo.filename.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return report_error(ctx, "Could not open '" + given + "': Could not open '" + eo.filename +
                                         "': " + std::strerror(errno));
        const off_t length = ::lseek(fd, 0, SEEK_END);
        ::close(fd);
        const std::int64_t current = length < 0 ? 0 : static_cast<std::int64_t>(length);
        if (const int rc = check_sizes(current); rc != 0)
            return rc;
        if (prealloc != guest::Prealloc::Off)
            return report_error(ctx, std::string("Preallocation mode '") + prealloc_name(prealloc) +
                                         "' unsupported for this non-regular file");
        if (total != current)
            return report_error(ctx, "Cannot resize device files");
        if (!quiet)
            print_resized(ctx, json, ResizeOutcome{given, "raw", current, total, static_cast<std::uint64_t>(current)});
        return 0;
    }

    const std::uint32_t base_flags =
        (vm.count("shrink") ? guest::RESIZE_SHRINK : 0u) | (prealloc_given ? guest::RESIZE_PREALLOC_GIVEN : 0u);
    BesideFiles added(eo.filename);
    OpenedChain chain;
    // One sandbox start when the image stands alone: the guest reads its size and checks the new one
    // as below before it changes anything (edit_op's try_quick_edit); else the ordinary path.
    std::optional<EditReport> quick;
    std::optional<PrefetchedInfo> prefetched;
    if (!name->unsupported_option) {
        guest::ResizeArgs qa{};
        qa.new_size = sp.value;
        qa.prealloc = static_cast<std::uint32_t>(prealloc);
        qa.flags = base_flags | guest::RESIZE_FROM_INFO | (relative > 0 ? guest::RESIZE_GROW_BY : 0u) |
                   (relative < 0 ? guest::RESIZE_SHRINK_BY : 0u);
        QuickEdit q;
        q.open = eo;
        q.filename = given;
        q.command = guest::EditCommand::Resize;
        q.outputs = &added;
        q.args.resize(sizeof qa);
        std::memcpy(q.args.data(), &qa, sizeof qa);
        q.prefetched = &prefetched;
        EditReport r;
        auto done = try_quick_edit(q, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, chain, r);
        if (!done)
            return report_error(ctx, done.error());
        if (*done)
            quick = std::move(r);
    }
    EditOpen first_open = eo; // the quick attempt's inspection is not run again
    first_open.prefetched = prefetched ? &*prefetched : nullptr;
    if (quick) {
        // opened by try_quick_edit
    } else if (auto ok = open_for_edit(first_open, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, chain);
               !ok) {
        // The image opened but its backing file did not: qemu's bdrv_open_backing_file words it so.
        const std::string& e = ok.error();
        const std::string marker = "' refused: ";
        const auto at = e.find(marker);
        if (chain.links.size() == 1 && chain.links[0].node.full_backing_filename && at != std::string::npos &&
            e.find("backing file '") != std::string::npos) {
            const std::string why = e.substr(at + marker.size());
            if (why == std::strerror(ENOENT) || why == std::strerror(EACCES) || why == std::strerror(EISDIR))
                return report_error(ctx, "Could not open '" + given + "': Could not open backing file: Could not open '" +
                                             *chain.links[0].node.full_backing_filename + "': " + why);
        }
        return report_error(ctx, after_unlocking_above(vm, *name, chain, missing_key(quote_given(*name, e), open_with),
                                                  ctx.sandbox_config(), ctx.profile.version));
    }
    const ChainLink& link = chain.links.front();
    if (name->unsupported_option)
        return report_error(ctx, unsupported_option_error(*name, link.node.format));
    // qemu opens the image for I/O: an encrypted one's key is unlocked first.
    auto unlocked = unlock_chain_for_command(vm, *name, chain, ctx.sandbox_config(), ctx.profile.version);
    if (!unlocked)
        return report_error(ctx, unlocked.error());
    // qemu warns when it probed raw for an image it opens for writing.
    if (!eo.format && link.node.format == "raw")
        ctx.err << "WARNING: Image format was not specified for '" << given
                << "' and probing guessed raw.\n"
                   "         Automatically detecting the format is dangerous for raw images, write operations "
                   "on block 0 will be restricted.\n"
                   "         Specify the 'raw' format explicitly to remove the restrictions.\n";
    const auto current = static_cast<std::int64_t>(link.node.virtual_size);
    if (const int rc = check_sizes(current); rc != 0)
        return rc;

    // The non-quick run's arguments: the sizes as checked above.
    guest::ResizeArgs ra{};
    ra.new_size = static_cast<std::uint64_t>(total);
    ra.old_size = static_cast<std::uint64_t>(current);
    ra.prealloc = static_cast<std::uint32_t>(prealloc);
    ra.flags = base_flags;
    if (chain.links.size() > 1) {
        ra.flags |= guest::RESIZE_HAS_BACKING;
        ra.backing_size = chain.links[1].node.virtual_size;
    }
    EditCall call;
    call.link = &link;
    call.outputs = &added;
    call.filename = given;
    call.command = guest::EditCommand::Resize;
    call.args.resize(sizeof ra);
    std::memcpy(call.args.data(), &ra, sizeof ra);
    // An encrypted image's key: the explicit zeros some overlays need are encrypted (qcow2).
    if (*unlocked)
        call.secrets = {*unlocked};
    Expected<EditReport> report = quick ? Expected<EditReport>(std::move(*quick))
                                        : run_edit(call, ctx.sandbox_config(), ctx.profile.version);
    // The format asked for bytes of the backing chain (a qcow2 overlay's head cluster, which qemu's
    // write path fills from the backing file) and wrote nothing: they are read in a sandbox of their
    // own and the resize runs again with them.
    auto bytes = read_asked_backing_bytes(report, chain, eo.allow_paths, eo.unsafe_quirks, ctx.plugins(),
                                          ctx.sandbox_config(), ctx.profile.version);
    if (!bytes)
        return report_error(ctx, "Could not read the backing file of '" + given + "': " + bytes.error());
    if (!bytes->empty()) {
        ra.flags |= guest::RESIZE_BACKING_BYTES;
        std::memcpy(call.args.data(), &ra, sizeof ra);
        call.extra = range_devices(*bytes);
        report = run_edit(call, ctx.sandbox_config(), ctx.profile.version);
    }
    if (!report)
        return report_error(ctx, report.error());
    ctx.out << report->out;
    print_guest_text(ctx, report->err);
    if (report->status != guest::Status::Ok) {
        // qemu's message printed by the guest itself (lines on stderr; a hint can follow it).
        if (report->reason.empty() && !report->err.empty())
            return 1;
        return report_error(ctx, report->reason.empty() ? status_message(report->status) : report->reason);
    }
    remove_dropped_files(ctx, link, *report);
    if (!quiet) {
        ResizeOutcome done{given, link.node.format, current, total, 0};
        if (json) {
            // The size the format settled on (vpc rounds to its geometry): the image as info sees it now.
            EditOpen again = eo;
            again.backing_chain = false;
            again.format = link.node.format;
            OpenedChain after;
            if (open_for_edit(again, ctx.plugins(), ctx.sandbox_config(), ctx.profile.version, after) &&
                !after.links.empty())
                done.new_size = static_cast<std::int64_t>(after.links.front().node.virtual_size);
            struct stat fst {};
            if (::stat(link.image.path.c_str(), &fst) == 0)
                done.file_size = static_cast<std::uint64_t>(fst.st_size);
        }
        print_resized(ctx, json, done);
    }
    return 0;
}

} // namespace instar::cli
