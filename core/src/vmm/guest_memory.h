// Guest RAM: one anonymous mapping with PROT_NONE guard regions on both sides.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vmm/sandbox.h"

namespace instar::vmm {

class GuestMemory {
public:
    // size must be a multiple of INSTAR_LARGE_PAGE_SIZE (the caller rounds the config);
    // huge_pages: advise MADV_HUGEPAGE (SandboxConfig::huge_pages). `limit` (0: size): the address
    // space reserved behind it, which grow() may open up to (SandboxConfig::start_memory).
    static Outcome<GuestMemory> create(std::uint64_t size, bool huge_pages = true, std::uint64_t limit = 0);
    // The same over a memfd (MAP_SHARED), for the process sandbox: its guest process maps
    // memfd() at the guest addresses (docs/sandbox.md).
    static Outcome<GuestMemory> create_shared(std::uint64_t size);

    GuestMemory(GuestMemory&& o) noexcept;
    GuestMemory& operator=(GuestMemory&&) = delete;
    GuestMemory(const GuestMemory&) = delete;
    ~GuestMemory();

    std::uint8_t* host_base() const { return base_; }
    std::uint64_t size() const { return size_; }
    std::uint64_t limit() const { return limit_; } // what grow() may reach
    // Opens [size(), new_size) read-write (new_size a multiple of 2 MiB, within limit()), advised
    // onto huge pages: a guest that outgrew its start touches many MiB. False if the kernel refused.
    bool grow(std::uint64_t new_size);
    // Undoes a grow() whose memslot KVM refused: RAM is `old_size` again, the rest PROT_NONE.
    void ungrow(std::uint64_t old_size);
    bool huge_pages() const { return huge_pages_; }
    int memfd() const { return memfd_; } // -1 unless made by create_shared()

    // The host address of guest range [gpa, gpa + len), or nullptr unless it lies wholly inside
    // RAM. Overflow-safe for any gpa and len a guest can send.
    std::uint8_t* range(std::uint64_t gpa, std::uint64_t len) const {
        if (gpa > size_ || len > size_ - gpa) return nullptr;
        return base_ + gpa;
    }

    // Copies host bytes into fresh guest RAM at [gpa, gpa + len) (the caller has checked the range),
    // the way that costs least at start-up: a memfd takes them by pwrite (the kernel allocates and
    // fills its pages without a page fault per 4 KiB), anonymous RAM is populated in one madvise
    // first. Memory made by create()/create_shared() starts zeroed, so bytes never loaded read 0.
    void load(std::uint64_t gpa, const void* data, std::size_t len);

    // Maps `len` bytes of file `fd` from `offset` at guest [gpa, gpa + len) instead of copying them:
    // private (a write copies the page, the file never changes) and populated for reading, so the
    // page-cache pages serve the guest with no page cleared or copied (docs/sandbox.md, "Start-up").
    // Anonymous RAM only (a memfd's pages are what the process sandbox maps); gpa, offset and len
    // page-aligned, the range inside RAM. Declined: not done, the range is still fresh zeroed RAM to
    // be loaded as usual; Failed: the mapping failed and the range could not be given fresh RAM
    // back (the kernel out of memory), so it must not be used.
    // Makes the pages of [gpa, gpa + len) (the caller has checked the range) present in the host's
    // mapping before the host writes into them (a device read): one madvise(MADV_POPULATE_WRITE)
    // for the pages not yet present instead of a page fault per 4 KiB page. Under nested paging a
    // fault costs ~10 us and populating ~1.3 us a page (docs/sandbox.md, "Host page faults"). Each
    // page once; RAM advised onto huge pages (one fault per 2 MiB) is left alone. Advice only.
    void prepare_host_write(std::uint64_t gpa, std::uint64_t len);

    enum class MapResult { Mapped, Declined, Failed };
    MapResult map_file(std::uint64_t gpa, int fd, std::uint64_t offset, std::size_t len);

private:
    GuestMemory() = default;
    void* reservation_ = nullptr;
    std::size_t reservation_size_ = 0;
    std::uint8_t* base_ = nullptr;
    std::uint64_t size_ = 0;
    std::uint64_t limit_ = 0;
    bool huge_pages_ = false;
    int memfd_ = -1;
    std::vector<std::uint64_t> present_; // prepare_host_write's pages, a bit each (sized when first used)
};

} // namespace instar::vmm
