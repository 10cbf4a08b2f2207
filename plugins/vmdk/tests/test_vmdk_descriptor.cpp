// Unit tests for the VMDK descriptor parser (qemu's strstr/sscanf rules).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "vmdk_test_images.h"

#include "vmdk_descriptor.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace instar::vmdk;
using instar::guest::Status;

namespace {

Text text(const std::string& s) { return Text{s.data(), s.size()}; }

struct Collected {
    std::vector<std::string> files, types;
    std::vector<std::int64_t> sectors, offsets;
};
Status collect(void* ctx, const ExtentLine& l) {
    auto* c = static_cast<Collected*>(ctx);
    c->files.emplace_back(l.file, l.file_len);
    c->types.emplace_back(l.type_name);
    c->sectors.push_back(l.sectors);
    c->offsets.push_back(l.flat_offset);
    return Status::Ok;
}
Status extents(const std::string& s, Collected* c) { return descriptor_extents(text(s), &collect, c); }

} // namespace

TEST_CASE("descriptor: createType, CID, parentCID, parentFileNameHint") {
    const std::string d = vmdk_test::descriptor("twoGbMaxExtentSparse", "", "parentFileNameHint=\"base.vmdk\"\n");
    const char* v;
    std::size_t n;
    REQUIRE(descriptor_value(text(d), "createType", 128, &v, &n));
    CHECK(std::string(v, n) == "twoGbMaxExtentSparse");
    CHECK(!descriptor_value(text(d), "createType", 10, &v, &n)); // does not fit qemu's buffer
    CHECK(!descriptor_value(text("createType=\"open"), "createType", 128, &v, &n));
    std::uint32_t cid = 0;
    REQUIRE(descriptor_cid(text(d), false, &cid));
    CHECK(cid == 0x12345678);
    REQUIRE(descriptor_cid(text(d), true, &cid));
    CHECK(cid == 0xffffffff);
    CHECK(!descriptor_cid(text("version=1\n"), false, &cid));
    REQUIRE(descriptor_cid(text("CID=-1\n"), false, &cid)); // strtoul wraps a sign
    CHECK(cid == 0xffffffff);
    REQUIRE(descriptor_cid(text("CID=0x1fffffffff\n"), false, &cid)); // truncated to 32 bits
    CHECK(cid == 0xffffffff);
    REQUIRE(descriptor_parent_hint(text(d), &v, &n) == Status::Ok);
    CHECK(std::string(v, n) == "base.vmdk");
    CHECK(descriptor_parent_hint(text("parentFileNameHint=\"open"), &v, &n) == Status::Corrupt);
    CHECK(descriptor_parent_hint(text("parentFileNameHint"), &v, &n) == Status::Corrupt);
    const std::string long_hint = "parentFileNameHint=\"" + std::string(5000, 'a') + "\"";
    CHECK(descriptor_parent_hint(text(long_hint), &v, &n) == Status::Corrupt);
    REQUIRE(descriptor_parent_hint(text("version=1\n"), &v, &n) == Status::Ok);
    CHECK(n == 0);
}

TEST_CASE("descriptor: extent lines") {
    Collected c;
    REQUIRE(extents("RW 4192256 SPARSE \"a-s001.vmdk\"\nRW 2048 FLAT \"b-flat.vmdk\" 0\n"
                    "RDONLY 100 FLAT \"ro.vmdk\" 0\nNOACCESS 100 FLAT \"na.vmdk\" 0\nRW 100 ZERO\n"
                    "RW 0 FLAT \"zero.vmdk\" 0\nRW 100 UNKNOWN \"u.vmdk\"\nRW 8 VMFS \"v.vmdk\"\n"
                    "  RW 16 VMFSSPARSE \"C:\\dir\\x.vmdk\"\r\n",
                    &c) == Status::Ok);
    CHECK(c.files == std::vector<std::string>{"a-s001.vmdk", "b-flat.vmdk", "v.vmdk", "C:\\dir\\x.vmdk"});
    CHECK(c.types == std::vector<std::string>{"SPARSE", "FLAT", "VMFS", "VMFSSPARSE"});
    CHECK(c.sectors == std::vector<std::int64_t>{4192256, 2048, 8, 16});
    CHECK(c.offsets == std::vector<std::int64_t>{-1, 0, 0, -1});
}

TEST_CASE("descriptor: invalid RW lines are Corrupt, as in qemu") {
    Collected c;
    CHECK(extents("RW 100 FLAT \"f.vmdk\"\n", &c) == Status::Corrupt);      // no offset
    CHECK(extents("RW 100 FLAT \"f.vmdk\" -1\n", &c) == Status::Corrupt);   // negative offset
    CHECK(extents("RW 100 VMFS \"f.vmdk\" 5\n", &c) == Status::Corrupt);    // VMFS takes no offset
    CHECK(extents("RW 100 SPARSE \"f.vmdk\" 5\n", &c) == Status::Corrupt);  // SPARSE takes no offset
    // sscanf reads across the line end: a number on the next line is the SPARSE line's offset.
    CHECK(extents("RW 100 SPARSE \"f.vmdk\"\n42\n", &c) == Status::Corrupt);
    c = {};
    // %511[...] stops after 511 characters; the missing closing quote only ends the match early.
    CHECK(extents("RW 100 SPARSE \"" + std::string(600, 'x') + "\"\n", &c) == Status::Ok);
    CHECK(c.files == std::vector<std::string>{std::string(511, 'x')});
    c = {};
    CHECK(extents("RW 99999999999999999999999 FLAT \"f\" 0\n", &c) == Status::Ok); // saturates, then kept
    CHECK(c.sectors.at(0) == INT64_MAX);
}

TEST_CASE("descriptor: blank lines repeat the next extent (qemu's sscanf quirk), in linear time") {
    Collected c;
    REQUIRE(extents("\n\nRW 8 FLAT \"f.vmdk\" 0\n", &c) == Status::Ok);
    CHECK(c.files == std::vector<std::string>{"f.vmdk", "f.vmdk", "f.vmdk"});
    c = {};
    REQUIRE(extents(std::string(2000, '\n') + "RW 8 FLAT \"f.vmdk\" 0\n", &c) == Status::Ok);
    CHECK(c.files.size() == 2001); // vmdk_format caps this at VMDK_MAX_EXTENTS
    std::string spaces;
    for (int i = 0; i < 250000; ++i)
        spaces += " \t\r\n";
    c = {};
    REQUIRE(extents(spaces + "# end\n", &c) == Status::Ok); // quadratic rescanning would take minutes
    CHECK(c.files.empty());
}
