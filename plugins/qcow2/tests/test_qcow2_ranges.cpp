// Unit tests of the metadata range set (qcow2_ranges.h) and the shared binary search
// (qcow2_sort.h's partition_point): overlapping, nested and empty ranges, and a full set.
#include <doctest/doctest.h>

#include "hosted_support.h"
#include "qcow2_ranges.h"
#include "qcow2_sort.h"

#include <cstdint>

using namespace instar;
using guest::Status;

TEST_CASE("partition_point: the first element not below, or n") {
    const std::uint64_t v[] = {2, 4, 4, 9};
    auto below = [](std::uint64_t x) { return [x](std::uint64_t e) { return e < x; }; };
    CHECK(qcow2::partition_point(v, 4, below(0)) == 0);
    CHECK(qcow2::partition_point(v, 4, below(4)) == 1);
    CHECK(qcow2::partition_point(v, 4, below(5)) == 3);
    CHECK(qcow2::partition_point(v, 4, below(10)) == 4);
    CHECK(qcow2::partition_point(v, 0, below(10)) == 0);
}

TEST_CASE("SortedRanges: a query meets a range, overlapping and nested ones included") {
    hosted::BudgetAllocator alloc(1 << 20);
    qcow2::SortedRanges r;
    REQUIRE(r.reserve(alloc, 4) == Status::Ok);
    CHECK(r.add(1000, 5000)); // a long range first, a nested one after it
    CHECK(r.add(2000, 2100));
    CHECK(r.add(8000, 8192));
    CHECK(r.add(100, 200));
    CHECK_FALSE(r.add(1, 2)); // full
    r.finish();
    CHECK(r.hits(150, 151));
    CHECK_FALSE(r.hits(200, 1000));   // ends are exclusive, so is the query's
    CHECK(r.hits(4999, 6000));        // the long range, found through the running maximum
    CHECK(r.hits(3000, 3001));        // inside the long range, past the nested one
    CHECK_FALSE(r.hits(5000, 8000));
    CHECK(r.hits(8191, 9000));
    CHECK_FALSE(r.hits(8192, 100000));
    CHECK_FALSE(r.hits(0, 100));
    r.release(alloc);
    CHECK_FALSE(r.hits(150, 151)); // released: empty
}

TEST_CASE("SortedRanges: an empty range is no metadata") {
    hosted::BudgetAllocator alloc(1 << 20);
    qcow2::SortedRanges r;
    REQUIRE(r.reserve(alloc, 2) == Status::Ok);
    CHECK(r.add(4096, 4096)); // a snapshot's empty L1 table, a bitmap's empty table
    CHECK(r.add(65536, 131072));
    r.finish();
    CHECK_FALSE(r.hits(0, 65536));
    CHECK(r.hits(65536, 65537));
    r.release(alloc);
}
