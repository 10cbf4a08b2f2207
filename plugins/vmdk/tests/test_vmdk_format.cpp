// Tests of VMDK probe and info on whole hand-built images (both passes), including hostile ones.
#include "vmdk_test_images.h"

#include "hosted_support.h"
#include "vmdk_descriptor.h"
#include "vmdk_format.h"

#include <doctest/doctest.h>

#include <boost/json/serialize.hpp>

#include <memory>

using namespace instar;
using instar::guest::Status;
using vmdk_test::Bytes;

namespace {

hosted::HostedInfo run(const Bytes& b, const std::vector<Bytes>& files = {}, std::size_t budget = 4 << 20) {
    hosted::MemoryDevice dev(b);
    std::vector<std::unique_ptr<hosted::MemoryDevice>> owned;
    std::vector<guest::BlockDevice*> ptrs;
    for (const auto& f : files) {
        owned.push_back(std::make_unique<hosted::MemoryDevice>(f));
        ptrs.push_back(owned.back().get());
    }
    return hosted::run_info(&vmdk::info, dev, ptrs, budget);
}

bool probes(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    bool m = false;
    REQUIRE(vmdk::probe(dev, &m) == Status::Ok);
    return m;
}

std::string specific(const hosted::HostedInfo& r) {
    return boost::json::serialize(hosted::debug_json(r.info).as_object().at("format-specific"));
}

} // namespace

TEST_CASE("info: monolithicSparse") {
    vmdk_test::Sparse o;
    o.embedded = vmdk_test::descriptor("monolithicSparse", "RW 2048 SPARSE \"m.vmdk\"");
    auto r = run(vmdk_test::sparse(o));
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.format == "vmdk");
    CHECK(r.info.virtual_size == 2048 * 512);
    CHECK(r.info.cluster_size == std::optional<std::uint64_t>(65536));
    CHECK(r.info.dirty == std::optional<bool>(false));
    CHECK(r.info.files.empty());
    CHECK(specific(r) == R"({"type":"vmdk","data":{"create-type":"monolithicSparse","cid":305419896,)"
                         R"("parent-cid":4294967295,"extents":[{"filename":"","format":"","virtual-size":1048576,)"
                         R"("cluster-size":65536}]}})");
    CHECK(probes(vmdk_test::sparse(o)));
}

TEST_CASE("info: a sparse image without a CID is refused, as by qemu") {
    CHECK(run(vmdk_test::sparse()).status == Status::Corrupt);
}

TEST_CASE("info: descriptor with flat and sparse extents: NeedFiles, then the full report") {
    const auto desc = vmdk_test::bytes(vmdk_test::descriptor(
        "twoGbMaxExtentSparse", "RW 2048 SPARSE \"d-s001.vmdk\"\nRW 1024 SPARSE \"d-s002.vmdk\"",
        "parentFileNameHint=\"base.vmdk\"\n"));
    CHECK(probes(desc));
    auto r = run(desc);
    REQUIRE(r.status == Status::NeedFiles);
    REQUIRE(r.info.files.size() == 2);
    CHECK(r.info.files[0].role == guest::FileRole::Extent);
    CHECK(r.info.files[0].name == "d-s001.vmdk");
    CHECK(r.info.files[1].name == "d-s002.vmdk");
    vmdk_test::Sparse o;
    vmdk_test::Sparse o2;
    o2.capacity = 1024;
    r = run(desc, {vmdk_test::sparse(o), vmdk_test::sparse(o2)});
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == 3072 * 512);
    CHECK(r.info.cluster_size == std::optional<std::uint64_t>(65536));
    REQUIRE(r.info.files.size() == 3);
    CHECK(r.info.files[2].role == guest::FileRole::Backing);
    CHECK(r.info.files[2].name == "base.vmdk");
    CHECK(r.info.backing_format == std::optional<std::string>("vmdk"));
    CHECK(specific(r) == R"({"type":"vmdk","data":{"create-type":"twoGbMaxExtentSparse","cid":305419896,)"
                         R"("parent-cid":4294967295,"extents":[{"filename":"d-s001.vmdk","format":"SPARSE",)"
                         R"("virtual-size":1048576,"cluster-size":65536},{"filename":"d-s002.vmdk",)"
                         R"("format":"SPARSE","virtual-size":524288,"cluster-size":65536}]}})");
    // Different grain sizes: qemu's get_info fails, so no cluster size and no dirty flag.
    o2.granularity = 256;
    r = run(desc, {vmdk_test::sparse(o), vmdk_test::sparse(o2)});
    REQUIRE(r.status == Status::Ok);
    CHECK(!r.info.cluster_size);
    CHECK(!r.info.dirty);
    // Wrong number of files, a garbage extent.
    CHECK(run(desc, {vmdk_test::sparse(o)}).status == Status::Invalid);
    CHECK(run(desc, {vmdk_test::sparse(o), Bytes(600, 0)}).status == Status::Corrupt);
}

