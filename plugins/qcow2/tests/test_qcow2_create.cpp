// The qcow2 emitter: layouts checked against qemu-img create's (exact offsets and lengths), the
// parameters round-tripped through the plugin's own info(), qemu's error texts, and bounded memory.
#include <doctest/doctest.h>

#include "hosted_create.h"
#include "hosted_support.h"
#include "qcow2_bytes.h"
#include "qcow2_create.h"
#include "qcow2_format.h"

#include <boost/json.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace instar;
using instar::guest::Status;
using Options = std::vector<std::pair<std::string, std::string>>;

namespace {

struct Created {
    Status status;
    std::string reason;
    std::uint64_t unit = 0;
    std::vector<std::uint8_t> bytes;
    std::vector<hosted::Prealloc> fills;
};

Created make(std::uint64_t size, Options opts = {}, std::string backing = {}, std::string backing_fmt = {}) {
    hosted::MemoryTarget target;
    hosted::CreateParams p;
    p.size = size;
    p.options = std::move(opts);
    p.backing_file = std::move(backing);
    p.backing_fmt = std::move(backing_fmt);
    Created c;
    c.status = hosted::run_create(qcow2::create, p, target);
    c.reason = target.reason_text();
    c.unit = target.unit();
    c.fills = target.fills;
    if (c.status == Status::Ok)
        c.bytes = target.image_output().bytes();
    return c;
}

boost::json::object info_of(const std::vector<std::uint8_t>& img) {
    hosted::MemoryDevice dev(img);
    auto r = hosted::run_info(qcow2::info, dev, {}, 8u << 20);
    REQUIRE(r.status == Status::Ok);
    REQUIRE(r.decode_error.empty());
    return hosted::debug_json(r.info).as_object();
}

std::uint64_t be64(const std::vector<std::uint8_t>& b, std::size_t off) { return qcow2::load_be64(b.data() + off); }
std::uint32_t be32(const std::vector<std::uint8_t>& b, std::size_t off) { return qcow2::load_be32(b.data() + off); }

std::string fail_reason(std::uint64_t size, Options opts, std::string backing = {}, std::string fmt = {}) {
    auto c = make(size, std::move(opts), std::move(backing), std::move(fmt));
    CHECK(c.status != Status::Ok);
    return c.reason;
}

// A target that keeps nothing: counts what is written, for sizes no test could hold in memory.
class CountingDevice final : public guest::BlockDevice {
public:
    std::uint64_t size() const override { return INSTAR_MAX_OUTPUT_SIZE; }
    Status read(std::uint64_t, void*, std::size_t) override { return Status::IoError; }
    Status write(std::uint64_t offset, const void*, std::size_t len) override {
        end = std::max<std::uint64_t>(end, offset + len);
        ++writes;
        if (len == 65536)
            ++cluster_writes;
        return Status::Ok;
    }
    std::uint64_t end = 0;
    std::uint64_t writes = 0;
    std::uint64_t cluster_writes = 0;
};

class CountingTarget final : public guest::CreateTarget {
public:
    guest::BlockDevice& image() override { return dev; }
    Status set_length(guest::BlockDevice&, std::uint64_t length, guest::Prealloc) override {
        dev.end = std::max(dev.end, length);
        return Status::Ok;
    }
    Status add_file(const char*, guest::BlockDevice**) override { return Status::Invalid; }
    void reason(const char* text, std::size_t len) override { why.assign(text, len); }
    void resolved_unit_size(std::uint64_t) override {}
    CountingDevice dev;
    std::string why;
};

} // namespace

