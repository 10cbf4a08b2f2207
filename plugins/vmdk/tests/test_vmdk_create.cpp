// Tests of vmdk create(): exact header, grain directory and descriptor bytes (qemu-img's layout),
// extent files, the backing CID, qemu's error messages, and bounded memory at large sizes.
#include "vmdk_bytes.h"
#include "vmdk_create.h"
#include "vmdk_create_reparse.h"
#include "vmdk_sparse_header.h"

#include <doctest/doctest.h>

#include <boost/json/serialize.hpp>

#include <cstring>
#include <map>
#include <string>

using namespace instar;
using guest::Status;
using hosted::CreateParams;
using hosted::MemoryTarget;

namespace {

CreateParams params(std::uint64_t size, std::vector<std::pair<std::string, std::string>> options = {}) {
    CreateParams p;
    p.size = size;
    p.options = std::move(options);
    p.file_name = "e.vmdk";
    return p;
}

std::string text_at(hosted::MemoryOutput& o, std::uint64_t offset, std::size_t max) {
    std::vector<char> buf(max);
    const std::size_t n = std::min<std::uint64_t>(max, o.length() - offset);
    REQUIRE(o.read(offset, buf.data(), n) == Status::Ok);
    return std::string(buf.data(), strnlen(buf.data(), n));
}

vmdk::Vmdk4Header header_of(hosted::MemoryOutput& o) {
    std::uint8_t raw[vmdk::VMDK4_HEADER_BYTES];
    REQUIRE(o.read(0, raw, sizeof raw) == Status::Ok);
    CHECK(vmdk::load_be32(raw) == vmdk::VMDK4_MAGIC);
    CHECK(std::memcmp(raw + 4 + 69, "\n \r\n", 4) == 0);
    vmdk::Vmdk4Header h;
    vmdk::vmdk4_header_decode(raw + 4, &h);
    return h;
}

std::uint32_t le32_at(hosted::MemoryOutput& o, std::uint64_t offset) {
    std::uint8_t b[4];
    REQUIRE(o.read(offset, b, 4) == Status::Ok);
    return vmdk::load_le32(b);
}

std::string specific(const hosted::HostedInfo& r) {
    return boost::json::serialize(hosted::debug_json(r.info).as_object().at("format-specific"));
}

std::string error_of(const CreateParams& p, Status expect) {
    MemoryTarget t(1u << 20);
    CHECK(hosted::run_create(&vmdk::create, p, t) == expect);
    return t.reason_text();
}

// A target that keeps only the bytes written (by offset), so a 64 TiB image costs its metadata.
class SparseOutput final : public guest::BlockDevice {
public:
    std::uint64_t size() const override { return INSTAR_MAX_OUTPUT_SIZE; }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        auto* out = static_cast<std::uint8_t*>(buf);
        std::memset(out, 0, len);
        for (const auto& [at, bytes] : writes_)
            for (std::size_t i = 0; i < bytes.size(); ++i)
                if (at + i >= offset && at + i < offset + len)
                    out[at + i - offset] = bytes[i];
        return Status::Ok;
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        const auto* p = static_cast<const std::uint8_t*>(buf);
        writes_[offset].assign(p, p + len);
        written_ += len;
        length_ = std::max(length_, offset + len);
        return Status::Ok;
    }
    std::uint64_t length_ = 0;
    std::uint64_t written_ = 0;

private:
    std::map<std::uint64_t, std::vector<std::uint8_t>> writes_;
};

class SparseTarget final : public guest::CreateTarget {
public:
    guest::BlockDevice& image() override { return image_; }
    Status set_length(guest::BlockDevice& f, std::uint64_t length, guest::Prealloc) override {
        if (&f != &image_)
            return Status::Invalid;
        image_.length_ = length;
        return Status::Ok;
    }
    Status add_file(const char*, guest::BlockDevice**) override { return Status::Invalid; }
    void reason(const char* text, std::size_t len) override { reason_.assign(text, len); }
    void resolved_unit_size(std::uint64_t) override {}
    SparseOutput image_;
    std::string reason_;
};

