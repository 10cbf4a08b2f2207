// Guest RAM: range checks are overflow-safe; guard pages surround the mapping.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vmm/guest_memory.h"
#include "vmm_test_support.h"

using instar::vmm::GuestMemory;

TEST_SUITE("guest_memory") {

TEST_CASE("map_file() maps file pages privately into anonymous RAM only, page-aligned and inside it") {
    const std::string path = "/tmp/instar-vmm-test-map-file";
    {
        std::ofstream f(path, std::ios::binary);
        for (int i = 0; i < 3 * 4096; ++i) f.put(static_cast<char>(i / 4096 + 1));
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    auto mem = GuestMemory::create(16ull << 20, false);
    REQUIRE(mem.ok());
    GuestMemory& m = mem.value();
    REQUIRE(m.map_file(0x10000, fd, 4096, 8192) == GuestMemory::MapResult::Mapped); // the file's pages 2 and 3
    CHECK(m.range(0x10000, 1)[0] == 2);
    CHECK(m.range(0x11fff, 1)[0] == 3);
    CHECK(m.range(0x12000, 1)[0] == 0); // RAM after the mapping is untouched
    m.range(0x10000, 1)[0] = 9;          // private: the file keeps its byte
    char b = 0;
    CHECK(::pread(fd, &b, 1, 4096) == 1);
    CHECK(b == 2);
    CHECK(m.map_file(0x10001, fd, 0, 4096) == GuestMemory::MapResult::Declined); // unaligned
    CHECK(m.map_file(0x10000, fd, 1, 4096) == GuestMemory::MapResult::Declined);
    CHECK(m.map_file(0x10000, fd, 0, 100) == GuestMemory::MapResult::Declined);
    CHECK(m.map_file(m.size() - 4096, fd, 0, 8192) == GuestMemory::MapResult::Declined); // past the end of RAM
    CHECK(m.map_file(0x10000, -1, 0, 4096) == GuestMemory::MapResult::Declined);
    CHECK(m.range(0x10000, 1)[0] == 9); // refusals change nothing
    // A mapping the kernel refuses (a write-only descriptor): declined, the range fresh RAM again.
    const int wo = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(wo >= 0);
    CHECK(m.map_file(0x20000, wo, 0, 4096) == GuestMemory::MapResult::Declined);
    ::close(wo);
    CHECK(m.range(0x20000, 1)[0] == 0);
    m.range(0x20fff, 1)[0] = 5; // and writable
    auto shared = GuestMemory::create_shared(4ull << 20);
    REQUIRE(shared.ok());
    CHECK(shared.value().map_file(0x10000, fd, 0, 4096) == GuestMemory::MapResult::Declined); // a memfd's pages are the guest's
    ::close(fd);
    std::remove(path.c_str());
}

TEST_CASE("range() accepts exactly the ranges inside RAM") {
    auto mem = GuestMemory::create(16ull << 20);
    REQUIRE(mem.ok());
    GuestMemory& m = mem.value();
    CHECK(m.range(0, m.size()) == m.host_base());
    CHECK(m.range(m.size(), 0) == m.host_base() + m.size());
    CHECK(m.range(m.size() - 8, 8) != nullptr);
    CHECK(m.range(m.size() - 8, 9) == nullptr);
    CHECK(m.range(m.size() + 1, 0) == nullptr);
    CHECK(m.range(0x1000, ~0ull - 0x800) == nullptr);     // would wrap around
    CHECK(m.range(~0ull - 0xfff, 0x1000) == nullptr);     // near 2^64
    CHECK(m.range(0xFFFFFFFFFFFFF000ull, 4096) == nullptr);
}

TEST_CASE("guard pages on both sides are PROT_NONE and RAM is 2 MiB aligned") {
    auto mem = GuestMemory::create(16ull << 20);
    REQUIRE(mem.ok());
    GuestMemory& m = mem.value();
    CHECK(reinterpret_cast<std::uintptr_t>(m.host_base()) % INSTAR_LARGE_PAGE_SIZE == 0);
    // The guards are mapped (mincore succeeds, so nothing else can be mapped there) but not
    // accessible: the kernel refuses to read them for write(2) with EFAULT.
    unsigned char vec = 0;
    CHECK(::mincore(m.host_base() - 4096, 4096, &vec) == 0); // the guard is mapped (reserved)...
    CHECK(::mincore(m.host_base() + m.size(), 4096, &vec) == 0);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    CHECK(::write(fds[1], m.host_base() - 4096, 16) == -1);
    CHECK(errno == EFAULT);
    CHECK(::write(fds[1], m.host_base() + m.size(), 16) == -1);
    CHECK(errno == EFAULT);
    CHECK(::write(fds[1], m.host_base(), 16) == 16);
    ::close(fds[0]);
    ::close(fds[1]);
}

// VmFlags of the mapping containing `p` in /proc/self/smaps ("" when not found).
std::string vm_flags_of(const void* p) {
    std::ifstream smaps("/proc/self/smaps");
    const auto addr = reinterpret_cast<std::uintptr_t>(p);
    bool inside = false;
    for (std::string line; std::getline(smaps, line);) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
            inside = addr >= lo && addr < hi;
        } else if (inside && line.rfind("VmFlags:", 0) == 0) {
            return line;
        }
    }
    return "";
}