TEST_CASE("info: monolithicFlat") {
    const auto desc = vmdk_test::bytes(vmdk_test::descriptor("monolithicFlat", "RW 4096 FLAT \"f-flat.vmdk\" 0"));
    auto r = run(desc, {Bytes(4096 * 512, 0)});
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == 4096 * 512);
    CHECK(!r.info.cluster_size);
    CHECK(r.info.dirty == std::optional<bool>(false));
    CHECK(specific(r) == R"({"type":"vmdk","data":{"create-type":"monolithicFlat","cid":305419896,)"
                         R"("parent-cid":4294967295,"extents":[{"filename":"f-flat.vmdk","format":"FLAT",)"
                         R"("virtual-size":2097152}]}})");
}

TEST_CASE("info: descriptor rejections") {
    CHECK(run(vmdk_test::bytes("version=1\n")).status == Status::Corrupt); // no createType
    CHECK(run(vmdk_test::bytes(vmdk_test::descriptor("monolithicSparse", "RW 1 SPARSE \"x\""))).status ==
          Status::Unsupported); // a sparse type in a descriptor file
    CHECK(run(vmdk_test::bytes(vmdk_test::descriptor("monolithicFlat", ""))).status == Status::Corrupt);
    CHECK(run(vmdk_test::bytes(vmdk_test::descriptor("monolithicFlat", "RW 1 FLAT \"x\""))).status ==
          Status::Corrupt);
    const auto se = vmdk_test::bytes(vmdk_test::descriptor("seSparse", "RW 1 SESPARSE \"x\""));
    // seSparse is read now (vmdk_sesparse_open): a file without its header is qemu's bad magic.
    CHECK(run(se, {Bytes(512, 0)}).status == Status::Corrupt);
    CHECK(run(Bytes(3, 'K')).status == Status::Corrupt);
}

TEST_CASE("hostile: too many extents, huge flat extents, a descriptor inside an extent") {
    std::string lines;
    for (std::uint32_t i = 0; i < instar::vmdk::VMDK_MAX_EXTENTS; ++i)
        lines += "RW 1 FLAT \"x\" 0\n";
    // A 64 TiB twoGbMaxExtent* image has VMDK_MAX_EXTENTS extents: asked for, one more is too many.
    CHECK(run(vmdk_test::bytes(vmdk_test::descriptor("monolithicFlat", lines))).status == Status::NeedFiles);
    lines += "RW 1 FLAT \"x\" 0\n";
    CHECK(run(vmdk_test::bytes(vmdk_test::descriptor("monolithicFlat", lines))).status == Status::TooLarge);
    const auto big = vmdk_test::bytes(vmdk_test::descriptor("monolithicFlat", "RW 9223372036854775807 FLAT \"x\" 0"));
    CHECK(run(big, {Bytes(512, 0)}).status == Status::TooLarge);
    vmdk_test::Sparse inner;
    inner.capacity = 0;
    inner.embedded = "x";
    const auto desc = vmdk_test::bytes(vmdk_test::descriptor("vmfsSparse", "RW 8 VMFSSPARSE \"x\""));
    CHECK(run(desc, {vmdk_test::sparse(inner)}).status == Status::Unsupported);
}

TEST_CASE("hostile: truncated sparse images and tiny budgets") {
    vmdk_test::Sparse o;
    o.embedded = vmdk_test::descriptor("monolithicSparse", "RW 2048 SPARSE \"m.vmdk\"");
    const auto img = vmdk_test::sparse(o);
    for (std::size_t n : {0ul, 3ul, 4ul, 50ul, 79ul, 512ul, 1000ul, 127ul * 512}) {
        Bytes t(img.begin(), img.begin() + static_cast<long>(n));
        CHECK(run(t).status != Status::Ok);
    }
    CHECK(run(img, {}, 1000).status == Status::NoMemory);
}

TEST_CASE("probe: text descriptors and magics") {
    CHECK(probes(vmdk_test::bytes("# comment\n   \nversion=1\n")));
    CHECK(!probes(vmdk_test::bytes("\nversion=1\n"))); // qemu accepts only space-filled blank lines
    CHECK(probes(vmdk_test::bytes("version=3\r\n")));
    CHECK(!probes(vmdk_test::bytes("version=4\n")));
    CHECK(!probes(vmdk_test::bytes(" x\nversion=1\n")));
    CHECK(probes(vmdk_test::bytes("COWD")));
    CHECK(!probes(Bytes(3, 0)));
    CHECK(!probes(Bytes(4096, 0)));
}