// The reference descriptors qemu-img 7.2 and 10.0 write (CID aside).
const char* const DESC_1G = "# Disk DescriptorFile\n"
                            "version=1\n"
                            "CID=4030201\n"
                            "parentCID=ffffffff\n"
                            "createType=\"monolithicSparse\"\n"
                            "\n"
                            "# Extent description\n"
                            "RW 2097152 SPARSE \"e.vmdk\"\n"
                            "\n"
                            "# The Disk Data Base\n"
                            "#DDB\n"
                            "\n"
                            "ddb.virtualHWVersion = \"4\"\n"
                            "ddb.geometry.cylinders = \"2080\"\n"
                            "ddb.geometry.heads = \"16\"\n"
                            "ddb.geometry.sectors = \"63\"\n"
                            "ddb.adapterType = \"ide\"\n"
                            "ddb.toolsVersion = \"2147483647\"\n";

} // namespace

TEST_CASE("create: monolithicSparse 1G is qemu-img's layout") {
    MemoryTarget t;
    REQUIRE(hosted::run_create(&vmdk::create, params(1u << 30), t) == Status::Ok);
    auto& img = t.image_output();
    CHECK(img.length() == 196608); // grain_offset 384 sectors
    const auto h = header_of(img);
    CHECK(h.version == 1);
    CHECK(h.flags == 3); // NL_DETECT | RGD
    CHECK(h.capacity == 2097152);
    CHECK(h.granularity == 128);
    CHECK(h.desc_offset == 1);
    CHECK(h.desc_size == 20);
    CHECK(h.num_gtes_per_gt == 512);
    CHECK(h.rgd_offset == 21);
    CHECK(h.gd_offset == 150);
    CHECK(h.grain_offset == 384);
    CHECK(h.compress_algorithm == 0);
    // 32 grain tables of 4 sectors after each directory.
    CHECK(le32_at(img, 21 * 512) == 22);
    CHECK(le32_at(img, 21 * 512 + 31 * 4) == 22 + 31 * 4);
    CHECK(le32_at(img, 21 * 512 + 32 * 4) == 0);
    CHECK(le32_at(img, 150 * 512) == 151);
    CHECK(le32_at(img, 150 * 512 + 31 * 4) == 151 + 31 * 4);
    CHECK(text_at(img, 512, 10240) == DESC_1G);
    CHECK(t.unit() == 65536);
    CHECK(t.files().empty());
    CHECK(t.fills == std::vector<guest::Prealloc>{guest::Prealloc::Off});

    const auto r = vmdk_create_test::reparse(t);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (1u << 30));
    CHECK(r.info.cluster_size == std::optional<std::uint64_t>(65536));
    CHECK(specific(r) == R"({"type":"vmdk","data":{"create-type":"monolithicSparse","cid":67305985,)"
                         R"("parent-cid":4294967295,"extents":[{"filename":"","format":"","virtual-size":1073741824,)"
                         R"("cluster-size":65536}]}})");
}

TEST_CASE("create: sizes round up to a sector; size 0 has no tables") {
    MemoryTarget t;
    REQUIRE(hosted::run_create(&vmdk::create, params(1000), t) == Status::Ok);
    CHECK(header_of(t.image_output()).capacity == 2);
    CHECK(t.image_output().length() == 65536);
    MemoryTarget z;
    REQUIRE(hosted::run_create(&vmdk::create, params(0), z) == Status::Ok);
    const auto h = header_of(z.image_output());
    CHECK(h.capacity == 0);
    CHECK(h.gd_offset == 21);
    CHECK(h.grain_offset == 128);
    CHECK(text_at(z.image_output(), 512, 10240).find("RW 0 SPARSE \"e.vmdk\"\n") != std::string::npos);
}

TEST_CASE("create: streamOptimized and zeroed_grain header versions and flags") {
    MemoryTarget s;
    REQUIRE(hosted::run_create(&vmdk::create, params(100u << 20, {{"subformat", "streamOptimized"}, {"zeroed_grain", "on"}}), s) ==
            Status::Ok);
    auto h = header_of(s.image_output());
    CHECK(h.version == 3);
    CHECK(h.flags == (3u | 4u | (1u << 16) | (1u << 17)));
    CHECK(h.compress_algorithm == 1);
    CHECK(h.gd_offset == 38); // not at the end: qemu writes no footer on create
    auto r = vmdk_create_test::reparse(s);
    REQUIRE(r.status == Status::Ok);
    CHECK(specific(r).find(R"("create-type":"streamOptimized")") != std::string::npos);
    CHECK(specific(r).find(R"("compressed":true)") != std::string::npos);

    MemoryTarget z;
    REQUIRE(hosted::run_create(&vmdk::create, params(1u << 20, {{"zeroed_grain", "on"}}), z) == Status::Ok);
    h = header_of(z.image_output());
    CHECK(h.version == 2);
    CHECK(h.flags == 7);
}

