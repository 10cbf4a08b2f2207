// A plugin whose factory throws: instar must survive it and skip the plugin.
#include "instar/plugin.h"

#include <stdexcept>

namespace {
std::uint32_t abi_version() { return instar::INSTAR_PLUGIN_ABI_VERSION; }
const instar::FormatDescriptor* make() { throw std::runtime_error("deliberate failure"); }
} // namespace

BOOST_DLL_ALIAS(abi_version, instar_plugin_abi_version)
BOOST_DLL_ALIAS(make, instar_format_plugin_v7)
