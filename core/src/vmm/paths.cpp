// Where the guest runtime and guest modules live: environment, install tree, build tree.
#include <sys/stat.h>

#include <cstdlib>
#include <sstream>

#include "instar_config.h"
#include "vmm/sandbox.h"
#include "vmm/vmm_paths.h"

namespace instar::vmm {

namespace {
bool is_file(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
} // namespace

std::string default_runtime_path() {
    if (const char* env = std::getenv("INSTAR_GUEST_RUNTIME"); env != nullptr && *env != '\0') return env;
    if (is_file(INSTAR_GUEST_RUNTIME_INSTALLED)) return INSTAR_GUEST_RUNTIME_INSTALLED;
    return INSTAR_GUEST_RUNTIME_BUILT;
}

std::string find_guest_module(const std::string& file_name) {
    if (file_name.empty() || file_name.find('/') != std::string::npos) return {};
    const std::string stem = file_name.substr(0, file_name.find('.'));
    if (const char* env = std::getenv("INSTAR_PLUGIN_PATH"); env != nullptr) {
        std::stringstream dirs(env);
        for (std::string dir; std::getline(dirs, dir, ':');) {
            if (!dir.empty() && is_file(dir + "/" + file_name)) return dir + "/" + file_name;
        }
    }
    for (const std::string& candidate : {std::string(INSTAR_PLUGIN_DIR) + "/" + file_name,
                                         std::string(INSTAR_BUILD_ROOT) + "/plugins/" + stem + "/guest/" + file_name,
                                         std::string(INSTAR_BUILD_ROOT) + "/plugins/" + stem + "/" + file_name}) {
        if (is_file(candidate)) return candidate;
    }
    return {};
}

} // namespace instar::vmm