TEST_CASE("huge pages are advised only when asked for") {
    auto huge = GuestMemory::create(16ull << 20, true);
    auto small = GuestMemory::create(16ull << 20, false);
    REQUIRE(huge.ok());
    REQUIRE(small.ok());
    CHECK(huge.value().huge_pages());
    CHECK_FALSE(small.value().huge_pages());
    // Not the first 2 MiB: the guest maps them with 4 KiB pages, and a huge page there would be
    // cleared whole for the few pages the boot touches.
    CHECK(vm_flags_of(huge.value().host_base() + INSTAR_LARGE_PAGE_SIZE).find(" hg") != std::string::npos);
    const std::string low = vm_flags_of(huge.value().host_base());
    CHECK(low.find(" rd") != std::string::npos);
    CHECK(low.find(" hg") == std::string::npos);
    const std::string flags = vm_flags_of(small.value().host_base());
    CHECK(flags.find(" rd") != std::string::npos); // found the mapping
    CHECK(flags.find(" hg") == std::string::npos);
}

TEST_CASE("shared memory (the process sandbox's) is the memfd's bytes, sized to RAM") {
    auto mem = GuestMemory::create_shared(16ull << 20);
    REQUIRE(mem.ok());
    GuestMemory& m = mem.value();
    REQUIRE(m.memfd() >= 0);
    CHECK(::lseek(m.memfd(), 0, SEEK_END) == static_cast<off_t>(16ull << 20));
    std::memcpy(m.range(0x200000, 5), "hello", 5);
    char back[5] = {};
    CHECK(::pread(m.memfd(), back, 5, 0x200000) == 5);
    CHECK(std::memcmp(back, "hello", 5) == 0);
    CHECK(GuestMemory::create(16ull << 20).value().memfd() == -1);
    CHECK_FALSE(GuestMemory::create_shared(0).ok());
}

TEST_CASE("prepare_host_write() makes the range's pages present once and changes no byte") {
    auto mem = GuestMemory::create_shared(16ull << 20);
    REQUIRE(mem.ok());
    GuestMemory& m = mem.value();
    const std::uint64_t page = 4096;
    auto resident = [&](std::uint64_t gpa, std::uint64_t pages) {
        std::vector<unsigned char> v(pages);
        REQUIRE(::mincore(m.host_base() + gpa, pages * page, v.data()) == 0);
        std::uint64_t n = 0;
        for (unsigned char c : v)
            n += c & 1;
        return n;
    };
    m.load(0x300010, "abc", 3); // bytes already there stay
    CHECK(resident(0x300000, 16) <= 1);
    m.prepare_host_write(0x300010, 5 * page); // unaligned: six pages touched
    CHECK(resident(0x300000, 6) == 6);
    CHECK(resident(0x306000, 10) == 0);
    CHECK(std::memcmp(m.range(0x300010, 3), "abc", 3) == 0);
    CHECK(*m.range(0x305000, 1) == 0);
    m.prepare_host_write(0x302000, 8 * page); // the present ones are skipped, the rest populated
    CHECK(resident(0x300000, 10) == 10);
    CHECK(resident(0x30a000, 6) == 0);
    m.prepare_host_write(0, 0); // nothing
    m.prepare_host_write((16ull << 20) - page, page); // the last page
    CHECK(resident((16ull << 20) - page, 1) == 1);
    // Anonymous RAM advised onto huge pages is left to its large-page faults.
    auto huge = GuestMemory::create(16ull << 20, true);
    REQUIRE(huge.ok());
    huge.value().prepare_host_write(0x200000, 4 * page);
    std::vector<unsigned char> v(4);
    REQUIRE(::mincore(huge.value().host_base() + 0x200000, 4 * page, v.data()) == 0);
    CHECK((v[0] & 1) == 0);
}

