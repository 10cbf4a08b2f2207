// What every sandboxed operation needs from a plugin: the path of its guest half, and a safe form
// of the text a guest sends back for the user.
#pragma once

#include "plugins/loaded_plugin.h"
#include "util/expected.h"

#include <string>

namespace instar {

// The plugin's guest module file: beside its .so when installed, in its guest/ subdirectory in the
// build tree, else wherever vmm::find_guest_module finds it.
Expected<std::string> guest_module_path(const LoadedPlugin& p);

// Untrusted guest text made fit for a terminal: printable ASCII, at most a few short lines.
std::string printable_reason(const std::string& text);

} // namespace instar