TEST_CASE("create: twoGbMaxExtentSparse names, sizes and descriptor") {
    MemoryTarget t;
    const std::uint64_t size = (5ull << 30) + 1000;
    REQUIRE(hosted::run_create(&vmdk::create, params(size, {{"subformat", "twoGbMaxExtentSparse"}}), t) == Status::Ok);
    REQUIRE(t.files().size() == 3);
    CHECK(t.files()[0].first == "e-s001.vmdk");
    CHECK(t.files()[2].first == "e-s003.vmdk");
    CHECK(t.files()[0].second->length() == 327680);
    CHECK(header_of(*t.files()[0].second).capacity == 4194304);
    CHECK(header_of(*t.files()[2].second).capacity == 2097154);
    const std::string desc = text_at(t.image_output(), 0, 4096);
    CHECK(t.image_output().length() == desc.size());
    CHECK(desc.find("createType=\"twoGbMaxExtentSparse\"\n\n# Extent description\n"
                    "RW 4194304 SPARSE \"e-s001.vmdk\"\nRW 4194304 SPARSE \"e-s002.vmdk\"\n"
                    "RW 2097154 SPARSE \"e-s003.vmdk\"\n\n# The Disk") != std::string::npos);
    const auto r = vmdk_create_test::reparse(t);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (size + 511) / 512 * 512);
    CHECK(r.info.cluster_size == std::optional<std::uint64_t>(65536));
}

TEST_CASE("create: flat subformats make sparse extent files of the exact length") {
    MemoryTarget t;
    REQUIRE(hosted::run_create(&vmdk::create, params(3ull << 30, {{"subformat", "twoGbMaxExtentFlat"}}), t) == Status::Ok);
    REQUIRE(t.files().size() == 2);
    CHECK(t.files()[0].first == "e-f001.vmdk");
    CHECK(t.files()[0].second->length() == (2ull << 30));
    CHECK(t.files()[1].second->length() == (1ull << 30));
    CHECK(t.files()[1].second->bytes_written() == 4096); // qemu allocate_first_block
    CHECK(t.fills == std::vector<guest::Prealloc>{guest::Prealloc::Off, guest::Prealloc::Off});
    CHECK(t.unit() == 0);
    CHECK(text_at(t.image_output(), 0, 4096).find("RW 4194304 FLAT \"e-f001.vmdk\" 0\nRW 2097152 FLAT \"e-f002.vmdk\" 0\n") !=
          std::string::npos);
    auto r = vmdk_create_test::reparse(t);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (3ull << 30));

    MemoryTarget m;
    auto p = params(64u << 20, {{"subformat", "monolithicFlat"}});
    p.file_name = "noext";
    REQUIRE(hosted::run_create(&vmdk::create, p, m) == Status::Ok);
    REQUIRE(m.files().size() == 1);
    CHECK(m.files()[0].first == "noext-flat");
    CHECK(text_at(m.image_output(), 0, 4096).find("RW 131072 FLAT \"noext-flat\" 0\n") != std::string::npos);
    r = vmdk_create_test::reparse(m);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (64u << 20));
}

TEST_CASE("create: extent names follow qemu's filename_decompose") {
    MemoryTarget t;
    auto p = params(1u << 20, {{"subformat", "twoGbMaxExtentFlat"}});
    p.file_name = "a.b\\c.d.vmdk";
    REQUIRE(hosted::run_create(&vmdk::create, p, t) == Status::Ok);
    CHECK(t.files()[0].first == "a.b\\c.d-f001.vmdk");
    MemoryTarget u;
    p.file_name = "a.b\\c";
    REQUIRE(hosted::run_create(&vmdk::create, p, u) == Status::Ok);
    CHECK(u.files()[0].first == "a.b\\c-f001");
}

