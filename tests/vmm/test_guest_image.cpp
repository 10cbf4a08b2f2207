// Guest image loading: the runtime at its link address, modules with RELATIVE relocations only.
#include <cstdio>
#include <cstring>
#include <fstream>

#include "vmm/guest_image.h"
#include "vmm_test_support.h"

using namespace instar::vmm;

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