TEST_CASE("sizes outside the rules are refused") {
    CHECK_FALSE(GuestMemory::create(0).ok());
    CHECK_FALSE(GuestMemory::create((16ull << 20) + 4096).ok());
    CHECK_FALSE(GuestMemory::create(INSTAR_MAX_GUEST_MEMORY + INSTAR_LARGE_PAGE_SIZE).ok());
    CHECK_FALSE(GuestMemory::create(32ull << 20, true, 16ull << 20).ok());          // a limit below the size
    CHECK_FALSE(GuestMemory::create(16ull << 20, true, (32ull << 20) + 4096).ok()); // not 2 MiB steps
    CHECK_FALSE(GuestMemory::create(16ull << 20, true, INSTAR_MAX_GUEST_MEMORY + INSTAR_LARGE_PAGE_SIZE).ok());
}

TEST_CASE("grow() opens RAM up to the limit, behind the old, and no further") {
    auto mem = GuestMemory::create(16ull << 20, false, 64ull << 20);
    REQUIRE(mem.ok());
    GuestMemory& m = mem.value();
    CHECK(m.size() == (16ull << 20));
    CHECK(m.limit() == (64ull << 20));
    CHECK(m.range((16ull << 20) - 8, 16) == nullptr); // not RAM yet
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    CHECK(::write(fds[1], m.host_base() + (16ull << 20), 16) == -1); // reserved, not accessible
    CHECK(errno == EFAULT);
    m.prepare_host_write(0, 4096); // the present-page bitmap exists before the growth
    CHECK_FALSE(m.grow((32ull << 20) + 4096)); // not a 2 MiB step
    CHECK_FALSE(m.grow(128ull << 20));         // past the limit
    CHECK_FALSE(m.grow(16ull << 20));          // not larger
    REQUIRE(m.grow(64ull << 20));
    CHECK(m.size() == (64ull << 20));
    CHECK(m.range((64ull << 20) - 8, 8) != nullptr);
    m.prepare_host_write((60ull << 20), 8192); // the bitmap covers the new RAM
    m.host_base()[(64ull << 20) - 1] = 7;
    CHECK(::write(fds[1], m.host_base() + (32ull << 20), 16) == 16);
    CHECK(vm_flags_of(m.host_base() + (32ull << 20)).find(" hg") != std::string::npos); // grown: huge pages
    CHECK(::write(fds[1], m.host_base() + (64ull << 20), 16) == -1); // the guard after the limit
    CHECK(errno == EFAULT);
    CHECK_FALSE(m.grow(66ull << 20));
    m.ungrow(16ull << 20); // KVM refused the memslot: back to the start, the rest inaccessible again
    CHECK(m.size() == (16ull << 20));
    CHECK(m.range((16ull << 20) - 8, 16) == nullptr);
    CHECK(::write(fds[1], m.host_base() + (32ull << 20), 16) == -1);
    CHECK(errno == EFAULT);
    REQUIRE(m.grow(32ull << 20)); // and may grow again
    CHECK(m.host_base()[(32ull << 20) - 1] == 0);
    ::close(fds[0]);
    ::close(fds[1]);
}

} // TEST_SUITE
