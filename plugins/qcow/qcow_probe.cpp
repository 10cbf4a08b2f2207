// qcow probe rule ("QFI\xfb" then version 1, qemu's qcow_probe) and the plugin's divergences.
#include "qcow_plugin.h"

namespace instar::qcow {
namespace {

constexpr unsigned char MAGIC[] = {'Q', 'F', 'I', 0xfb};
constexpr unsigned char VERSION_1[] = {0, 0, 0, 1};
// qemu's qcow_probe also wants a whole 48-byte header; the guest probe checks that.
constexpr ProbeMatch HEADER[] = {
    {ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC},
    {ProbeMatch::FromStart, 4, VERSION_1, sizeof VERSION_1},
};

} // namespace

const ProbeRule PROBE_RULES[] = {{HEADER, 2}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

const Divergence DIVERGENCES[] = {
    {"qcow-create-encryption", "create",
     "qcow images with legacy AES encryption (encryption=on, encrypt.format=aes) are not created; "
     "such images are read (convert from) with encrypt.key-secret",
     "qemu itself refuses AES-encrypted qcow images in its system emulators; instar never writes them"},
    {"qcow-backing-path-policy", "*",
     "a backing file named inside an image is opened only if the path policy allows it",
     "CVE-2015-5163: a backing_file of /etc/shadow leaks host data into outputs"},
    {"qcow-large-l1", "convert",
     "convert -O qcow and convert -n targets whose L1 table exceeds QCOW_MAX_WRITER_L1_BYTES (32 MiB, 8 TiB of "
     "disk at qemu's geometry) are refused with a reason",
     "the writer holds the whole L1 table in bounded guest memory"},
    {"qcow-compressed-exit-status", "convert",
     "convert -c -O qcow exits 0; qemu-img writes the same complete image but exits 1 without a message "
     "(qemu's qcow refuses the empty compressed write qemu-img ends a compressed convert with)",
     "the image is complete and correct; a failing exit status for it would only break scripts"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::qcow
