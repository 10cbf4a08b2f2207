// A plugin that claims a future ABI version: instar must refuse it, naming both versions.
#include <boost/dll/alias.hpp>

#include <cstdint>

namespace {
std::uint32_t abi_version() { return 999; }
} // namespace

BOOST_DLL_ALIAS(abi_version, instar_plugin_abi_version)
