// An example third-party format plugin: describes a made-up "example" format.
#include <instar/plugin.h>

namespace {

constexpr unsigned char MAGIC[] = {'E', 'X', 'A', 'M', 'P', 'L', 'E', '!'};
constexpr instar::ProbeMatch MATCH[] = {{instar::ProbeMatch::FromStart, 0, MAGIC, sizeof MAGIC}};
constexpr instar::ProbeRule RULES[] = {{MATCH, 1}};
constexpr instar::OptionDesc OPTIONS[] = {
    {"size", instar::OptionType::Size, nullptr, "Virtual disk size", instar::OptionPolicy::Honoured, nullptr,
     nullptr, 0, 0},
    {"flavour", instar::OptionType::String, "plain", "Which flavour of example image", instar::OptionPolicy::Honoured,
     nullptr, nullptr, 0, 0},
};

const instar::FormatDescriptor DESCRIPTOR = {
    instar::INSTAR_PLUGIN_ABI_VERSION, "example", nullptr, "1.0.0", "An out-of-tree example format", 0,
    instar::PROBE_NORMAL, RULES, 1, OPTIONS, 2, nullptr, 0, nullptr,
};

const instar::FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace

INSTAR_DECLARE_PLUGIN(descriptor)
