// Unit tests for the VHDX metadata table, items and parent locator.
#include "vhdx_test_images.h"

#include "hosted_support.h"
#include "vhdx_metadata.h"
#include "vhdx_parent_locator.h"

#include <doctest/doctest.h>

using namespace instar;
using namespace instar::vhdx;
using instar::guest::Status;

namespace {
const VhdxRegion META{vhdx_test::META_OFFSET, 1 << 20, 0};
Status read(const vhdx_test::Bytes& img, VhdxMetadata* m) {
    hosted::MemoryDevice dev(img);
    hosted::BudgetAllocator alloc(1 << 20);
    return vhdx_metadata_read(dev, alloc, META, m);
}
} // namespace

TEST_CASE("metadata: exact items") {
    vhdx_test::Options o;
    o.size = 12345 * 512;
    o.block_size = 32 << 20;
    o.data_bits = VHDX_PARAMS_LEAVE_BLOCKS_ALLOCATED;
    VhdxMetadata m{};
    REQUIRE(read(vhdx_test::image(o), &m) == Status::Ok);
    CHECK(m.block_size == (32u << 20));
    CHECK(m.data_bits == 1);
    CHECK(m.virtual_disk_size == 12345 * 512);
    CHECK(m.logical_sector_size == 512);
    CHECK(m.physical_sector_size == 4096);
    CHECK(!m.has_parent_locator);
}

TEST_CASE("metadata: qemu's rejections") {
    VhdxMetadata m{};
    vhdx_test::Options o;
    o.block_size = 512 << 10;
    CHECK(read(vhdx_test::image(o), &m) == Status::Corrupt);
    o.block_size = 3 << 20;
    CHECK(read(vhdx_test::image(o), &m) == Status::Corrupt);
    o = {};
    o.logical = 4096;
    CHECK(read(vhdx_test::image(o), &m) == Status::Unsupported);
    o = {};
    o.data_bits = VHDX_PARAMS_HAS_PARENT; // has_parent without a locator
    CHECK(read(vhdx_test::image(o), &m) == Status::Corrupt);
    auto img = vhdx_test::image();
    vhdx_test::le(img, vhdx_test::META_OFFSET + 10, 0xFFFF, 2); // entry count past the table
    CHECK(read(img, &m) == Status::Corrupt);
    img = vhdx_test::image();
    vhdx_test::le(img, vhdx_test::META_OFFSET + 10, 4, 2); // physical sector size item missing
    CHECK(read(img, &m) == Status::Unsupported);
    img = vhdx_test::image();
    vhdx_test::le(img, vhdx_test::META_OFFSET + 32 + 16, 0xFFFFFFF0, 4); // item offset past EOF
    CHECK(read(img, &m) == Status::Corrupt);
    img = vhdx_test::image();
    img[vhdx_test::META_OFFSET] = 'M';
    CHECK(read(img, &m) == Status::Corrupt);
    img.resize(vhdx_test::META_OFFSET + 100);
    CHECK(read(img, &m) == Status::Corrupt);
}

TEST_CASE("parent locator: relative path, bounds") {
    vhdx_test::Options o;
    o.data_bits = VHDX_PARAMS_HAS_PARENT;
    o.parent_relative = "..\\base\\parent.vhdx";
    auto img = vhdx_test::image(o);
    VhdxMetadata m{};
    REQUIRE(read(img, &m) == Status::Ok);
    REQUIRE(m.has_parent_locator);
    CHECK(m.parent_locator.offset == 0x15000);
    const std::uint8_t* item = img.data() + vhdx_test::META_OFFSET + 0x15000;
    char out[4096];
    std::size_t len = 0;
    REQUIRE(vhdx_parent_locator_parse(item, 4096, out, &len) == Status::Ok);
    CHECK(std::string(out, len) == "..\\base\\parent.vhdx");
    CHECK(vhdx_parent_locator_parse(item, 10, out, &len) == Status::Corrupt);
    CHECK(vhdx_parent_locator_parse(item, 60, out, &len) == Status::Corrupt); // entries past the item
}
