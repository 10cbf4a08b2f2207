// Tests of the VHDX emitter: exact bytes of qemu's layout, option rules and messages, bounded
// memory at 64 TiB, and differencing disks read back by the plugin's own info().
#include "hosted_create.h"
#include "hosted_support.h"
#include "vhdx_bat.h"
#include "vhdx_create.h"
#include "vhdx_create_ids.h"
#include "vhdx_create_layout.h"
#include "vhdx_create_params.h"
#include "vhdx_format.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Status;

namespace {

constexpr std::uint64_t MiB = 1u << 20;

std::uint64_t le(const std::vector<std::uint8_t>& b, std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i)
        v |= static_cast<std::uint64_t>(b[at + i]) << (8 * i);
    return v;
}

// A read-only view of a MemoryOutput at its logical length (never materialises a 64 TiB image).
class OutputView final : public guest::BlockDevice {
public:
    explicit OutputView(hosted::MemoryOutput& out) : out_(out) {}
    std::uint64_t size() const override { return out_.length(); }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override { return out_.read(offset, buf, len); }
    Status write(std::uint64_t, const void*, std::size_t) override { return Status::IoError; }

private:
    hosted::MemoryOutput& out_;
};

struct Made {
    Status status;
    std::string reason;
    std::uint64_t unit = 0;
    std::uint64_t length = 0;
    std::vector<std::uint8_t> bytes; // the first `keep` bytes
    hosted::HostedInfo info;
};

Made make(hosted::CreateParams p, std::uint64_t keep = 16 * MiB, std::uint64_t target_budget = 64 * MiB) {
    hosted::MemoryTarget t(target_budget);
    Made m;
    m.status = hosted::run_create(vhdx::create, p, t);
    m.reason = t.reason_text();
    m.unit = t.unit();
    m.length = t.image_output().length();
    if (m.status == Status::Ok) {
        const std::uint64_t n = std::min(keep, m.length);
        m.bytes.resize(n);
        REQUIRE(t.image_output().read(0, m.bytes.data(), n) == Status::Ok);
        OutputView view(t.image_output());
        m.info = hosted::run_info(&vhdx::info, view, {}, 1u << 20);
        for (auto mode : t.fills)
            CHECK(mode == guest::Prealloc::Off);
    }
    return m;
}

hosted::CreateParams params(std::uint64_t size, std::vector<std::pair<std::string, std::string>> opts = {}) {
    hosted::CreateParams p;
    p.size = size;
    p.options = std::move(opts);
    return p;
}

std::string reason_of(std::uint64_t size, std::vector<std::pair<std::string, std::string>> opts) {
    const Made m = make(params(size, std::move(opts)));
    CHECK(m.status != Status::Ok);
    return m.reason;
}

std::string utf16_ascii(const std::vector<std::uint8_t>& b, std::size_t at, std::size_t chars) {
    std::string s;
    for (std::size_t i = 0; i < chars; ++i)
        s += static_cast<char>(b[at + 2 * i]);
    return s;
}

} // namespace

