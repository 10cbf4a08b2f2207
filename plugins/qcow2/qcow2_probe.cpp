// qcow2 magic-byte probe rule: "QFI\xfb" followed by a version of 2 or more (qemu's qcow2_probe: a
// later version is qcow2's to refuse, "Unsupported qcow2 version N"; version 1 is qcow, not ours).
#include "qcow2_plugin.h"

namespace instar::qcow2 {
namespace {

constexpr unsigned char QCOW_MAGIC[] = {'Q', 'F', 'I', 0xfb};
constexpr unsigned char VERSION_2[] = {0, 0, 0, 2};

constexpr ProbeMatch HEADER[] = {
    {ProbeMatch::FromStart, 0, QCOW_MAGIC, sizeof QCOW_MAGIC},
    {ProbeMatch::FromStart, 4, VERSION_2, sizeof VERSION_2, ProbeMatch::AtLeast},
};

} // namespace

const ProbeRule PROBE_RULES[] = {{HEADER, 2}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

} // namespace instar::qcow2

namespace instar::qcow2 {

const Divergence DIVERGENCES[] = {
    {"qcow2-backing-path-policy", "*",
     "a backing file named inside an image is opened only if the path policy allows it (default: the top "
     "image's directory tree); json: and protocol names (nbd:, http:) are refused; a file: name is followed as "
     "qemu follows it (its path from the working directory), through the policy",
     "CVE-2015-5163, CVE-2024-4467: a backing_file of /etc/shadow or json:{...} leaks host data into outputs"},
    {"qcow2-data-file-path-policy", "*",
     "an external data file named inside an image is opened only if the path policy allows it",
     "CVE-2024-32498: a data_file naming a host file exposes it as guest data"},
    {"qcow2-create-refcount-table-limit", "create",
     "an image whose refcount table would exceed 8 MiB is refused with qemu's 'too large' message",
     "qemu-img writes such an image and then cannot reopen it (its own 8 MiB limit)"},
    {"qcow2-read-past-eof", "convert",
     "an L2 table, a data cluster or a compressed cluster more than one cluster past the end of the file is "
     "a Corrupt error naming the image (less than a cluster past it reads as zeros, as qemu-img check allows)",
     "qemu-img reads zeros there and converts a truncated image as if it were whole, silently"},
    {"qcow2-map-read-past-eof", "map",
     "an L2 table more than one cluster past the end of the file stops map with qemu's corruption message "
     "after the runs before it (as qcow2-read-past-eof for convert)",
     "qemu-img reads zeros there and maps a truncated image as unallocated, silently"},
    {"qcow2-check-cluster-limit", "check",
     "check refuses files of more than 2^28 clusters (QCOW2_CHECK_MAX_CLUSTERS), or whose reference-count "
     "array does not fit in guest memory (a read-only check retries with 3 GiB unless --max-guest-memory is "
     "given; -r does not), naming the limit; a refcount_bits=64 cluster referenced 2^32 times or more is "
     "reported as an overflow",
     "the in-guest array is bounded (4 bytes per cluster); qemu allocates up to INT_MAX clusters on the host"},
    {"qcow2-check-repair", "check",
     "check -r all refuses one repair: a refcount block outside the file beyond the in-guest array where the "
     "host file system lets the file grow to it (the file is extended to that block as qemu's repair does, "
     "nothing else is written); a rebuild flushes its new structure before the header switch (qemu flushes "
     "only after)",
     "the in-guest array is bounded; a repair is never left half done"},
    {"qcow2-encrypt-iter-time", "create",
     "encrypt.format=luks: PBKDF2 iteration counts come from encrypt.iter-time by the luks plugin's fixed rate "
     "per hash (luks-iter-time), not by qemu's timing loop",
     "the guest has no clock to calibrate with; the rate is what qemu 7.2 measured on the build machine"},
    {"qcow2-compress-libdeflate", "convert",
     "convert -c into a new qcow2 image (compression_type=zlib) deflates with libdeflate at qemu's level 6 and a "
     "32 KiB window: the same content, smaller compressed clusters, other bytes than qemu-img's zlib with its 4 KiB "
     "window; INSTAR_DEFLATE=zlib deflates as qemu-img does, byte for byte",
     "about 2.5 times faster per core (issue 9's goal for -c); qemu inflates a whole cluster in one call, which "
     "reads every distance inside the cluster"},
    {"qcow2-empty-snapshots", "commit",
     "emptying a top with internal snapshots after commit zeroes the active L1 table, then each L2 table it "
     "named and every cluster in it lose the active layer's reference (freed where no snapshot keeps them); "
     "qemu discards every guest cluster, copying each L2 table a snapshot shares and allocating an empty L2 "
     "table for every L1 entry without one: the same content and snapshots, check clean, fewer clusters",
     "one L1 write switches the whole active layer to the backing file, so a kill leaves leaks at worst"},
    {"qcow2-empty-bitmaps", "commit",
     "emptying a top with persistent bitmaps after commit leaves the bitmaps' directory, tables and data "
     "clusters where they are; qemu stores every bitmap again on close, into new clusters, with a new "
     "directory: the same bitmaps and bits, check clean, a different cluster layout",
     "the bitmaps do not change (qemu's discards do not dirty them), so rewriting them is only extra writes "
     "and a window in which a kill leaves them half stored"},
    {"qcow2-commit-corrupt-base", "commit",
     "commit into a qcow2 base with the corrupt bit is refused before anything is written (\"Could not open "
     "'BASE': qcow2: Image is corrupt; cannot be opened read/write\")",
     "qemu-img's reopen of the base for writing does not check the bit and writes into an image qemu itself "
     "marked corrupt"},
    {"qcow2-commit-dirty-base", "commit",
     "commit repairs a dirty qcow2 base (lazy refcounts not written back) before writing into it, "
     "silently, as check -r all repairs it; qemu's reopen of the base skips that repair, writes, and "
     "clears the dirty bit over the wrong refcounts: the same output and content, a clean base",
     "qemu-img leaves a base that check reports corrupt"},
    {"qcow2-write-bitmaps", "commit",
     "writes into an existing qcow2 image (commit's base, convert -n, safe rebase's overlay) set the bits "
     "of its enabled persistent bitmaps in place, before the data they cover, in the bitmaps' own data "
     "clusters (a new one where a table entry has none); qemu marks the bitmaps in use on opening and "
     "stores every bitmap again on close, into new clusters, with a new directory: the same bits, check "
     "clean, a different cluster layout",
     "bits before data keep every bitmap consistent and a superset of what reached the image at any kill "
     "point, where qemu's in-use mark makes a killed run's bitmaps inconsistent (unusable)"},
    {"qcow2-resize-bitmaps", "resize",
     "resize carries persistent bitmaps to the new size as qemu-img does (same bits, same bytes), but a shrink "
     "that shortens a bitmap's table stores the bitmaps at the size switch, before the clean-up frees the "
     "cropped clusters (qemu stores them on close, after it): the same bits, another cluster layout",
     "one header write switches the size and the bitmaps together, so no kill leaves tables sized for another "
     "disk (qemu refuses to open such an image)"},
    {"qcow2-failed-edit-bitmaps", "resize",
     "a resize or snapshot that qemu-img fails after opening an image with persistent bitmaps (a refused size, "
     "an inconsistent bitmap, snapshot -a, -d of a missing snapshot) leaves the image untouched; qemu-img's "
     "close stores every bitmap anew: the same output and bits, another cluster layout",
     "a refusal writes nothing"},
    {"qcow2-amend-downgrade-bitmaps", "amend",
     "amend -o compat=0.10 on an image with persistent bitmaps drops them cleanly (the header switched to no "
     "bitmaps, their clusters freed): the image checks clean",
     "qemu-img leaves the bitmaps extension in the v2 header with its clusters leaked; every later open warns "
     "that the bitmaps must be considered inconsistent"},
    {"qcow2-resize-bitmap-too-big", "resize",
     "a resize at which a persistent bitmap would exceed qemu's bounds (512 MiB of bits) is refused before "
     "anything is written",
     "qemu-img resizes, warns \"Lost persistent bitmaps\" and leaves every bitmap inconsistent (unusable)"},
    {"qcow2-resize-prealloc-compressed-extl2", "resize",
     "a preallocating resize from inside a compressed last cluster of an image with extended L2 entries is "
     "refused before anything is written (but falloc and full over a longer backing file, whose result is whole)",
     "qemu-img moves the cluster with its bytes but keeps its empty subcluster bitmap: the data before the old "
     "size then reads as unallocated, lost"},
    {"qcow2-resize-prealloc-zero-head", "resize",
     "resize --preallocation=metadata from inside a zero-flagged cluster of the image's own (standard L2 "
     "entries) is refused before anything is written when no zero write follows (no longer backing file)",
     "qemu-img keeps the cluster, drops its zero flag and writes zeros before the old size only: the new area "
     "then shows the cluster's old bytes"},
    {"qcow2-encrypt-compress-existing", "convert",
     "convert -n -c into an encrypted qcow2 image is refused before anything is written",
     "qemu-img fails with an I/O error at the first compressed cluster, leaving the image partly written"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::qcow2
