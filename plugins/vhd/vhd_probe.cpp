// VHD probe rules: the "conectix" cookie of the footer copy at offset 0 (dynamic and differencing
// disks) or of the footer in the last 512 bytes (fixed disks), and the plugin's divergences.
#include "vhd_plugin.h"

namespace instar::vpc {
namespace {

constexpr unsigned char COOKIE[] = {'c', 'o', 'n', 'e', 'c', 't', 'i', 'x'};

constexpr ProbeMatch HEADER_COPY[] = {{ProbeMatch::FromStart, 0, COOKIE, sizeof COOKIE}};
constexpr ProbeMatch FOOTER[] = {{ProbeMatch::FromEnd, 512, COOKIE, sizeof COOKIE}};

} // namespace

const ProbeRule PROBE_RULES[] = {{HEADER_COPY, 1}, {FOOTER, 1}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

const Divergence DIVERGENCES[] = {
    {"vpc-fixed-probe", "info",
     "a fixed VHD (footer only, no header copy at offset 0) is detected as vpc; qemu-img's probe calls it raw",
     "treating a fixed VHD as raw exposes its footer as guest data and skips the size the footer declares"},
    {"vpc-differencing-backing", "info",
     "a differencing VHD reports its parent locator (W2ru, then W2ku, then the parent name; a locator whose "
     "data an allocated block covers, as qemu leaves one it wrote over, is skipped) as the backing file; "
     "qemu-img shows no backing file for it",
     "the parent is part of what the image means: hiding it hides a dependency on another file"},
    {"vpc-create-differencing", "create",
     "with -b, create -f vpc writes a differencing VHD (type 4: the parent's unique id and timestamp, its "
     "file name, and a W2ru or W2ku parent locator holding -b verbatim); qemu-img refuses: \"Backing file "
     "not supported for file format 'vpc'\". Without force_size, a size the CHS geometry cannot express is "
     "kept exactly (as force_size=on), so the child has its parent's size",
     "VHD has differencing disks; refusing -b for them only because qemu never implemented it helps nobody"},
    {"vpc-parent-path-policy", "*",
     "the parent named by a differencing VHD's parent locator is opened only if the path policy allows it",
     "a parent locator is a path chosen by whoever made the image; following it can read any host file"},
    {"vpc-read-differencing", "convert",
     "a differencing VHD's data is read with its parent: absent blocks and sectors whose bitmap bit is clear "
     "come from the parent; qemu-img reads it as a dynamic disk (zeros there)",
     "the parent is part of what the image means (see vpc-differencing-backing)"},
    {"vpc-resize", "resize",
     "resize grows and (with --shrink) shrinks fixed, dynamic and differencing VHDs in place, the size rounded "
     "as create rounds it (CHS geometry); a grown differencing VHD reads zeros, not its parent's data, past "
     "the old end (as qemu zeroes a qcow2 overlay's grown area); qemu-img refuses: \"Image format driver does not support resize\" "
     "(a fixed VHD, which qemu-img probes as raw, is resized by qemu-img as raw: its footer stays where it was); "
     "commit grows a smaller VHD base the same way, where qemu-img fails (\"Block job failed: Operation not "
     "supported\", nothing written)",
     "instar extension (issue 11): growing a VHD should not need a convert; a fixed VHD is a VHD (vpc-fixed-probe)"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::vpc
