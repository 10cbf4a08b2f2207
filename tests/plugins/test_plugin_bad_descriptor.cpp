// A plugin whose descriptor is malformed (no name, absurd option count).
#include "instar/plugin.h"

namespace {
const instar::FormatDescriptor DESCRIPTOR = {
    instar::INSTAR_PLUGIN_ABI_VERSION, nullptr, nullptr, "1", "broken", 0, 100, nullptr, 0, nullptr, 100000,
    nullptr, 0, nullptr,
};
const instar::FormatDescriptor* descriptor() { return &DESCRIPTOR; }
} // namespace

INSTAR_DECLARE_PLUGIN(descriptor)
