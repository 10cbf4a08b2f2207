// Bochs probe rules, as qemu's bochs_probe: the NUL-terminated magic, type "Redolog" and subtype
// "Growing" (strcmp, so each string's NUL counts) and version 2.0 or 1.0 (little-endian u32 at 64).
#include "bochs_plugin.h"

namespace instar::bochs {
namespace {

constexpr unsigned char MAGIC[] = "Bochs Virtual HD Image"; // with its NUL
constexpr unsigned char TYPE[] = "Redolog";
constexpr unsigned char SUBTYPE[] = "Growing";
constexpr unsigned char V2[] = {0x00, 0x00, 0x02, 0x00}; // HEADER_VERSION 0x00020000
constexpr unsigned char V1[] = {0x00, 0x00, 0x01, 0x00}; // HEADER_V1 0x00010000
constexpr ProbeMatch VERSION2[] = {{ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC},
                                   {ProbeMatch::FromStart, 32, TYPE, sizeof TYPE},
                                   {ProbeMatch::FromStart, 48, SUBTYPE, sizeof SUBTYPE},
                                   {ProbeMatch::FromStart, 64, V2, sizeof V2}};
constexpr ProbeMatch VERSION1[] = {{ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC},
                                   {ProbeMatch::FromStart, 32, TYPE, sizeof TYPE},
                                   {ProbeMatch::FromStart, 48, SUBTYPE, sizeof SUBTYPE},
                                   {ProbeMatch::FromStart, 64, V1, sizeof V1}};

} // namespace

const ProbeRule PROBE_RULES[] = {{VERSION2, 4}, {VERSION1, 4}};
const std::uint32_t PROBE_RULE_COUNT = sizeof PROBE_RULES / sizeof PROBE_RULES[0];

} // namespace instar::bochs
