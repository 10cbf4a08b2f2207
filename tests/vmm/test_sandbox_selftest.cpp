// The self-test operation end to end: crc32 computed by zlib in the guest equals the host's.
#include <zlib.h>

#include <cstring>
#include <sstream>

#include "ops/sandbox_selftest.h"
#include "vmm_test_support.h"

using vmm_test::TempFile;

namespace {
std::vector<unsigned char> disk(std::size_t n, bool mbr, bool gpt) {
    std::vector<unsigned char> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>(i * 2654435761u >> 13);
    // A plausible (empty) MBR: no partition entries, boot signature 0x55AA.
    if (mbr) {
        std::memset(v.data() + 446, 0, 64);
        v[510] = 0x55;
        v[511] = 0xAA;
    } else if (n > 511) {
        v[510] = 0;
    }
    // A plausible GPT header at LBA 1: signature and a 92-byte header size.
    if (gpt) {
        std::memcpy(v.data() + 512, "EFI PART", 8);
        const unsigned char header_size[4] = {92, 0, 0, 0};
        std::memcpy(v.data() + 512 + 12, header_size, 4);
    } else if (n > 519) {
        v[512] = 0;
    }
    return v;
}
std::uint32_t host_crc(const std::vector<unsigned char>& v, std::size_t n) {
    return static_cast<std::uint32_t>(crc32(0, v.data(), static_cast<uInt>(n)));
}
} // namespace

TEST_SUITE("sandbox_selftest") {

TEST_CASE("crc32 from the guest matches zlib on the host; the raw probe sees MBR and GPT") {
    if (!vmm_test::need_kvm()) return;
    struct Case { std::size_t size; bool mbr, gpt; };
    for (Case c : {Case{1 << 20, true, false}, Case{3000, false, true}, Case{100, false, false},
                   Case{65536, false, false}, Case{0, false, false}}) {
        CAPTURE(c.size);
        const auto data = disk(c.size, c.mbr, c.gpt);
        TempFile f(data);
        auto r = instar::ops::run_sandbox_selftest(f.path(), {}, vmm_test::raw_module());
        REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
        const std::size_t n = c.size < instar::ops::SELFTEST_CRC_LIMIT ? c.size : instar::ops::SELFTEST_CRC_LIMIT;
        CHECK(r.value().device_size == c.size);
        CHECK(r.value().bytes_read == n);
        CHECK(r.value().crc32 == host_crc(data, n));
        CHECK(r.value().raw_partition_table == (c.mbr || c.gpt));
    }
}

TEST_CASE("sandbox_selftest prints one JSON line") {
    if (!vmm_test::need_kvm()) return;
    const auto data = disk(4096, true, false);
    TempFile f(data);
    ::setenv("INSTAR_PLUGIN_PATH", vmm_test::raw_module().substr(0, vmm_test::raw_module().rfind('/')).c_str(), 1);
    std::ostringstream out, err;
    CHECK(instar::ops::sandbox_selftest(f.path(), {}, out, err) == 0);
    const std::string start = "{\"device-size\": 4096, \"bytes-read\": 4096, \"crc32\": " +
                              std::to_string(host_crc(data, 4096)) + ", \"raw-partition-table\": true, \"sandbox\": ";
    CHECK(out.str().rfind(start, 0) == 0);
    if (vmm_test::process_mode()) {
        CHECK(out.str().find("\"sandbox\": \"process\", \"confinement\": \"seccomp-strict,") != std::string::npos);
    } else {
        CHECK(out.str() == start + "\"kvm\"}\n");
    }
    CHECK(err.str().empty());
}

TEST_CASE("a missing file is a clean error, exit 1") {
    std::ostringstream out, err;
    CHECK(instar::ops::sandbox_selftest("/nonexistent/disk.img", {}, out, err) == 1);
    CHECK(out.str().empty());
    CHECK(err.str().find("instar: cannot open /nonexistent/disk.img") == 0);
}

} // TEST_SUITE
