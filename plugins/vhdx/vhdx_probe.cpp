// vhdx probe rule: the "vhdxfile" file-type identifier at offset 0.
#include "vhdx_plugin.h"

namespace instar::vhdx {
namespace {

constexpr unsigned char FILE_IDENTIFIER[] = {'v', 'h', 'd', 'x', 'f', 'i', 'l', 'e'};
constexpr ProbeMatch IDENT[] = {{ProbeMatch::FromStart, 0, FILE_IDENTIFIER, sizeof FILE_IDENTIFIER}};

} // namespace

const ProbeRule PROBE_RULES[] = {{IDENT, 1}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];
const Divergence DIVERGENCES[] = {
    {"vhdx-differencing-info", "info",
     "a differencing VHDX is reported, with its parent locator (relative_path, absolute_win32_path, "
     "volume_path) as the backing file; qemu-img refuses to open it (Operation not supported)",
     "info should describe the image it is given, including which file it depends on"},
    {"vhdx-parent-path-policy", "*",
     "the parent named by a differencing VHDX's parent locator is opened only if the path policy allows it",
     "a parent locator is a path chosen by whoever made the image; following it can read any host file"},
    {"vhdx-create-differencing", "create",
     "with -b, create makes a differencing VHDX (has_parent, a parent locator with parent_linkage = the "
     "parent's DataWriteGuid and relative_path = the -b name verbatim, an all-absent BAT with sector bitmap "
     "entries); the parent must be a readable VHDX. qemu-img refuses: Backing file not supported for file "
     "format 'vhdx'",
     "differencing disks are the VHDX way to stack an overlay on a base image, and Hyper-V and libvhdi read them"},
    {"vhdx-read-differencing", "convert",
     "a differencing VHDX's data is read with its parent (NOT_PRESENT, UNDEFINED and UNMAPPED blocks and "
     "clear sector-bitmap bits come from the parent); qemu-img refuses to open it",
     "convert should read the image it is given, as info reports it (vhdx-differencing-info)"},
    {"vhdx-map-differencing", "map",
     "map maps a differencing VHDX as qemu-img maps any VHDX (one data run without an offset: qemu's vhdx "
     "driver has no block status); qemu-img refuses to open it",
     "map should describe the image it is given, as info does (vhdx-differencing-info)"},
    {"vhdx-resize", "resize",
     "resize grows and (with --shrink) shrinks dynamic, fixed and differencing VHDX images in place (BAT entries "
     "added or dropped, the BAT region moved to the file's end when too small, VirtualDiskSize updated; a grown "
     "differencing VHDX reads zeros, not its parent's data, past the old end, as qemu zeroes a qcow2 overlay's "
     "grown area); "
     "qemu-img refuses: \"Image format driver does not support resize\"; commit grows a smaller VHDX base the "
     "same way, where qemu-img fails (\"Block job failed: Operation not supported\", nothing written)",
     "instar extension (issue 11): growing a VHDX should not need a convert"},
    {"vhdx-header-update-copy", "*",
     "a header update (log replay by check -r or convert -n, convert -n's first write) copies the current header "
     "into the other slot; qemu rewrites that slot's own header, so when a hand-made image's headers disagree on "
     "the log GUID and its replay then fails, qemu's other slot keeps its own log GUID",
     "the same bytes for every image qemu or Hyper-V writes (both headers name the same log); the copy never "
     "writes a stale or invalid header's fields back with a fresh checksum"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::vhdx