TEST_CASE("create: a 64 MiB dynamic disk has qemu-img's layout") {
    const Made m = make(params(64 * MiB));
    REQUIRE(m.status == Status::Ok);
    CHECK(m.unit == 8 * MiB);
    CHECK(m.length == 8 * MiB); // payload would start 5 MiB past the 1 MiB BAT at 2 MiB
    const auto& b = m.bytes;
    CHECK(std::memcmp(b.data(), "vhdxfile", 8) == 0);
    CHECK(utf16_ascii(b, 8, 12) == "QEMU v10.0.0");
    CHECK(le(b, 8 + 24, 2) == 0); // no terminator
    // Headers: sequence numbers n and n + 1, log at 1 MiB of 1 MiB, version 1, log version 0.
    const std::uint64_t seq = le(b, 64 * 1024 + 8, 8);
    CHECK(seq <= UINT32_MAX);
    CHECK(le(b, 128 * 1024 + 8, 8) == seq + 1);
    for (std::size_t h : {64 * 1024, 128 * 1024}) {
        CHECK(std::memcmp(b.data() + h, "head", 4) == 0);
        CHECK(le(b, h + 64, 2) == 0);
        CHECK(le(b, h + 66, 2) == 1);
        CHECK(le(b, h + 68, 4) == MiB);
        CHECK(le(b, h + 72, 8) == MiB);
        CHECK(std::memcmp(b.data() + h + 16, b.data() + 64 * 1024 + 16, 32) == 0); // same GUIDs
        CHECK((b[h + 16 + 6] >> 4) == 4);                                         // version 4
        CHECK((b[h + 16 + 8] & 0xC0) == 0x80);
    }
    // Both region tables, identical: BAT at 2 MiB (1 MiB), metadata at 3 MiB (1 MiB), not required.
    CHECK(std::memcmp(b.data() + 192 * 1024, b.data() + 256 * 1024, 64 * 1024) == 0);
    CHECK(le(b, 192 * 1024 + 8, 4) == 2);
    CHECK(le(b, 192 * 1024 + 32, 8) == 2 * MiB);
    CHECK(le(b, 192 * 1024 + 40, 4) == MiB);
    CHECK(le(b, 192 * 1024 + 44, 4) == 0);
    CHECK(le(b, 192 * 1024 + 64, 8) == 3 * MiB);
    // BAT: 8 ZERO entries (block_state_zero=on), then zeros.
    for (int i = 0; i < 8; ++i)
        CHECK(le(b, 2 * MiB + 8 * i, 8) == vhdx::PAYLOAD_BLOCK_ZERO);
    CHECK(le(b, 2 * MiB + 64, 8) == 0);
    // Metadata: five entries, items from 64 KiB.
    const std::size_t md = 3 * MiB;
    CHECK(std::memcmp(b.data() + md, "metadata", 8) == 0);
    CHECK(le(b, md + 10, 2) == 5);
    const std::uint32_t offsets[5] = {0, 8, 16, 32, 36}, lengths[5] = {8, 8, 16, 4, 4}, flags[5] = {4, 6, 6, 6, 6};
    for (int i = 0; i < 5; ++i) {
        CHECK(le(b, md + 32 + 32 * i + 16, 4) == 64 * 1024 + offsets[i]);
        CHECK(le(b, md + 32 + 32 * i + 20, 4) == lengths[i]);
        CHECK(le(b, md + 32 + 32 * i + 24, 4) == flags[i]);
    }
    CHECK(le(b, md + 64 * 1024, 4) == 8 * MiB);
    CHECK(le(b, md + 64 * 1024 + 4, 4) == 0);
    CHECK(le(b, md + 64 * 1024 + 8, 8) == 64 * MiB);
    CHECK(le(b, md + 64 * 1024 + 32, 4) == 512);
    CHECK(le(b, md + 64 * 1024 + 36, 4) == 512);
    // The plugin's own reader agrees.
    REQUIRE(m.info.status == Status::Ok);
    CHECK(m.info.info.format == "vhdx");
    CHECK(m.info.info.virtual_size == 64 * MiB);
    CHECK(m.info.info.cluster_size == std::optional<std::uint64_t>(8 * MiB));
    CHECK(m.info.info.files.empty());
}

TEST_CASE("create: the creator names the profile's qemu version") {
    auto p = params(MiB);
    p.qemu_version = 70222;
    const Made m = make(p);
    REQUIRE(m.status == Status::Ok);
    CHECK(utf16_ascii(m.bytes, 8, 12) == "QEMU v7.2.22");
    CHECK(le(m.bytes, 32, 2) == 0);
}

TEST_CASE("create: fixed disks") {
    SUBCASE("block_state_zero=off: every block fully present, the file as long as the payload") {
        const Made m = make(params(20 * MiB, {{"subformat", "fixed"}, {"block_state_zero", "off"}}));
        REQUIRE(m.status == Status::Ok);
        // BAT at 2 MiB (1 MiB), metadata at 3 MiB, payload from 8 MiB.
        CHECK(m.length == 8 * MiB + 20 * MiB);
        for (int i = 0; i < 3; ++i)
            CHECK(le(m.bytes, 2 * MiB + 8 * i, 8) == ((8 * MiB + i * 8 * MiB) | vhdx::PAYLOAD_BLOCK_FULLY_PRESENT));
        CHECK(le(m.bytes, 2 * MiB + 24, 8) == 0);
        CHECK(le(m.bytes, 3 * MiB + 64 * 1024 + 4, 4) == 1); // leave blocks allocated
        REQUIRE(m.info.status == Status::Ok);
        CHECK(m.info.info.virtual_size == 20 * MiB);
    }
    SUBCASE("block_state_zero=on (the default) wins over fixed, as in qemu") {
        const Made m = make(params(20 * MiB, {{"subformat", "fixed"}}));
        REQUIRE(m.status == Status::Ok);
        CHECK(m.length == 28 * MiB);
        CHECK(le(m.bytes, 2 * MiB, 8) == vhdx::PAYLOAD_BLOCK_ZERO);
        CHECK(le(m.bytes, 3 * MiB + 64 * 1024 + 4, 4) == 1);
    }
}

