// The answer handshake's spin back-off (instar/spin_backoff.h): after a miss the next calls skip
// spinning, twice as many per miss in a row up to SPIN_SKIP_MAX, and one hit spins again at once.
#include <instar/spin_backoff.h>

#include "vmm_test_support.h"

using instar::SpinBackoff;

namespace {
// How many calls skip their spin before the next one spins.
unsigned skipped_before_next_spin(SpinBackoff& b) {
    unsigned n = 0;
    while (!b.should_spin()) ++n;
    return n;
}
} // namespace

TEST_SUITE("spin_backoff") {

TEST_CASE("hits keep every call spinning") {
    SpinBackoff b;
    for (int i = 0; i < 100; ++i) {
        REQUIRE(b.should_spin());
        b.hit();
    }
}

TEST_CASE("misses in a row skip 1, 2, 4, ... calls, capped at SPIN_SKIP_MAX") {
    SpinBackoff b;
    REQUIRE(b.should_spin());
    unsigned want = 1;
    for (int i = 0; i < 12; ++i) {
        b.miss();
        CHECK(skipped_before_next_spin(b) == want);
        want = want < SpinBackoff::SPIN_SKIP_MAX ? want * 2 : want;
    }
    CHECK(want == SpinBackoff::SPIN_SKIP_MAX);
}

TEST_CASE("one hit after a run of misses spins on the very next call") {
    SpinBackoff b;
    for (int i = 0; i < 10; ++i) {
        b.miss();
        (void)skipped_before_next_spin(b);
    }
    b.hit();
    CHECK(b.should_spin());
    b.miss();
    CHECK(skipped_before_next_spin(b) == 1);
}
}
