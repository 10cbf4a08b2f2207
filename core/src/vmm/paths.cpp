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

static std::string process_variant(const std::string& runtime) {
    const std::string suffix = ".elf";
    if (runtime.size() >= suffix.size() && runtime.compare(runtime.size() - suffix.size(), suffix.size(), suffix) == 0)
        return runtime.substr(0, runtime.size() - suffix.size()) + "-process" + suffix;
    return runtime + "-process";
}

std::string default_process_runtime_path() {
    if (const char* env = std::getenv("INSTAR_GUEST_RUNTIME_PROCESS"); env != nullptr && *env != '\0') return env;
    if (const char* env = std::getenv("INSTAR_GUEST_RUNTIME"); env != nullptr && *env != '\0') return process_variant(env);
    if (is_file(INSTAR_GUEST_RUNTIME_PROCESS_INSTALLED)) return INSTAR_GUEST_RUNTIME_PROCESS_INSTALLED;
    return INSTAR_GUEST_RUNTIME_PROCESS_BUILT;
}

std::string process_loader_path() {
    if (const char* env = std::getenv("INSTAR_PROCESS_LOADER"); env != nullptr && *env != '\0') return env;
    if (is_file(INSTAR_PROCESS_LOADER_INSTALLED)) return INSTAR_PROCESS_LOADER_INSTALLED;
    return INSTAR_PROCESS_LOADER_BUILT;
}

std::optional<SandboxKind> parse_sandbox_kind(const std::string& text) {
    if (text == "auto") return SandboxKind::Auto;
    if (text == "kvm") return SandboxKind::Kvm;
    if (text == "process") return SandboxKind::Process;
    return std::nullopt;
}

const char* sandbox_kind_name(SandboxKind kind) {
    switch (kind) {
    case SandboxKind::Kvm: return "kvm";
    case SandboxKind::Process: return "process";
    case SandboxKind::Auto: break;
    }
    return "auto";
}

SandboxKind requested_sandbox(SandboxKind kind) {
    if (kind != SandboxKind::Auto) return kind;
    const char* env = std::getenv("INSTAR_SANDBOX");
    if (env == nullptr) return SandboxKind::Auto;
    return parse_sandbox_kind(env).value_or(SandboxKind::Auto);
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