TEST_CASE("create: dynamic with block_state_zero=off leaves the BAT a hole") {
    hosted::MemoryTarget t;
    REQUIRE(hosted::run_create(vhdx::create, params(64 * MiB, {{"block_state_zero", "off"}}), t) == Status::Ok);
    CHECK(t.image_output().length() == 8 * MiB);
    const auto bytes = t.image_output().bytes();
    CHECK(std::all_of(bytes.begin() + 2 * MiB, bytes.begin() + 3 * MiB, [](std::uint8_t x) { return x == 0; }));
    // Only the file identifier, headers, region tables and metadata were written.
    CHECK(t.image_output().bytes_written() == 32 + 2 * 4096 + 2 * 65536 + 65536 + 40);
}

TEST_CASE("create: qemu's automatic block size and rounding") {
    CHECK(vhdx::vhdx_auto_block_size(1ull << 30) == 8 * MiB);
    CHECK(vhdx::vhdx_auto_block_size((1ull << 30) + 512) == 16 * MiB);
    CHECK(vhdx::vhdx_auto_block_size(100ull << 30) == 16 * MiB);
    CHECK(vhdx::vhdx_auto_block_size((100ull << 30) + 512) == 32 * MiB);
    CHECK(vhdx::vhdx_auto_block_size(32ull << 40) == 32 * MiB);
    CHECK(vhdx::vhdx_auto_block_size((32ull << 40) + 512) == 64 * MiB);
    CHECK(make(params(64 * MiB, {{"block_size", "1000"}})).unit == MiB);
    CHECK(make(params(64 * MiB, {{"block_size", "536870912"}})).unit == 256 * MiB);
    CHECK(make(params(64 * MiB, {{"block_size", "0"}})).unit == 8 * MiB);
    const Made m = make(params(1000, {{"log_size", "1000"}}));
    REQUIRE(m.status == Status::Ok);
    CHECK(m.info.info.virtual_size == 1024);
    CHECK(le(m.bytes, 64 * 1024 + 68, 4) == MiB);
    // log_size=3M: BAT at 4 MiB.
    const Made l = make(params(MiB, {{"log_size", std::to_string(3 * MiB)}}));
    CHECK(le(l.bytes, 192 * 1024 + 32, 8) == 4 * MiB);
}

TEST_CASE("create: qemu's messages for refused values") {
    CHECK(reason_of((64ull << 40) + 1, {}) == "Image size too large; max of 64TB");
    CHECK(reason_of(MiB, {{"log_size", "0"}}) == "Log size must be a multiple of 1 MB");
    CHECK(reason_of(MiB, {{"log_size", "18446744073709551615"}}) == "Log size must be a multiple of 1 MB");
    CHECK(reason_of(MiB, {{"log_size", std::to_string(4096 * MiB)}}) == "Log size must be smaller than 4 GB");
    CHECK(reason_of(MiB, {{"block_size", std::to_string(3 * MiB)}}) == "Block size must be a power of two");
    CHECK(reason_of(MiB, {{"subformat", "differencing"}}) == "Parameter 'subformat' does not accept value 'differencing'");
    // The size check comes first, as in vhdx_co_create.
    CHECK(reason_of(65ull << 40, {{"log_size", "0"}}) == "Image size too large; max of 64TB");
    // A 0-byte disk's BAT entry count wraps; with 256 MiB blocks qemu's one 2 GiB write fails.
    CHECK(reason_of(0, {{"block_size", std::to_string(256 * MiB)}}) == "Failed to write the BAT: Input/output error");
    // Without the write (block_state_zero=off) qemu creates it: a 2 GiB BAT hole.
    vhdx::VhdxCreateParams p{0, 256 * MiB, MiB, false, false, false};
    vhdx::VhdxLayout l{};
    vhdx::vhdx_create_layout(p, &l);
    CHECK(!l.write_bat);
    CHECK(l.bat_length == 2048 * MiB);
    CHECK(l.file_length == 2 * MiB + 2048 * MiB + 5 * MiB);
}

