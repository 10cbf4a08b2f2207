// The grain table cache of the VMDK writer (vmdk_write_tables.h).
#include "vmdk_write_tables.h"

#include "vmdk_bytes.h"

namespace instar::vmdk {

using guest::Status;

bool GrainTableCache::init(guest::Allocator& alloc) {
    memory_ = static_cast<uint8_t*>(alloc.allocate(VMDK_WRITE_GT_CACHE * VMDK_WRITE_GT_BYTES, 8));
    if (memory_ == nullptr)
        return false;
    for (size_t i = 0; i < VMDK_WRITE_GT_CACHE; ++i)
        slots_[i] = Slot{TableRef{}, false, false, 0, 0, 0, memory_ + i * VMDK_WRITE_GT_BYTES};
    return true;
}

void GrainTableCache::release(guest::Allocator& alloc) {
    if (memory_ != nullptr)
        alloc.deallocate(memory_, VMDK_WRITE_GT_CACHE * VMDK_WRITE_GT_BYTES);
    memory_ = nullptr;
}

Status GrainTableCache::write_back(Slot& s) {
    if (!s.valid || !s.dirty)
        return Status::Ok;
    const uint64_t at = 4ull * s.lo;
    const size_t n = 4u * (s.hi - s.lo);
    Status st = s.ref.dev->write(s.ref.primary + at, s.bytes + at, n);
    if (st == Status::Ok)
        st = s.ref.dev->write(s.ref.backup + at, s.bytes + at, n);
    if (st == Status::Ok)
        s.dirty = false;
    return st;
}

Status GrainTableCache::slot_for(const TableRef& ref, Slot** out) {
    Slot* victim = &slots_[0];
    for (Slot& s : slots_) {
        if (s.valid && s.ref.dev == ref.dev && s.ref.extent == ref.extent && s.ref.table == ref.table) {
            s.used = ++clock_;
            *out = &s;
            return Status::Ok;
        }
        if (!s.valid || (victim->valid && s.used < victim->used))
            victim = &s;
    }
    if (const Status st = write_back(*victim); st != Status::Ok)
        return st;
    victim->valid = false;
    if (const Status st = ref.dev->read(ref.primary, victim->bytes, VMDK_WRITE_GT_BYTES); st != Status::Ok)
        return st;
    victim->ref = ref;
    victim->valid = true;
    victim->dirty = false;
    victim->used = ++clock_;
    *out = victim;
    return Status::Ok;
}

Status GrainTableCache::get(const TableRef& ref, uint32_t index, uint32_t* value) {
    if (index >= VMDK_WRITE_GTES)
        return Status::Invalid;
    Slot* s = nullptr;
    if (const Status st = slot_for(ref, &s); st != Status::Ok)
        return st;
    *value = load_le32(s->bytes + 4 * index);
    return Status::Ok;
}

Status GrainTableCache::set(const TableRef& ref, uint32_t index, uint32_t value) {
    if (index >= VMDK_WRITE_GTES)
        return Status::Invalid;
    Slot* s = nullptr;
    if (const Status st = slot_for(ref, &s); st != Status::Ok)
        return st;
    uint8_t* p = s->bytes + 4 * index;
    p[0] = static_cast<uint8_t>(value);
    p[1] = static_cast<uint8_t>(value >> 8);
    p[2] = static_cast<uint8_t>(value >> 16);
    p[3] = static_cast<uint8_t>(value >> 24);
    if (!s->dirty || index < s->lo)
        s->lo = index;
    if (!s->dirty || index + 1 > s->hi)
        s->hi = index + 1;
    s->dirty = true;
    return Status::Ok;
}

Status GrainTableCache::flush() {
    for (Slot& s : slots_)
        if (const Status st = write_back(s); st != Status::Ok)
            return st;
    return Status::Ok;
}

} // namespace instar::vmdk