TEST_CASE("create: adapter geometry, hwversion, compat6, toolsversion") {
    MemoryTarget t;
    REQUIRE(hosted::run_create(&vmdk::create,
                               params(100ull << 30, {{"adapter_type", "lsilogic"}, {"hwversion", "7"}, {"toolsversion", "99"}}),
                               t) == Status::Ok);
    const std::string d = text_at(t.image_output(), 512, 10240);
    CHECK(d.find("ddb.virtualHWVersion = \"7\"\nddb.geometry.cylinders = \"13054\"\nddb.geometry.heads = \"255\"\n"
                 "ddb.geometry.sectors = \"63\"\nddb.adapterType = \"lsilogic\"\nddb.toolsVersion = \"99\"\n") !=
          std::string::npos);
    MemoryTarget c;
    REQUIRE(hosted::run_create(&vmdk::create, params(1u << 20, {{"compat6", "on"}, {"hwversion", "undefined"}}), c) ==
            Status::Ok);
    CHECK(text_at(c.image_output(), 512, 10240).find("ddb.virtualHWVersion = \"6\"\n") != std::string::npos);
    MemoryTarget l;
    REQUIRE(hosted::run_create(&vmdk::create, params(1u << 30, {{"adapter_type", "legacyESX"}}), l) == Status::Ok);
    CHECK(text_at(l.image_output(), 512, 10240).find("cylinders = \"130\"\nddb.geometry.heads = \"255\"") !=
          std::string::npos);
}

TEST_CASE("create: a backing file's CID becomes parentCID") {
    const std::string base_desc = "# Disk DescriptorFile\nversion=1\nCID=ceaa2b65\nparentCID=ffffffff\n"
                                  "createType=\"monolithicFlat\"\nRW 2048 FLAT \"base-flat.vmdk\" 0\n";
    hosted::MemoryDevice base(std::vector<std::uint8_t>(base_desc.begin(), base_desc.end()));
    auto p = params(1u << 20);
    p.backing_file = "base.vmdk";
    p.backing_fmt = "vmdk";
    p.backing = &base;
    MemoryTarget t;
    REQUIRE(hosted::run_create(&vmdk::create, p, t) == Status::Ok);
    const std::string d = text_at(t.image_output(), 512, 10240);
    CHECK(d.find("CID=4030201\nparentCID=ceaa2b65\ncreateType=\"monolithicSparse\"\nparentFileNameHint=\"base.vmdk\"\n"
                 "# Extent description\n") != std::string::npos);
    const auto r = vmdk_create_test::reparse(t);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.backing_format == std::optional<std::string>("vmdk"));
    CHECK(specific(r).find(R"("parent-cid":3467258725)") != std::string::npos);

    // A sparse backing file: its descriptor window starts at 0x200.
    MemoryTarget sparse_base;
    REQUIRE(hosted::run_create(&vmdk::create, params(1u << 20), sparse_base) == Status::Ok);
    hosted::MemoryDevice base2(sparse_base.image_output().bytes());
    p.backing = &base2;
    MemoryTarget t2;
    REQUIRE(hosted::run_create(&vmdk::create, p, t2) == Status::Ok);
    CHECK(text_at(t2.image_output(), 512, 10240).find("parentCID=4030201\n") != std::string::npos);

    // qemu formats the hint into 4096 bytes.
    p.backing_file = std::string(5000, 'b');
    MemoryTarget t3;
    REQUIRE(hosted::run_create(&vmdk::create, p, t3) == Status::Ok);
    const std::string d3 = text_at(t3.image_output(), 512, 10240);
    CHECK(d3.find("parentFileNameHint=\"" + std::string(4095 - 20, 'b') + "\n") != std::string::npos);
}

