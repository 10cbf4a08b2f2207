// Starts the modules the host loaded: calls each entry with the Services table, keeps its ops.
#include "runtime.h"

namespace instar::guest {
namespace {
constinit const ModuleOps* loaded[INSTAR_MAX_MODULES] = {};
constinit uint32_t count = 0;
} // namespace

Status modules_init(const instar_boot_info& boot) {
    uint32_t n = boot.module_count < INSTAR_MAX_MODULES ? boot.module_count : INSTAR_MAX_MODULES;
    for (uint32_t i = 0; i < n; ++i) {
        // SAFETY: the host loaded module i at slot.base and relocated it; entry points into it.
        auto entry = reinterpret_cast<ModuleEntryFn>(static_cast<uintptr_t>(boot.modules[i].entry));
        const ModuleOps* ops = entry(&services());
        if (ops == nullptr || ops->abi_version != MODULE_ABI_VERSION || ops->size < sizeof(ModuleOps)) {
            log_str("runtime: a module refused to start or has another module ABI version");
            return Status::Invalid;
        }
        loaded[i] = ops;
        count = i + 1;
    }
    return Status::Ok;
}

uint32_t module_count() { return count; }

const ModuleOps* module(uint32_t index) { return index < count ? loaded[index] : nullptr; }

} // namespace instar::guest
