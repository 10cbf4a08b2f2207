// vmdk probe rules (hosted sparse "KDMV" header or a text descriptor) and known divergences.
#include "vmdk_plugin.h"

namespace instar::vmdk {
namespace {

constexpr unsigned char SPARSE_MAGIC[] = {'K', 'D', 'M', 'V'};
constexpr unsigned char COWD_MAGIC[] = {'C', 'O', 'W', 'D'}; // ESX vmfsSparse (qemu's VMDK3_MAGIC)
constexpr unsigned char DESCRIPTOR_MAGIC[] = "# Disk DescriptorFile";

constexpr ProbeMatch SPARSE[] = {{ProbeMatch::FromStart, 0, SPARSE_MAGIC, sizeof SPARSE_MAGIC}};
constexpr ProbeMatch COWD[] = {{ProbeMatch::FromStart, 0, COWD_MAGIC, sizeof COWD_MAGIC}};
constexpr ProbeMatch TEXT[] = {{ProbeMatch::FromStart, 0, DESCRIPTOR_MAGIC, sizeof DESCRIPTOR_MAGIC - 1}};

} // namespace

const ProbeRule PROBE_RULES[] = {{SPARSE, 1}, {COWD, 1}, {TEXT, 1}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

const Divergence DIVERGENCES[] = {
    {"vmdk-extent-path-policy", "*",
     "extent files named in a descriptor are opened only inside the allowed directory tree (default: the "
     "descriptor's own directory); absolute paths and '..' escapes are refused",
     "CVE-2022-47951: a descriptor naming /etc/shadow as a FLAT extent leaks it into converted images"},
    {"vmdk-create-extent-limit", "create",
     "twoGbMaxExtentSparse/Flat images above 64 TiB (more than 32768 extent files) are refused",
     "a bound on the files one create may add (INSTAR_MAX_ADDED_FILES); qemu-img creates them"},
    {"vmdk-create-flat-too-large", "create",
     "a flat extent larger than the file system allows fails with the host's error",
     "qemu-img silently leaves a 0-byte extent and exits 0: a broken image reported as success"},
    {"vmdk-read-past-eof", "convert",
     "a grain directory, grain table or grain outside its extent file is a Corrupt error naming the image; "
     "compressed grains larger than 2 MiB are refused",
     "qemu-img reads zeros past the end; a truncated image should not convert as if it were whole"},
    {"vmdk-missing-grain-table", "convert",
     "-n into a sparse extent whose grain directory entry is 0 allocates the grain table (zero-filled at the end of "
     "the file, then the directory entry); a streamOptimized extent's is refused",
     "qemu-img writes such a grain at file offset 0, over the header, and exits 0: the image is destroyed"},
    {"vmdk-stream-footer-write", "convert",
     "-n and commit into a streamOptimized image in VMware's layout (the header at 0 saying the directory is at "
     "the end, the real header in a footer) are refused before anything is written",
     "qemu-img appends the grains after the footer and exits 0: the file no longer ends with its footer and "
     "neither qemu nor VMware opens it (\"Invalid footer\")"},
    {"vmdk-compress-libdeflate", "convert",
     "convert into a new streamOptimized vmdk deflates its grains with libdeflate at zlib's default level: the same "
     "content, smaller grains, other bytes than qemu-img's compress(); INSTAR_DEFLATE=zlib deflates as qemu-img does",
     "about 2.5 times faster per core (issue 9's goal for streamOptimized); any zlib inflater reads the grains"},
    {"vmdk-resize", "resize",
     "resize grows and (with --shrink) shrinks monolithicSparse, monolithicFlat, twoGbMaxExtentFlat, "
     "twoGbMaxExtentSparse and streamOptimized images in place, and descriptors mixing FLAT, VMFS and SPARSE "
     "extents under any createType qemu opens (new grain tables, a moved grain directory, grown or "
     "added extents, a rewritten descriptor, a new footer; a shrink past the last extent removes the image's own "
     "dropped extent files), and COWD (vmfsSparse) files alone or as extents (seSparse, which qemu opens read-only, "
     "is refused); a grown delta disk reads zeros, not its parent's data, past the old end (grains of its own in "
     "every sparse layout, COWD, split sparse sets and streamOptimized included; a streamOptimized delta disk in "
     "VMware's footer layout is refused when the parent reaches past the old end); "
     "qemu-img "
     "refuses every vmdk: \"Image format driver does not support resize\"; commit grows a smaller vmdk base the "
     "same way, where qemu-img fails (\"Block job failed: Operation not supported\", nothing written)",
     "instar extension (issue 11): growing a VMDK should not need a convert"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::vmdk