TEST_CASE("create: 64 TiB disks in bounded memory") {
    SUBCASE("automatic 64 MiB blocks") {
        auto p = params(64ull << 40);
        p.memory_budget = 2 * MiB;
        const Made m = make(p, 1);
        REQUIRE(m.status == Status::Ok);
        CHECK(m.unit == 64 * MiB);
        CHECK(m.length == 16 * MiB);
        REQUIRE(m.info.status == Status::Ok);
        CHECK(m.info.info.virtual_size == (64ull << 40));
    }
    SUBCASE("fixed, 1 MiB blocks, every entry present: a 33 MiB BAT streamed in 1 MiB chunks") {
        // 4 TiB rather than 64 TiB (a 513 MiB BAT) only to keep the test's own buffer small.
        auto p = params(4ull << 40, {{"block_size", std::to_string(MiB)}, {"subformat", "fixed"},
                                     {"block_state_zero", "off"}});
        p.memory_budget = 2 * MiB;
        hosted::MemoryTarget t(64 * MiB);
        REQUIRE(hosted::run_create(vhdx::create, p, t) == Status::Ok);
        const std::uint64_t data = 2 * MiB + 33 * MiB + 5 * MiB;
        CHECK(t.image_output().length() == data + (4ull << 40));
        // The last payload entry: block 2^22 - 1 at index 2^22 - 1 + (2^22 - 1) / 4096.
        const std::uint64_t last = (1ull << 22) - 1, index = last + last / 4096;
        std::uint8_t e[8];
        REQUIRE(t.image_output().read(2 * MiB + 8 * index, e, 8) == Status::Ok);
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i)
            v |= static_cast<std::uint64_t>(e[i]) << (8 * i);
        CHECK(v == ((data + last * MiB) | vhdx::PAYLOAD_BLOCK_FULLY_PRESENT));
        // The sector bitmap entry before it stays zero.
        REQUIRE(t.image_output().read(2 * MiB + 8 * (index - 1 - (last % 4096)), e, 8) == Status::Ok);
        CHECK(std::all_of(e, e + 8, [](std::uint8_t x) { return x == 0; }));
        OutputView view(t.image_output());
        const auto r = hosted::run_info(&vhdx::info, view, {}, 1u << 20);
        REQUIRE(r.status == Status::Ok);
        CHECK(r.info.virtual_size == (4ull << 40));
    }
    SUBCASE("a budget too small for one BAT chunk is refused, not overrun") {
        auto p = params(64ull << 40);
        p.memory_budget = 512 * 1024;
        const Made m = make(p, 1);
        CHECK(m.status == Status::NoMemory);
        CHECK(m.reason == "Out of memory");
    }
}

TEST_CASE("create: identities differ between random inputs and are version 4 GUIDs") {
    std::uint8_t r1[32] = {}, r2[32] = {};
    r2[31] = 1;
    vhdx::VhdxCreateIds a{}, b{};
    vhdx::vhdx_create_ids(r1, &a);
    vhdx::vhdx_create_ids(r2, &b);
    CHECK(std::memcmp(a.page83_guid, b.page83_guid, 16) != 0);
    CHECK(a.sequence_number != b.sequence_number);
    for (const auto* g : {a.file_write_guid, a.data_write_guid, a.page83_guid}) {
        CHECK((g[6] >> 4) == 4);
        CHECK((g[8] & 0xC0) == 0x80);
    }
}

namespace {

// A parent made by the emitter itself, and a differencing child of it.
struct Family {
    std::vector<std::uint8_t> parent;
    Made child;
};

Family family(const std::string& name, std::uint64_t size = 64 * MiB,
              std::vector<std::pair<std::string, std::string>> opts = {}) {
    hosted::MemoryTarget t;
    auto pp = params(64 * MiB);
    pp.random[0] = 0x77;
    REQUIRE(hosted::run_create(vhdx::create, pp, t) == Status::Ok);
    Family f{t.image_output().bytes(), {}};
    hosted::MemoryDevice parent(f.parent);
    auto cp = params(size, std::move(opts));
    cp.backing_file = name;
    cp.backing_fmt = "vhdx";
    cp.backing = &parent;
    f.child = make(cp);
    return f;
}

} // namespace

