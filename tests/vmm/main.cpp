// doctest main for the sandbox tests: exit 77 (meson SKIP) when KVM tests could not run.
#define DOCTEST_CONFIG_IMPLEMENT
#include "vmm_test_support.h"

int main(int argc, char** argv) {
    doctest::Context ctx(argc, argv);
    int rc = ctx.run();
    if (ctx.shouldExit()) return rc;
    if (rc == 0 && vmm_test::kvm_skipped) return 77;
    return rc;
}
