// Guest RAM mapping: reserve PROT_NONE, open the 2 MiB-aligned middle read-write.
#include "vmm/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 // Linux 5.14 (uapi/asm-generic/mman-common.h); older headers lack it
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace instar::vmm {

namespace {
// A guard on each side catches host-side overruns of guest buffers; 2 MiB of slack also lets RAM
// start on a large-page boundary so the kernel can back it with huge pages.
constexpr std::uint64_t GUARD_SIZE = INSTAR_LARGE_PAGE_SIZE;
} // namespace

Outcome<GuestMemory> GuestMemory::create(std::uint64_t size, bool huge_pages, std::uint64_t limit) {
    if (limit == 0) limit = size;
    if (size == 0 || size % INSTAR_LARGE_PAGE_SIZE != 0 || limit % INSTAR_LARGE_PAGE_SIZE != 0 || size > limit ||
        limit > INSTAR_MAX_GUEST_MEMORY) {
        return SandboxError{ErrorKind::Config, "guest memory size " + std::to_string(size) + " (limit " +
                                                   std::to_string(limit) + ") is not a multiple of 2 MiB within the cap", {}};
    }
    GuestMemory m;
    m.limit_ = limit;
    // One guard each side plus alignment slack, around the limit: the guards stay outside RAM
    // however far it grows. MAP_NORESERVE PROT_NONE costs nothing for the part never opened.
    m.reservation_size_ = limit + 3 * GUARD_SIZE;
    // MAP_NORESERVE: the guest only costs the pages it touches.
    m.reservation_ = ::mmap(nullptr, m.reservation_size_, PROT_NONE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m.reservation_ == MAP_FAILED) {
        m.reservation_ = nullptr;
        return SandboxError{ErrorKind::HostResource,
                            std::string("cannot reserve guest memory: ") + std::strerror(errno), {}};
    }
    // SAFETY: address arithmetic only; nothing is dereferenced until mprotect below succeeds.
    auto start = reinterpret_cast<std::uintptr_t>(m.reservation_) + GUARD_SIZE;
    start = (start + INSTAR_LARGE_PAGE_SIZE - 1) & ~(INSTAR_LARGE_PAGE_SIZE - 1);
    // SAFETY: [start, start + size) lies inside the reservation with >= GUARD_SIZE on each side.
    m.base_ = reinterpret_cast<std::uint8_t*>(start);
    m.size_ = size;
    if (::mprotect(m.base_, size, PROT_READ | PROT_WRITE) != 0) {
        return SandboxError{ErrorKind::HostResource,
                            std::string("cannot map guest memory: ") + std::strerror(errno), {}};
    }
    // The guest maps RAM with 2 MiB pages; backing them with host huge pages lets KVM map each with
    // one large page instead of faulting every 4 KiB page in (costly under shadow paging), but each
    // touched 2 MiB must be cleared first: it pays for guests that touch many MiB, not for a guest
    // that touches a few dozen pages (info), so the operation chooses. Advice only: where THP is
    // off this changes nothing.
    //
    // Not the first 2 MiB: the guest maps them with 4 KiB pages (the null and stack guards), so a
    // huge page there buys no large mapping, and it would clear 2 MiB for the few pages the boot
    // tables, the stack and the boot info touch. Under nested virtualization with free page
    // reporting (virtio-balloon, page_reporting_order 9) a fresh huge page is one the outer host
    // took back, and clearing it costs 0.3 ms at best and 6 ms at worst (docs/sandbox.md).
    m.huge_pages_ = huge_pages;
    if (huge_pages && size > INSTAR_LARGE_PAGE_SIZE)
        (void)::madvise(m.base_ + INSTAR_LARGE_PAGE_SIZE, size - INSTAR_LARGE_PAGE_SIZE, MADV_HUGEPAGE);
    return m;
}

bool GuestMemory::grow(std::uint64_t new_size) {
    if (memfd_ >= 0 || new_size <= size_ || new_size > limit_ || new_size % INSTAR_LARGE_PAGE_SIZE != 0) return false;
    // SAFETY: [base_ + size_, base_ + new_size) lies inside the reservation (new_size <= limit_).
    if (::mprotect(base_ + size_, new_size - size_, PROT_READ | PROT_WRITE) != 0) return false;
    (void)::madvise(base_ + size_, new_size - size_, MADV_HUGEPAGE); // advice only
    size_ = new_size;
    if (!present_.empty()) present_.resize((size_ / INSTAR_PAGE_SIZE + 63) / 64, 0);
    return true;
}

void GuestMemory::ungrow(std::uint64_t old_size) {
    if (memfd_ >= 0 || old_size >= size_ || old_size % INSTAR_LARGE_PAGE_SIZE != 0) return;
    // SAFETY: [base_ + old_size, base_ + size_) lies inside the reservation; nothing maps it for KVM.
    if (::mmap(base_ + old_size, size_ - old_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
               -1, 0) == MAP_FAILED)
        return; // still readable and writable: the host may touch it, the guest cannot reach it
    size_ = old_size;
}

Outcome<GuestMemory> GuestMemory::create_shared(std::uint64_t size) {
    auto made = create(size, false);
    if (!made) return made;
    GuestMemory& m = made.value();
    m.memfd_ = ::memfd_create("instar-guest-memory", MFD_CLOEXEC);
    if (m.memfd_ < 0) {
        return SandboxError{ErrorKind::HostResource, std::string("cannot create guest memory (memfd): ") + std::strerror(errno), {}};
    }
    if (::ftruncate(m.memfd_, static_cast<off_t>(size)) != 0 ||
        ::mmap(m.base_, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m.memfd_, 0) != m.base_) {
        return SandboxError{ErrorKind::HostResource, std::string("cannot map guest memory (memfd): ") + std::strerror(errno), {}};
    }
    return made;
}

void GuestMemory::load(std::uint64_t gpa, const void* data, std::size_t len) {
    const auto* from = static_cast<const std::uint8_t*>(data);
    if (memfd_ >= 0) {
        // A start-up writes ~800 KiB of runtime and module: through the mapping that is ~200 faults
        // on fresh shmem pages (3 ms under nested paging), by pwrite 0.3 ms (docs/sandbox.md).
        while (len > 0) {
            const ssize_t n = ::pwrite(memfd_, from, len, static_cast<off_t>(gpa));
            if (n <= 0) break; // then copy the rest through the mapping
            from += n;
            gpa += static_cast<std::uint64_t>(n);
            len -= static_cast<std::size_t>(n);
        }
    } else if (len > 0) {
        // One call allocates the pages the copy then fills; advice only (EINVAL before Linux 5.14).
        const std::uintptr_t page = 4096;
        const auto first = reinterpret_cast<std::uintptr_t>(base_ + gpa) & ~(page - 1);
        const auto last = reinterpret_cast<std::uintptr_t>(base_ + gpa + len);
        // SAFETY: [first, last) lies in this mapping: gpa..gpa+len is inside RAM (the caller's
        // range() check) and RAM starts page-aligned.
        (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_WRITE);
    }
    if (len > 0) std::memcpy(base_ + gpa, from, len);
}

void GuestMemory::prepare_host_write(std::uint64_t gpa, std::uint64_t len) {
    if (huge_pages_ || len == 0) return;
    const std::uint64_t page = INSTAR_PAGE_SIZE;
    if (present_.empty()) present_.assign((size_ / page + 63) / 64, 0);
    const std::uint64_t first = gpa / page, end = (gpa + len + page - 1) / page;
    auto is_present = [&](std::uint64_t p) { return (present_[p / 64] >> (p % 64) & 1) != 0; };
    for (std::uint64_t p = first; p < end;) {
        if (is_present(p)) {
            ++p;
            continue;
        }
        std::uint64_t q = p;
        for (; q < end && !is_present(q); ++q)
            present_[q / 64] |= std::uint64_t{1} << (q % 64);
        // SAFETY: [p, q) pages lie inside RAM (gpa + len is, by the caller's range() check).
        (void)::madvise(base_ + p * page, (q - p) * page, MADV_POPULATE_WRITE);
        p = q;
    }
}

GuestMemory::MapResult GuestMemory::map_file(std::uint64_t gpa, int fd, std::uint64_t offset, std::size_t len) {
    const std::uint64_t page = INSTAR_PAGE_SIZE;
    if (memfd_ >= 0 || fd < 0 || len == 0 || gpa % page != 0 || offset % page != 0 || len % page != 0 ||
        range(gpa, len) == nullptr) {
        return MapResult::Declined;
    }
    void* at = base_ + gpa;
    // SAFETY: [at, at + len) lies inside this RAM mapping (checked above), which it replaces.
    if (::mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, static_cast<off_t>(offset)) == at) {
        (void)::madvise(at, len, MADV_POPULATE_READ); // advice only: the guest's first touch maps the rest
        return MapResult::Mapped;
    }
    // A failed MAP_FIXED may already have unmapped the range: give it fresh anonymous pages back.
    const int anon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE;
    return ::mmap(at, len, PROT_READ | PROT_WRITE, anon, -1, 0) == at ? MapResult::Declined : MapResult::Failed;
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : reservation_(std::exchange(o.reservation_, nullptr)),
      reservation_size_(std::exchange(o.reservation_size_, 0)), base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)), limit_(std::exchange(o.limit_, 0)), huge_pages_(o.huge_pages_),
      memfd_(std::exchange(o.memfd_, -1)), present_(std::move(o.present_)) {}

GuestMemory::~GuestMemory() {
    if (reservation_ != nullptr) ::munmap(reservation_, reservation_size_);
    if (memfd_ >= 0) ::close(memfd_);
}

} // namespace instar::vmm