TEST_CASE("create: default 1 MiB image has qemu's layout") {
    auto c = make(1 << 20);
    REQUIRE(c.status == Status::Ok);
    CHECK(c.unit == 65536);
    CHECK(c.bytes.size() == 196616); // header, refcount table, refcount block, one L1 entry
    CHECK(be32(c.bytes, 0) == 0x514649fb);
    CHECK(be32(c.bytes, 4) == 3);
    CHECK(be32(c.bytes, 20) == 16);           // cluster_bits
    CHECK(be64(c.bytes, 24) == 1 << 20);      // size
    CHECK(be32(c.bytes, 36) == 1);            // l1_size
    CHECK(be64(c.bytes, 40) == 196608);       // l1_table_offset
    CHECK(be64(c.bytes, 48) == 65536);        // refcount_table_offset
    CHECK(be32(c.bytes, 56) == 1);            // refcount_table_clusters
    CHECK(be32(c.bytes, 100) == 112);         // header_length
    CHECK(be32(c.bytes, 112) == 0x6803f857);  // feature name table
    CHECK(be32(c.bytes, 116) == 384);
    CHECK(be64(c.bytes, 65536) == 131072);    // refcount table -> block at cluster 2
    for (std::size_t i = 0; i < 5; ++i)       // clusters 0..3 have refcount 1, 4 is free
        CHECK(c.bytes[131072 + 2 * i + 1] == (i < 4 ? 1 : 0));
    auto j = info_of(c.bytes);
    CHECK(j["virtual-size"] == 1 << 20);
    CHECK(j["cluster-size"] == 65536);
    auto expected = boost::json::parse(R"({"type":"qcow2","data":{"compat":"1.1","extended-l2":false,
        "lazy-refcounts":false,"corrupt":false,"refcount-bits":16,"compression-type":"zlib"}})");
    CHECK(j["format-specific"] == expected);
}

TEST_CASE("create: options round-trip through info") {
    auto c = make(1000, {{"cluster_size", "16384"}, {"extended_l2", "on"}, {"lazy_refcounts", "on"},
                         {"refcount_bits", "64"}, {"compression_type", "zstd"}});
    REQUIRE(c.status == Status::Ok);
    CHECK(c.unit == 16384);
    auto j = info_of(c.bytes);
    CHECK(j["virtual-size"] == 1024); // qemu rounds up to whole sectors
    CHECK(j["cluster-size"] == 16384);
    auto d = j["format-specific"].as_object()["data"].as_object();
    CHECK(d["compat"] == "1.1");
    CHECK(d["extended-l2"] == true);
    CHECK(d["lazy-refcounts"] == true);
    CHECK(d["refcount-bits"] == 64);
    CHECK(d["compression-type"] == "zstd");
    CHECK(be32(c.bytes, 96) == 6); // refcount_order honoured on disk
}

TEST_CASE("create: compat 0.10 writes a version 2 header without a feature table") {
    auto c = make(64 << 20, {{"compat", "0.10"}, {"cluster_size", "512"}});
    REQUIRE(c.status == Status::Ok);
    CHECK(be32(c.bytes, 4) == 2);
    CHECK(be32(c.bytes, 72) == 0); // end of extensions right after the 72-byte header
    auto j = info_of(c.bytes);
    CHECK(j["format-specific"].as_object()["data"].as_object()["compat"] == "0.10");
}

TEST_CASE("create: backing file name and format") {
    auto c = make(10 << 20, {}, "base.raw", "raw");
    REQUIRE(c.status == Status::Ok);
    CHECK(be64(c.bytes, 8) == 528); // after backing format (16), feature table (392) and end (8)
    CHECK(be32(c.bytes, 16) == 8);
    CHECK(be32(c.bytes, 112) == 0xe2792aca);
    CHECK(std::string(c.bytes.begin() + 528, c.bytes.begin() + 536) == "base.raw");
    auto j = info_of(c.bytes);
    CHECK(j["backing-filename-format"] == "raw");
    REQUIRE(j["files"].as_array().size() == 1);
    CHECK(j["files"].as_array()[0].as_object()["name"] == "base.raw");
}

TEST_CASE("create: metadata preallocation maps every cluster behind its L2 table") {
    auto c = make(1 << 20, {{"preallocation", "metadata"}});
    REQUIRE(c.status == Status::Ok);
    CHECK(c.bytes.size() == 1376256); // extended to the end of the last data cluster
    CHECK(be64(c.bytes, 196608) == (0x8000000000000000ull | 262144)); // L1[0] -> L2 at cluster 4
    for (std::uint64_t i = 0; i < 16; ++i)
        CHECK(be64(c.bytes, 262144 + 8 * i) == (0x8000000000000000ull | (327680 + 65536 * i)));
    CHECK(info_of(c.bytes)["virtual-size"] == 1 << 20);
}

