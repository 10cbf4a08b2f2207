// map's host side: decoding the guest's runs (untrusted) and printing them as qemu-img map does.
#include "ops/map_op.h"

#include "instar/plugin.h"

#include <doctest/doctest.h>

#include <cstring>

using namespace instar;

namespace {

const std::uint32_t V72 = qemu_version(7, 2, 0);
const std::uint32_t V10 = qemu_version(10, 0, 0);

std::vector<std::uint8_t> payload(const std::vector<instar_map_entry>& e) {
    std::vector<std::uint8_t> out(e.size() * sizeof(instar_map_entry));
    std::memcpy(out.data(), e.data(), out.size());
    return out;
}

instar_map_entry run(std::uint64_t start, std::uint64_t length, std::uint32_t flags, std::uint64_t offset = 0,
                     std::uint32_t depth = 0, std::uint32_t file = 0) {
    instar_map_entry e{};
    e.start = start;
    e.length = length;
    e.flags = flags;
    e.offset = offset;
    e.depth = depth;
    e.file = file;
    return e;
}

constexpr std::uint32_t DATA = INSTAR_MAP_DATA | INSTAR_MAP_PRESENT | INSTAR_MAP_OFFSET_VALID;

MapEntry entry(std::uint64_t start, std::uint64_t length, bool data, bool zero, bool present, std::int32_t file = -1,
               std::uint64_t offset = 0) {
    MapEntry m;
    m.start = start;
    m.length = length;
    m.data = data;
    m.zero = zero;
    m.present = present;
    m.has_offset = file >= 0;
    m.offset = offset;
    m.file = file;
    return m;
}

} // namespace

TEST_CASE("decode: the guest's runs are checked before use") {
    const std::vector<std::uint32_t> files{1, 0}; // layer 0 has one other file, layer 1 none
    auto ok = decode_map_records({payload({run(0, 10, DATA, 0, 0, 1), run(10, 5, INSTAR_MAP_ZERO, 0, 1)})}, 0, 15,
                                 files);
    REQUIRE(ok);
    CHECK(ok->count == 2);
    CHECK(ok->end == 15);
    // a gap, an overlap, past the end, unknown flags, a bad depth or file, a torn record
    CHECK(!decode_map_records({payload({run(1, 10, DATA)})}, 0, 15, files));
    CHECK(!decode_map_records({payload({run(0, 10, DATA), run(9, 6, DATA, 10)})}, 0, 15, files));
    CHECK(!decode_map_records({payload({run(0, 16, DATA)})}, 0, 15, files));
    CHECK(!decode_map_records({payload({run(0, 15, 64)})}, 0, 15, files));
    CHECK(!decode_map_records({payload({run(0, 15, INSTAR_MAP_ZERO, 0, 2)})}, 0, 15, files));
    CHECK(!decode_map_records({payload({run(0, 15, DATA, 0, 1, 1)})}, 0, 15, files));
    CHECK(!decode_map_records({payload({run(0, 15, INSTAR_MAP_ZERO, 7)})}, 0, 15, files));
    CHECK(!decode_map_records({payload({run(0, 0, DATA)})}, 0, 15, files));
    auto torn = payload({run(0, 15, DATA)});
    torn.pop_back();
    CHECK(!decode_map_records({torn}, 0, 15, files));
    CHECK(!decode_map_records({{}}, 0, 15, files));
}

TEST_CASE("render: JSON per profile, joining on names, the zero-length run") {
    MapResult r;
    r.files = {"a.qcow2", "b.qcow2"};
    r.entries = {entry(0, 512, true, false, true, 0, 4096), entry(512, 512, true, false, true, 0, 4608),
                 entry(1024, 512, true, false, true, 1, 5120), entry(1536, 512, false, true, false)};
    auto o = render_map(r, true, V72);
    CHECK(o.out == "[{ \"start\": 0, \"length\": 1024, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": true, "
                   "\"offset\": 4096},\n"
                   "{ \"start\": 1024, \"length\": 512, \"depth\": 0, \"present\": true, \"zero\": false, \"data\": "
                   "true, \"offset\": 5120},\n"
                   "{ \"start\": 1536, \"length\": 512, \"depth\": 0, \"present\": false, \"zero\": true, \"data\": "
                   "false}]\n");
    o = render_map(r, true, V10);
    CHECK(o.out.find("\"data\": true, \"compressed\": false, \"offset\": 4096}") != std::string::npos);
    MapResult empty;
    empty.start = 7;
    CHECK(render_map(empty, true, V72).out ==
          "[{ \"start\": 7, \"length\": 0, \"depth\": 0, \"present\": false, \"zero\": false, \"data\": false}]\n");
    CHECK(render_map(empty, false, V72).out == "Offset          Length          Mapped to       File\n");
}

TEST_CASE("render: human output folds zeros and stops at data without an offset") {
    MapResult r;
    r.files = {"a.qcow2"};
    r.entries = {entry(0, 0x10000, true, false, true, 0, 0x50000), entry(0x10000, 0x10000, false, true, true),
                 entry(0x20000, 0x10000, false, false, false), entry(0x30000, 0x10000, true, false, true)};
    auto o = render_map(r, false, V72);
    CHECK(o.out == "Offset          Length          Mapped to       File\n"
                   "0               0x10000         0x50000         a.qcow2\n");
    REQUIRE(o.error);
    CHECK(*o.error == "File contains external, encrypted or compressed clusters.");
    r.entries.pop_back();
    r.walk_error = "Could not read file metadata: Input/output error";
    o = render_map(r, false, V72);
    CHECK(o.error == r.walk_error); // the run being joined when the walk failed is not printed
    CHECK(o.out.find("a.qcow2") != std::string::npos);
}
