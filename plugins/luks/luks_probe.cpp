// LUKS probe rule: the LUKS1 magic "LUKS\xba\xbe" at offset 0 and version 1 after it (qemu's
// qcrypto_block_luks_has_format), and the plugin's divergences.
#include "luks_plugin.h"

namespace instar::luks {
namespace {

constexpr unsigned char MAGIC[] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
constexpr unsigned char VERSION_1[] = {0, 1}; // qemu probes LUKS1 only: another version is raw to it
constexpr ProbeMatch HEADER[] = {{ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC},
                                 {ProbeMatch::FromStart, 6, VERSION_1, sizeof VERSION_1}};
// LUKS2 (instar's extension, divergence luks2-read): the magic and version 2, a rule qemu's probe
// does not have (PROBE_RULE_EXTENSION): --unsafe-quirks, which probes as qemu does, skips it, so a
// LUKS2 volume is then raw, as in qemu-img.
constexpr unsigned char VERSION_2[] = {0, 2};
constexpr ProbeMatch HEADER_2[] = {{ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC},
                                   {ProbeMatch::FromStart, 6, VERSION_2, sizeof VERSION_2}};

} // namespace

const ProbeRule PROBE_RULES[] = {{HEADER, 2}, {HEADER_2, 2, PROBE_RULE_EXTENSION}};
const std::uint32_t PROBE_RULE_COUNT = 2;

const Divergence DIVERGENCES[] = {
    {"luks-pbkdf-bound", "convert",
     "a key slot or master key digest asking for more than 64M PBKDF2 iterations is refused as corrupt",
     "an image can otherwise make unlocking run for hours; qemu's own iter-time calibration stays far below"},
    {"luks-iter-time", "create",
     "PBKDF2 iteration counts come from iter-time by a fixed rate per hash (sha256: 7.5M blocks/s), not by timing",
     "the guest has no clock to calibrate with; the rate is what qemu 7.2 measured on the build machine"},
    {"luks-amend-iter-time", "amend",
     "a key slot added by amend gets its PBKDF2 iterations from iter-time by luks-iter-time's fixed rate; an "
     "iter-time scaling past 32 bits is refused with create's words, not qemu's (which name its measured count)",
     "the guest has no clock to calibrate with"},
    {"luks-amend-force-order", "amend",
     "amend --force over an active key slot passes the new key through a free slot (restored after), so a kill "
     "leaves the old or the new passphrase opening the image; the finished image is qemu's",
     "qemu overwrites the slot's material in place: a kill before its header write loses an image with one slot"},
    {"luks-aes-192", "create",
     "192-bit LUKS keys outside xts (aes/serpent/twofish-192 in cbc/ecb/ctr: 4000-stripe key material of 187.5 "
     "sectors) are refused",
     "qemu-img aborts with an assertion creating or opening them: such an image would be useless to qemu"},
    {"luks2-read", "*",
     "LUKS2 volumes (cryptsetup's format 2) are probed as luks and read with key-secret: info, convert, compare, map, "
     "dd; convert -n writes one's payload and resize truncates a dynamic segment; argon2 key slots take their "
     "memory from the guest (--max-guest-memory); amending one, or resizing a fixed-size segment, is refused",
     "qemu-img reads LUKS2 as raw (ciphertext); instar refused it by name. --unsafe-quirks keeps qemu's raw probe"},
    {"luks2-create", "create",
     "-o luks-version=2 (create -f luks, convert -O luks, measure -O luks) makes a LUKS2 volume as cryptsetup lays "
     "one out: two 16 KiB header copies, a pbkdf2 key slot with qemu's iter-time and hash, one dynamic crypt "
     "segment of 512-byte sectors at 16 MiB; the size is rounded up to whole sectors; ecb is refused",
     "qemu-img creates LUKS1 only (its luks options have no format version); cryptsetup's default is LUKS2. The "
     "key is left out of -o help and the accepted-parameter list, which stay qemu-img's"},
    {"luks-sm4", "create", "cipher-alg=sm4 is refused (\"Algorithm 'sm4' not supported\", as Debian's qemu 10.0 says)",
     "Debian 12's nettle 3.8.1 has no SM4; a qemu built with SM4 (nettle 3.9+, gcrypt) would accept it"},
};
const std::uint32_t DIVERGENCE_COUNT = sizeof DIVERGENCES / sizeof DIVERGENCES[0];

} // namespace instar::luks