TEST_CASE("create: falloc and full move the refcount table and fill the data area through the host") {
    for (const char* mode : {"falloc", "full"}) {
        auto c = make(1 << 20, {{"preallocation", mode}});
        REQUIRE(c.status == Status::Ok);
        CHECK(c.bytes.size() == 1376256);
        CHECK(be64(c.bytes, 48) == 262144); // refcount table after the L1 table
        CHECK(be64(c.bytes, 196608) == (0x8000000000000000ull | 65536)); // L2 in the old table's cluster
        REQUIRE(!c.fills.empty());
        CHECK(c.fills.back() == (mode[1] == 'a' ? hosted::Prealloc::Falloc : hosted::Prealloc::Full));
    }
}

TEST_CASE("create: a 128 GiB image of 512-byte clusters grows the refcount table like qemu") {
    auto c = make(128ull << 30, {{"cluster_size", "512"}});
    REQUIRE(c.status == Status::Ok);
    CHECK(c.bytes.size() == 33691648);
    CHECK(be32(c.bytes, 36) == 4194304);
    CHECK(be64(c.bytes, 40) == 1536);
    CHECK(be64(c.bytes, 48) == 33686528);
    CHECK(be32(c.bytes, 56) == 7);
    CHECK(be64(c.bytes, 512) == 1024); // qemu leaves the abandoned first table in place
}

TEST_CASE("create: qemu's errors") {
    CHECK(fail_reason(1 << 30, {{"cluster_size", "1000"}}) ==
          "Cluster size must be a power of two between 512 and 2048k");
    CHECK(fail_reason(1 << 30, {{"cluster_size", "4194304"}}) ==
          "Cluster size must be a power of two between 512 and 2048k");
    CHECK(fail_reason(1 << 30, {{"refcount_bits", "3"}}) ==
          "Refcount width must be a power of two and may not exceed 64 bits");
    CHECK(fail_reason(1 << 30, {{"extended_l2", "on"}, {"cluster_size", "8192"}}) ==
          "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes");
    CHECK(fail_reason(1 << 30, {{"compat", "0.10"}, {"lazy_refcounts", "on"}}) ==
          "Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)");
    CHECK(fail_reason(1 << 30, {{"compat", "v2"}, {"refcount_bits", "8"}}) ==
          "Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or "
          "greater)");
    CHECK(fail_reason(1 << 30, {{"compat", "v2"}, {"compression_type", "zstd"}}) ==
          "Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or "
          "greater)");
    CHECK(fail_reason(1 << 30, {{"compat", "foo"}}) == "Parameter 'version' does not accept value 'foo'");
    CHECK(fail_reason(1 << 30, {{"preallocation", "metadata"}}, "base", "raw") ==
          "Backing file and preallocation can only be used at the same time if extended_l2 is on");
    CHECK(fail_reason(1 << 30, {}, "", "raw") == "Backing format cannot be used without backing file");
    CHECK(fail_reason(1 << 30, {}, "base", "foo") == "Parameter 'backing-fmt' does not accept value 'foo'");
    CHECK(fail_reason(1ull << 40, {{"cluster_size", "512"}}) ==
          "The image size is too large for file format 'qcow2' (try using a larger cluster size)");
    CHECK(fail_reason(9223372036854775807ull, {}) == "Could not resize image: Image size cannot be negative");
    CHECK(fail_reason(9223372036854775296ull, {}) ==
          "Could not resize image: offset(9223372036854775296) exceeds maximum(9223372035781033984)");
    CHECK(fail_reason(1 << 20, {{"cluster_size", "512"}}, std::string(400, 'b'), "raw") ==
          "Could not assign backing file '" + std::string(400, 'b') + "' with format 'raw': No space left on device");
}

TEST_CASE("create: 1 TiB with metadata preallocation streams in bounded memory") {
    CountingTarget target;
    hosted::CreateParams p;
    p.size = 1ull << 40;
    p.options = {{"preallocation", "metadata"}};
    p.memory_budget = 2u << 20; // 16 Mi L2 entries would need 128 MiB
    REQUIRE(hosted::run_create(qcow2::create, p, target) == Status::Ok);
    CHECK(target.dev.end == 1099679662080ull); // qemu-img check's "Image end offset"
    CHECK(target.dev.cluster_writes >= 2048);  // every L2 table (512 MiB each) written
}
