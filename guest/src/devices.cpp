// BlockDevice over hypercalls. Ranges are checked here first so format code gets IoError for a
// read past the end (format_api's contract); the host checks again and ends a guest that lies.
#include "runtime.h"

#include <new>

namespace instar::guest {
namespace {

class HypercallDevice final : public BlockDevice {
public:
    void init(uint32_t index) {
        index_ = index;
        uint64_t flags = 0;
        if (hc_device_info(index, &size_, &flags) != 0) size_ = 0;
        writable_ = (flags & INSTAR_DEVICE_WRITABLE) != 0;
    }
    uint32_t index() const { return index_; }
    uint64_t size() const override { return size_; }
    Status read(uint64_t offset, void* buf, size_t len) override {
        if (!in_range(offset, len)) return Status::IoError;
        if (len == 0) return Status::Ok;
        return hc_read(index_, offset, buf, len) == 0 ? Status::Ok : Status::IoError;
    }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (!writable_ || !in_range(offset, len)) return Status::IoError;
        if (len == 0) return Status::Ok;
        return hc_write(index_, offset, buf, len) == 0 ? Status::Ok : Status::IoError;
    }

    Status discard(uint64_t offset, uint64_t len) override {
        if (!writable_ || !in_range(offset, len)) return Status::IoError;
        if (len == 0) return Status::Ok;
        return hc_discard(index_, offset, len) == 0 ? Status::Ok : Status::IoError;
    }
    Status allocation(uint64_t offset, bool* data, uint64_t* length) override {
        if (offset >= size_) return Status::IoError;
        if (hc_allocation(index_, offset, data, length) != 0 || *length == 0 || *length > size_ - offset)
            return Status::IoError;
        return Status::Ok;
    }

private:
    bool in_range(uint64_t offset, uint64_t len) const { return offset <= size_ && len <= size_ - offset; }

    uint32_t index_ = 0;
    uint64_t size_ = 0;
    bool writable_ = false;
};

// The boot devices, in the arena: INSTAR_MAX_DEVICES is large (a vmdk's extents), most runs have few.
constinit HypercallDevice* devices = nullptr;
constinit uint32_t count = 0;

} // namespace

void devices_init(uint32_t n) {
    count = 0;
    n = n < INSTAR_MAX_DEVICES ? n : INSTAR_MAX_DEVICES;
    if (n == 0) return;
    void* table = arena().allocate(n * sizeof(HypercallDevice), alignof(HypercallDevice));
    if (table == nullptr) return; // no devices: every operation then fails on device(0)
    devices = static_cast<HypercallDevice*>(table);
    for (uint32_t i = 0; i < n; ++i) {
        new (&devices[i]) HypercallDevice();
        devices[i].init(i);
    }
    count = n;
}

uint32_t device_count() { return count; }

BlockDevice* device(uint32_t index) { return index < count ? &devices[index] : nullptr; }

// Devices the host attached during the run, by host index (allocated on the first attach).
constinit HypercallDevice** attached = nullptr;
constexpr uint32_t ATTACHED_SLOTS = INSTAR_MAX_DEVICES + INSTAR_MAX_ADDED_FILES;
constinit uint32_t last_attached = UINT32_MAX;

BlockDevice* attach_device(uint32_t index) {
    if (index < count || index >= ATTACHED_SLOTS) return nullptr;
    if (attached == nullptr) {
        void* table = arena().allocate(ATTACHED_SLOTS * sizeof(HypercallDevice*), alignof(HypercallDevice*));
        if (table == nullptr) return nullptr;
        __builtin_memset(table, 0, ATTACHED_SLOTS * sizeof(HypercallDevice*));
        attached = static_cast<HypercallDevice**>(table);
    }
    // Added files live as long as the run; the arena goes with the VM, so they are never freed.
    void* p = arena().allocate(sizeof(HypercallDevice), alignof(HypercallDevice));
    if (p == nullptr || attached[index] != nullptr) return nullptr;
    auto* dev = new (p) HypercallDevice();
    dev->init(index);
    attached[index] = dev;
    last_attached = index;
    return dev;
}

uint32_t device_index(const BlockDevice& dev) {
    if (count != 0 && &dev >= &devices[0] && &dev < &devices[0] + count)
        return static_cast<uint32_t>(static_cast<const HypercallDevice*>(&dev) - devices);
    if (attached == nullptr) return UINT32_MAX;
    // Emitters size a file right after adding it: the newest device is the usual answer.
    if (last_attached < ATTACHED_SLOTS && attached[last_attached] == &dev) return last_attached;
    for (uint32_t i = count; i < ATTACHED_SLOTS; ++i)
        if (attached[i] == &dev) return i;
    return UINT32_MAX;
}

} // namespace instar::guest
