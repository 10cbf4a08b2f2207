// rebase's safe mode on the host: the new backing chain opened, INSTAR_OP_REBASE run (rebase_op.h).
#include "ops/rebase_op.h"

namespace instar {

Expected<bool> rebase_copy(const RebaseSpec& spec, const PluginRegistry& plugins, const vmm::SandboxConfig& sandbox,
                           std::uint32_t qemu_version) {
    (void)spec;
    (void)plugins;
    (void)sandbox;
    (void)qemu_version;
    return Error{"safe rebase (without -u) is not supported by instar yet"};
}

} // namespace instar
