// Hosted tool: runs the VHDX emitter into a real file (for vhdx_create_differential.py).
//
// The creator field names qemu's full version ("QEMU v7.2.22"), and hosted_create_main always
// passes the default profile, so VHDX_TEST_QEMU_VERSION (major*10000+minor*100+micro) overrides
// req.qemu_version here: the differential script then compares files with `cmp` unmasked.
#include "hosted_create.h"
#include "vhdx_create.h"

#include <cstdlib>

namespace {

instar::guest::Status create_with_test_version(const instar::guest::CreateRequest& req,
                                               instar::guest::CreateTarget& target) {
    instar::guest::CreateRequest r = req;
    if (const char* v = std::getenv("VHDX_TEST_QEMU_VERSION"))
        r.qemu_version = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    return instar::vhdx::create(r, target);
}

} // namespace

int main(int argc, char** argv) { return instar::hosted::hosted_create_main(argc, argv, create_with_test_version); }
