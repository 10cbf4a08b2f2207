// Unit tests for the raw probe (MBR and GPT) and raw info.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "raw_test_images.h"

#include "hosted_support.h"
#include "raw_detect_partition.h"
#include "raw_format.h"

#include <doctest/doctest.h>

using namespace instar;
using instar::guest::Status;
using raw_test::Bytes;

namespace {
bool probes(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    bool m = true;
    REQUIRE(raw::probe(dev, &m) == Status::Ok);
    return m;
}
} // namespace

TEST_CASE("mbr: plausibility") {
    auto d = raw_test::mbr_disk();
    CHECK(raw::mbr_plausible(d.data(), 512));
    CHECK(!raw::mbr_plausible(d.data(), 511));
    auto e = d;
    e[511] = 0;
    CHECK(!raw::mbr_plausible(e.data(), 512));
    e = d;
    e[446 + 16] = 0x12; // boot code where a status byte should be
    CHECK(!raw::mbr_plausible(e.data(), 512));
    e = d;
    raw_test::le32(e, 446 + 12, 0); // a used entry without sectors
    CHECK(!raw::mbr_plausible(e.data(), 512));
    Bytes empty(512, 0); // an empty table (fdisk label, no partitions) is still a table
    empty[510] = 0x55;
    empty[511] = 0xAA;
    CHECK(raw::mbr_plausible(empty.data(), 512));
}

TEST_CASE("gpt: 512 and 4096-byte sectors") {
    auto d = raw_test::gpt_disk(512, 1 << 20, false);
    CHECK(raw::gpt_plausible(d.data() + 512, 20, 512));
    CHECK(probes(d));
    d = raw_test::gpt_disk(4096, 1 << 20, false);
    CHECK(probes(d));
    raw_test::le32(d, 4096 + 12, 8192); // header larger than its sector
    CHECK(!probes(d));
    raw_test::le32(d, 4096 + 12, 91);
    CHECK(!probes(d));
    CHECK(!raw::gpt_plausible(d.data() + 4096, 19, 4096));
}

TEST_CASE("probe: partitioned disks are raw; unpartitioned files, garbage and tiny files are not") {
    CHECK(probes(raw_test::mbr_disk()));
    CHECK(probes(raw_test::gpt_disk(512)));
    CHECK(probes(raw_test::gpt_disk(4096)));
    CHECK(!probes(Bytes{}));
    CHECK(!probes(Bytes(511, 0)));
    CHECK(!probes(Bytes(1 << 20, 0)));
    Bytes fat(4096, 0x90); // a boot sector with code, not a partition table
    fat[510] = 0x55;
    fat[511] = 0xAA;
    CHECK(!probes(fat));
    Bytes qcow2(4096, 0);
    std::memcpy(qcow2.data(), "QFI\xfb", 4);
    CHECK(!probes(qcow2));
}

TEST_CASE("info: format raw, the device size, no cluster size") {
    hosted::MemoryDevice dev(Bytes(12345, 0));
    auto r = hosted::run_info(&raw::info, dev);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.format == "raw");
    CHECK(r.info.virtual_size == 12800); // rounded up to whole sectors, as qemu does
    CHECK(!r.info.cluster_size);
    CHECK(r.info.dirty == std::optional<bool>(false));
    CHECK(r.info.files.empty());
    CHECK(!r.info.specific_type);
}
