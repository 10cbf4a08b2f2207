// Unit tests for the KDMV sparse extent header and the streamOptimized footer.
#include "vmdk_test_images.h"

#include "hosted_support.h"
#include "vmdk_sparse_header.h"

#include <doctest/doctest.h>

using namespace instar;
using namespace instar::vmdk;
using instar::guest::Status;
using vmdk_test::Bytes;

namespace {
Status open(const Bytes& b, VmdkSparseExtent* x, Vmdk4Header* h, bool* emb) {
    hosted::MemoryDevice dev(b);
    return vmdk_sparse_open(dev, x, h, emb);
}
} // namespace

TEST_CASE("sparse header: exact fields") {
    auto b = vmdk_test::sparse();
    VmdkSparseExtent x{};
    Vmdk4Header h{};
    bool emb = true;
    REQUIRE(open(b, &x, &h, &emb) == Status::Ok);
    CHECK(!emb);
    CHECK(h.version == 1);
    CHECK(h.flags == 3);
    CHECK(h.capacity == 2048);
    CHECK(h.granularity == 128);
    CHECK(h.num_gtes_per_gt == 512);
    CHECK(h.rgd_offset == 21);
    CHECK(h.gd_offset == 21);
    CHECK(h.grain_offset == 128);
    CHECK(x.sectors == 2048);
    CHECK(x.cluster_sectors == 128);
    CHECK(!x.compressed);
}

TEST_CASE("sparse header: streamOptimized footer overrides the header") {
    vmdk_test::Sparse o;
    o.compress = 1;
    o.gd_offset = VMDK4_GD_AT_END;
    o.capacity = 0;
    auto b = vmdk_test::sparse(o);
    VmdkSparseExtent x{};
    Vmdk4Header h{};
    bool emb = false;
    CHECK(open(b, &x, &h, &emb) == Status::Corrupt); // no footer
    o.gd_offset = 50;
    o.capacity = 4096;
    auto footer = vmdk_test::sparse(o);
    Bytes tail(1536, 0);
    vmdk_test::le(tail, 12, MARKER_FOOTER, 4);
    std::memcpy(tail.data() + 512, footer.data(), 512);
    b.insert(b.end(), tail.begin(), tail.end());
    REQUIRE(open(b, &x, &h, &emb) == Status::Ok);
    CHECK(x.sectors == 4096);
    CHECK(x.compressed);
    CHECK(h.gd_offset == 50);
}

TEST_CASE("sparse header: qemu's rejections and instar's limits") {
    VmdkSparseExtent x{};
    Vmdk4Header h{};
    bool emb = false;
    vmdk_test::Sparse o;
    o.version = 4;
    CHECK(open(vmdk_test::sparse(o), &x, &h, &emb) == Status::Unsupported);
    o = {};
    o.gtes = 513;
    CHECK(open(vmdk_test::sparse(o), &x, &h, &emb) == Status::Corrupt);
    o = {};
    o.granularity = 0;
    CHECK(open(vmdk_test::sparse(o), &x, &h, &emb) == Status::Corrupt);
    o = {};
    o.granularity = 0x400000;
    CHECK(open(vmdk_test::sparse(o), &x, &h, &emb) == Status::TooLarge);
    o = {};
    o.capacity = 1ull << 41; // 1 PiB in a tiny file
    o.granularity = 1;
    CHECK(open(vmdk_test::sparse(o), &x, &h, &emb) == Status::TooLarge); // L1 too big
    o.granularity = 0x200000;
    CHECK(open(vmdk_test::sparse(o), &x, &h, &emb) == Status::TooLarge); // over 64 TiB
    auto b = vmdk_test::sparse();
    b.resize(100 * 512); // shorter than grain_offset
    CHECK(open(b, &x, &h, &emb) == Status::Corrupt);
    CHECK(open(Bytes(3, 'K'), &x, &h, &emb) == Status::Corrupt);
    CHECK(open(vmdk_test::bytes("COWD...."), &x, &h, &emb) == Status::Unsupported);
    CHECK(open(vmdk_test::bytes("XXXX...."), &x, &h, &emb) == Status::Corrupt);
    vmdk_test::Sparse disguised; // capacity 0 and a descriptor offset: a descriptor file
    disguised.capacity = 0;
    disguised.embedded.push_back('x');
    REQUIRE(open(vmdk_test::sparse(disguised), &x, &h, &emb) == Status::Ok);
    CHECK(emb);
}