TEST_CASE("create: qemu's error messages") {
    CHECK(error_of(params(1u << 20, {{"subformat", "foo"}}), Status::Invalid) == "invalid parameter value: foo");
    CHECK(error_of(params(1u << 20, {{"subformat", "monolithicflat"}}), Status::Invalid) ==
          "invalid parameter value: monolithicflat");
    CHECK(error_of(params(1u << 20, {{"adapter_type", ""}}), Status::Invalid) == "invalid parameter value: ");
    CHECK(error_of(params(1u << 20, {{"subformat", "foo"}, {"adapter_type", "bar"}}), Status::Invalid) ==
          "invalid parameter value: bar");
    CHECK(error_of(params(1u << 20, {{"compat6", "on"}, {"hwversion", "4"}}), Status::Invalid) ==
          "compat6 cannot be enabled with hwversion set");
    CHECK(error_of(params(1u << 20, {{"compat6", "on"}, {"hwversion", ""}}), Status::Invalid) ==
          "compat6 cannot be enabled with hwversion set");
    CHECK(error_of(params(1u << 20, {{"subformat", "monolithicFlat"}, {"zeroed_grain", "on"}}), Status::Unsupported) ==
          "Flat image can't enable zeroed grain");
    CHECK(error_of(params(1u << 20, {{"preallocation", "metadata"}}), Status::Unsupported) ==
          "Unsupported preallocation mode: metadata");
    auto p = params(1u << 20, {{"subformat", "twoGbMaxExtentFlat"}});
    p.backing_file = "b.vmdk";
    CHECK(error_of(p, Status::Unsupported) == "Flat image can't have backing file");
    p.backing_fmt = "qcow2";
    CHECK(error_of(p, Status::Invalid) == "backing_file must be a vmdk image");
    p = params(1u << 20);
    p.backing_file = "b.vmdk";
    CHECK(error_of(p, Status::Invalid).rfind("Could not open 'b.vmdk': ", 0) == 0);
    hosted::MemoryDevice raw(std::vector<std::uint8_t>(4096, 0));
    p.backing = &raw;
    CHECK(error_of(p, Status::Invalid) == "Invalid backing file format: raw. Must be vmdk");
    const std::string no_cid = "# Disk DescriptorFile\nversion=1\n";
    hosted::MemoryDevice bad(std::vector<std::uint8_t>(no_cid.begin(), no_cid.end()));
    p.backing = &bad;
    CHECK(error_of(p, Status::Corrupt) == "Failed to read parent CID");
    p = params(1u << 20, {{"subformat", "twoGbMaxExtentSparse"}});
    p.file_name = std::string(250, 'x') + ".vmdk";
    CHECK(error_of(p, Status::Invalid) == "Could not create '" + std::string(250, 'x') + "-s001.vmdk': File name too long");
    CHECK(error_of(params(65ull << 40, {{"subformat", "twoGbMaxExtentFlat"}}), Status::TooLarge)
              .find("32768 extent files") != std::string::npos);
}

TEST_CASE("create: twoGbMaxExtentSparse 1T makes 512 extents in a small arena") {
    MemoryTarget t(1u << 20);
    auto p = params(1ull << 40, {{"subformat", "twoGbMaxExtentSparse"}});
    p.memory_budget = 96u << 10;
    REQUIRE(hosted::run_create(&vmdk::create, p, t) == Status::Ok);
    REQUIRE(t.files().size() == 512);
    CHECK(t.files()[511].first == "e-s512.vmdk");
    const auto r = vmdk_create_test::reparse(t);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.virtual_size == (1ull << 40));
}

TEST_CASE("create: a 64 TiB monolithicSparse streams its 8 MiB grain directories") {
    SparseTarget t;
    auto p = params(64ull << 40);
    p.memory_budget = 96u << 10; // the 64 KiB scratch buffer and little else
    REQUIRE(hosted::run_create(&vmdk::create, p, t) == Status::Ok);
    const std::uint32_t gd_sectors = 16384; // 2^21 tables * 4 bytes
    CHECK(t.image_.written_ == vmdk::VMDK4_HEADER_BYTES + 2ull * gd_sectors * 512 + 349);
    std::uint8_t raw[vmdk::VMDK4_HEADER_BYTES];
    REQUIRE(t.image_.read(0, raw, sizeof raw) == Status::Ok);
    vmdk::Vmdk4Header h;
    vmdk::vmdk4_header_decode(raw + 4, &h);
    CHECK(h.capacity == (64ull << 40) / 512);
    CHECK(h.gd_offset == 21 + gd_sectors + (1ull << 23));
    CHECK(t.image_.length_ == h.grain_offset * 512);
    std::uint8_t last[4];
    REQUIRE(t.image_.read(h.gd_offset * 512 + ((1u << 21) - 1) * 4, last, 4) == Status::Ok);
    CHECK(vmdk::load_le32(last) == h.gd_offset + gd_sectors + ((1u << 21) - 1) * 4);
    // Too small an arena is refused, not overrun.
    SparseTarget small;
    p.memory_budget = 16u << 10;
    CHECK(hosted::run_create(&vmdk::create, p, small) == Status::NoMemory);
}

TEST_CASE("create: 256 TiB wraps qemu's 32-bit grain count to no tables") {
    SparseTarget t;
    REQUIRE(hosted::run_create(&vmdk::create, params(256ull << 40), t) == Status::Ok);
    std::uint8_t raw[vmdk::VMDK4_HEADER_BYTES];
    REQUIRE(t.image_.read(0, raw, sizeof raw) == Status::Ok);
    vmdk::Vmdk4Header h;
    vmdk::vmdk4_header_decode(raw + 4, &h);
    CHECK(h.capacity == (256ull << 40) / 512);
    CHECK(h.gd_offset == 21);
    CHECK(h.grain_offset == 128);
}
