// An example third-party format plugin: the host half of a made-up "example" format (a 512-byte
// header, then the disk). Its guest half is example_guest.cpp, shipped beside it as example.gmod.
#include <instar/plugin.h>

#include <string_view>

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

// `instar measure -O example` (instar/measure.h): the header, then the disk in whole sectors; the
// data never matters, so no walk (walk_unit 0). The flavour must be one this format knows.
bool plan(const instar::MeasureRequest& r, instar::MeasurePlan& p, char* error) noexcept {
    p = instar::MeasurePlan{};
    const char* flavour = instar::measure_option(r, "flavour");
    if (flavour && std::string_view(flavour) != "plain")
        return instar::measure_fail(error, "example: unknown flavour");
    return true;
}
bool figures(const instar::MeasureRequest& r, std::uint64_t, instar::MeasureAnswer& a, char*) noexcept {
    a = instar::MeasureAnswer{};
    a.required = a.fully_allocated = 512 + instar::measure_round_up(r.virtual_size, 512);
    return true;
}
constexpr instar::MeasureHooks MEASURE = {0, plan, figures};

const instar::FormatDescriptor DESCRIPTOR = {
    instar::INSTAR_PLUGIN_ABI_VERSION, "example", nullptr, "1.0.0", "An out-of-tree example format",
    instar::CAP_INFO | instar::CAP_CONVERT, instar::PROBE_NORMAL, RULES, 1, OPTIONS, 2, nullptr, 0, "example.gmod",
    0, &MEASURE,
};

const instar::FormatDescriptor* descriptor() { return &DESCRIPTOR; }

} // namespace

INSTAR_DECLARE_PLUGIN(descriptor)
