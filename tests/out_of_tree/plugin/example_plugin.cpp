// An example third-party format plugin: the host half of a made-up "example" format (a 512-byte
// header, then the disk). Its guest half is example_guest.cpp, shipped beside it as example.gmod.
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
    instar::INSTAR_PLUGIN_ABI_VERSION, "example", nullptr, "1.0.0", "An out-of-tree example format",
    instar::CAP_INFO | instar::CAP_CONVERT, instar::PROBE_NORMAL, RULES, 1, OPTIONS, 2, nullptr, 0, "example.gmod",
};

const instar::FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace

INSTAR_DECLARE_PLUGIN(descriptor)
