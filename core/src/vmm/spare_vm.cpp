// The one spare VM.
#include "vmm/spare_vm.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace instar::vmm {

namespace {

// About twice what creating a VM takes on an idle host.
constexpr std::chrono::milliseconds SPARE_WAIT_LIMIT{1};

struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    std::unique_ptr<PreparedVm> vm; // guarded by mu
    std::uint64_t coming = 0;       // RAM size of an announced spare not made yet (0: none)
};

// Never destroyed: the reaper thread may still use it during static destruction at exit.
Slot& slot() {
    static Slot* s = new Slot();
    return *s;
}

Outcome<std::unique_ptr<PreparedVm>> create_prepared(std::uint64_t ram, bool huge_pages, std::uint64_t limit) {
    auto kvm = KvmSystem::open();
    if (!kvm) return kvm.error();
    auto mem = GuestMemory::create(ram, huge_pages, limit);
    if (!mem) return mem.error();
    auto vm = Vm::create(kvm.value(), mem.value());
    if (!vm) return vm.error();
    return std::make_unique<PreparedVm>(
        PreparedVm{std::move(kvm.value()), std::move(mem.value()), std::move(vm.value())});
}

bool fits(const PreparedVm* vm, std::uint64_t ram, bool huge_pages, std::uint64_t limit) {
    return vm != nullptr && vm->memory.size() == ram && vm->memory.limit() == (limit == 0 ? ram : limit) &&
           vm->memory.huge_pages() == huge_pages;
}

} // namespace

Outcome<std::unique_ptr<PreparedVm>> take_prepared_vm(std::uint64_t ram, bool huge_pages, std::uint64_t limit) {
    {
        Slot& s = slot();
        std::unique_lock lock(s.mu);
        // Usually the reaper finishes it sooner than we could make our own; on a loaded machine it
        // may not get the CPU, so wait only so long.
        s.cv.wait_for(lock, SPARE_WAIT_LIMIT, [&] { return s.coming != ram; });
        if (fits(s.vm.get(), ram, huge_pages, limit)) return std::move(s.vm);
    }
    return create_prepared(ram, huge_pages, limit);
}

namespace {
std::atomic<bool> spares{false};
} // namespace

void enable_spares() { spares.store(true, std::memory_order_relaxed); }
bool spares_enabled() { return spares.load(std::memory_order_relaxed); }

void announce_spare_vm(std::uint64_t ram) {
    Slot& s = slot();
    std::lock_guard lock(s.mu);
    s.coming = ram;
}

void prepare_spare_vm(std::uint64_t ram, bool huge_pages, std::uint64_t limit) {
    Slot& s = slot();
    bool have = false;
    {
        std::lock_guard lock(s.mu);
        have = fits(s.vm.get(), ram, huge_pages, limit);
    }
    std::unique_ptr<PreparedVm> made;
    if (!have) {
        auto m = create_prepared(ram, huge_pages, limit); // outside the lock: runs for other sizes need not wait
        if (m) made = std::move(m.value());
    }
    {
        std::lock_guard lock(s.mu);
        if (made != nullptr) std::swap(s.vm, made); // `made` now holds any replaced spare
        if (s.coming == ram) s.coming = 0;
    }
    s.cv.notify_all();
} // `made` (a replaced spare, if any) is destroyed here, outside the lock

} // namespace instar::vmm