TEST_CASE("create: a differencing disk names its parent and links to its DataWriteGuid") {
    const Family f = family("base.vhdx");
    const Made& m = f.child;
    REQUIRE(m.status == Status::Ok);
    REQUIRE(m.info.status == Status::Ok);
    REQUIRE(m.info.info.files.size() == 1);
    CHECK(m.info.info.files[0].role == guest::FileRole::Backing);
    CHECK(m.info.info.files[0].name == "base.vhdx");
    CHECK(m.info.info.virtual_size == 64 * MiB);
    const auto& b = m.bytes;
    // Differencing BAT: 1 chunk of 512 payload entries + 1 bitmap entry, 1 MiB region, all zero (a hole).
    CHECK(le(b, 192 * 1024 + 40, 4) == MiB);
    CHECK(std::all_of(b.begin() + 2 * MiB, b.begin() + 3 * MiB, [](std::uint8_t x) { return x == 0; }));
    const std::size_t md = 3 * MiB;
    CHECK(le(b, md + 10, 2) == 6);
    CHECK(le(b, md + 64 * 1024 + 4, 4) == 2); // has parent
    // The sixth entry: the parent locator right after the five items, required.
    const std::size_t e = md + 32 + 5 * 32;
    CHECK(le(b, e, 4) == 0xa8d35f2d);
    CHECK(le(b, e + 16, 4) == 64 * 1024 + 40);
    CHECK(le(b, e + 24, 4) == 4);
    const std::size_t loc = md + 64 * 1024 + 40;
    CHECK(le(b, loc, 4) == 0xb04aefb7); // locator type VHDX
    CHECK(le(b, loc + 18, 2) == 2);
    // parent_linkage = the parent's DataWriteGuid (header 2 is current), in registry form.
    const std::size_t vo = loc + le(b, loc + 20 + 4, 4);
    CHECK(le(b, loc + 20 + 10, 2) == 76);
    const std::string linkage = utf16_ascii(b, vo, 38);
    char want[40];
    const auto& p = f.parent;
    const std::size_t g = 128 * 1024 + 32;
    std::snprintf(want, sizeof want, "{%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x}",
                  static_cast<unsigned>(le(p, g, 4)), static_cast<unsigned>(le(p, g + 4, 2)),
                  static_cast<unsigned>(le(p, g + 6, 2)), p[g + 8], p[g + 9], p[g + 10], p[g + 11], p[g + 12],
                  p[g + 13], p[g + 14], p[g + 15]);
    CHECK(linkage == want);
}

TEST_CASE("create: differencing BAT size follows the sector bitmap interleave") {
    // 1 GiB with 1 MiB blocks: chunk ratio 4096, 1024 payload blocks: one chunk, 4097 entries.
    const Family f = family("p.vhdx", 1ull << 30, {{"block_size", std::to_string(MiB)}});
    REQUIRE(f.child.status == Status::Ok);
    CHECK(vhdx::vhdx_bat_entries_differencing(1ull << 30, MiB) == 4097);
    CHECK(vhdx::vhdx_bat_entries_differencing(4097 * MiB, MiB) == 2 * 4097);
    CHECK(le(f.child.bytes, 192 * 1024 + 40, 4) == MiB);
    REQUIRE(f.child.info.status == Status::Ok);
    CHECK(f.child.info.info.files.at(0).name == "p.vhdx");
}

TEST_CASE("create: a differencing disk keeps the parent name verbatim, non-ASCII included") {
    const Family f = family("../dir/bäse \xff.vhdx");
    REQUIRE(f.child.status == Status::Ok);
    REQUIRE(f.child.info.info.files.size() == 1);
    CHECK(f.child.info.info.files[0].name == "../dir/bäse \xef\xbf\xbd.vhdx"); // invalid UTF-8 became U+FFFD
}

TEST_CASE("create: differencing refusals") {
    hosted::MemoryDevice garbage(std::vector<std::uint8_t>(1 * MiB, 0x5a));
    auto cp = params(64 * MiB);
    cp.backing_file = "base.img";
    cp.backing = &garbage;
    CHECK(make(cp).reason == "A differencing VHDX needs a VHDX parent; 'base.img' has no valid VHDX header");
    cp.backing_fmt = "qcow2";
    CHECK(make(cp).reason == "A differencing VHDX needs a VHDX parent; backing format 'qcow2' is not supported");
    cp.backing_fmt.clear();
    cp.backing = nullptr;
    CHECK(make(cp).reason ==
          "A differencing VHDX records its parent's DataWriteGuid: the parent must be readable (-u is not supported)");
    cp.options = {{"subformat", "fixed"}};
    CHECK(make(cp).reason == "A differencing VHDX cannot be fixed (subformat=fixed with a backing file)");
    cp.options.clear();
    hosted::MemoryTarget t;
    auto pp = params(MiB);
    REQUIRE(hosted::run_create(vhdx::create, pp, t) == Status::Ok);
    hosted::MemoryDevice parent(t.image_output().bytes());
    cp.backing = &parent;
    cp.backing_file = std::string(40000, 'a'); // 80000 bytes of UTF-16
    CHECK(make(cp).reason == "Backing file name too long for a VHDX parent locator (64 KiB)");
}
