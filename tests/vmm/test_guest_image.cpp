// Guest image loading: the runtime at its link address, modules with RELATIVE relocations only.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <tuple>

#include "vmm/guest_image.h"
#include "vmm_test_support.h"

using namespace instar::vmm;

namespace {
// Whether the page holding `p` belongs to a file mapping (its /proc/self/maps line names an inode).
bool is_file_backed(const void* p) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
        unsigned long lo = 0, hi = 0, off = 0, inode = 0;
        char perms[8] = {}, dev[16] = {};
        if (std::sscanf(line.c_str(), "%lx-%lx %7s %lx %15s %lu", &lo, &hi, perms, &off, dev, &inode) == 6 &&
            a >= lo && a < hi) {
            return inode != 0;
        }
    }
    return false;
}
} // namespace

TEST_SUITE("guest_image") {

TEST_CASE("the runtime loads at INSTAR_GPA_RUNTIME within its size limit") {
    auto img = load_guest_image(default_runtime_path(), ImageKind::Runtime);
    REQUIRE_MESSAGE(img.ok(), (img.ok() ? "" : img.error().message));
    CHECK(img.value()->link_base == INSTAR_GPA_RUNTIME);
    CHECK(img.value()->size <= INSTAR_RUNTIME_MAX_SIZE);
    CHECK(img.value()->size % INSTAR_PAGE_SIZE == 0);
    CHECK(img.value()->relocs.empty());
}

TEST_CASE("a module loads, relocates and is cached") {
    auto img = load_guest_image(vmm_test::raw_module(), ImageKind::Module);
    REQUIRE_MESSAGE(img.ok(), (img.ok() ? "" : img.error().message));
    CHECK(img.value()->link_base == 0);
    CHECK_FALSE(img.value()->relocs.empty()); // the ModuleOps table holds pointers
    auto again = load_guest_image(vmm_test::raw_module(), ImageKind::Module);
    REQUIRE(again.ok());
    CHECK(again.value().get() == img.value().get());

    auto mem = GuestMemory::create(16ull << 20);
    REQUIRE(mem.ok());
    const std::uint64_t base = INSTAR_GPA_MODULES;
    REQUIRE(place_guest_image(*img.value(), mem.value(), base));
    for (const auto& [offset, addend] : img.value()->relocs) {
        std::uint64_t v = 0;
        std::memcpy(&v, mem.value().range(base + offset, 8), 8);
        CHECK(v == base + addend);
    }
    CHECK_FALSE(place_guest_image(*img.value(), mem.value(), mem.value().size() - 4096));
}

TEST_CASE("placing an image maps its read-only segments from the file, with the bytes a copy gives") {
    // RAM without huge pages maps read-only segments from the file; huge-page RAM copies them
    // (beyond the first 2 MiB): every segment's bytes, the relocations and the .bss zeroes agree.
    for (const auto& [path, kind, base] : {std::tuple{default_runtime_path(), ImageKind::Runtime, INSTAR_GPA_RUNTIME},
                                           std::tuple{vmm_test::raw_module(), ImageKind::Module, INSTAR_GPA_MODULES}}) {
        CAPTURE(path);
        auto img = load_guest_image(path, kind);
        REQUIRE(img.ok());
        const GuestImage& image = *img.value();
        auto mapped = GuestMemory::create(16ull << 20, false);
        auto copied = GuestMemory::create(16ull << 20, true);
        REQUIRE(mapped.ok());
        REQUIRE(copied.ok());
        REQUIRE(place_guest_image(image, mapped.value(), base));
        REQUIRE(place_guest_image(image, copied.value(), base));
        bool some_mapped = false;
        for (const ImageSegment& seg : image.segments) {
            const std::uint8_t* m = mapped.value().range(base + seg.offset, seg.mem_size);
            const std::uint8_t* c = copied.value().range(base + seg.offset, seg.mem_size);
            REQUIRE(m != nullptr);
            REQUIRE(c != nullptr);
            CHECK(std::memcmp(m, c, seg.mem_size) == 0); // bytes, relocations, .bss zeroes
            if (!seg.writable) {
                CHECK(std::memcmp(m, seg.data, seg.file_size) == 0);
                // Mapped from the file: the page is in the page cache, not a fresh anonymous one.
                some_mapped = some_mapped || is_file_backed(m);
            }
        }
        CHECK(some_mapped);
        // Writes to mapped pages stay in guest RAM: the file is private to the mapping.
        const ImageSegment* ro = nullptr;
        for (const ImageSegment& seg : image.segments) if (!seg.writable && seg.file_size > 0) ro = &seg;
        REQUIRE(ro != nullptr);
        std::uint8_t* p = mapped.value().range(base + ro->offset, 1);
        const std::uint8_t before = ro->data[0];
        *p = static_cast<std::uint8_t>(before ^ 0xff);
        CHECK(ro->data[0] == before);
        auto again = GuestMemory::create(16ull << 20, false);
        REQUIRE(again.ok());
        REQUIRE(place_guest_image(image, again.value(), base));
        CHECK(*again.value().range(base + ro->offset, 1) == before);
    }
}

TEST_CASE("wrong kinds and non-ELF files are refused with the file named") {
    auto as_runtime = load_guest_image(vmm_test::raw_module(), ImageKind::Runtime);
    REQUIRE_FALSE(as_runtime.ok());
    CHECK(as_runtime.error().message.find("wrong ELF type") != std::string::npos);
    const std::string junk = "/tmp/instar-vmm-test-junk.gmod";
    std::ofstream(junk) << "not an elf at all";
    auto bad = load_guest_image(junk, ImageKind::Module);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().kind == ErrorKind::GuestImage);
    CHECK(bad.error().message == "guest image " + junk + ": not an x86-64 ELF64 file");
    std::remove(junk.c_str());
    auto so = load_guest_image("/usr/lib/x86_64-linux-gnu/libz.so.1", ImageKind::Module);
    REQUIRE_FALSE(so.ok()); // a normal shared library needs libc and symbol lookup
}

} // TEST_SUITE
