// A plugin with the right ABI version but no factory symbol.
#include "instar/plugin.h"

namespace {
std::uint32_t abi_version() { return instar::INSTAR_PLUGIN_ABI_VERSION; }
} // namespace

BOOST_DLL_ALIAS(abi_version, instar_plugin_abi_version)
