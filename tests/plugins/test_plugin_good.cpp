// A minimal well-formed plugin ("testfmt"), used by the discovery tests.
#include "instar/plugin.h"

namespace {

constexpr unsigned char MAGIC[] = {'T', 'E', 'S', 'T'};
constexpr instar::ProbeMatch MATCH[] = {{instar::ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC}};
// A second rule with a ranged match ("TSTV", then a big-endian version of 2 or more), marked an
// instar extension, so the manifest tests see an AtLeast match and a rule's flags survive the round
// trip.
constexpr unsigned char MAGIC_V[] = {'T', 'S', 'T', 'V'};
constexpr unsigned char VERSION_2[] = {0, 0, 0, 2};
constexpr instar::ProbeMatch MATCH_V[] = {
    {instar::ProbeMatch::FromStart, 0, MAGIC_V, sizeof MAGIC_V},
    {instar::ProbeMatch::FromStart, 4, VERSION_2, sizeof VERSION_2, instar::ProbeMatch::AtLeast},
};
constexpr instar::ProbeRule RULES[] = {{MATCH, 1}, {MATCH_V, 2, instar::PROBE_RULE_EXTENSION}};
constexpr instar::OptionDesc OPTIONS[] = {
    {"size", instar::OptionType::Size, nullptr, "Virtual disk size", instar::OptionPolicy::Honoured, nullptr,
     nullptr, 0, 0},
};
constexpr const char* ALIASES[] = {TEST_PLUGIN_ALIAS, nullptr};

const instar::FormatDescriptor DESCRIPTOR = {
    instar::INSTAR_PLUGIN_ABI_VERSION, TEST_PLUGIN_NAME, ALIASES, "9.9.9", "test format", instar::CAP_INFO,
    TEST_PLUGIN_PRIORITY, RULES, 2, OPTIONS, 1, nullptr, 0, nullptr,
};

const instar::FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace

INSTAR_DECLARE_PLUGIN(descriptor)
