// The existing-image writer's device (qcow2_existing_write.cpp): appending runs of clusters, it
// writes each run's refcounts and L2 entries as a few bytes of their own, two small device requests
// per run (a safe rebase of a 256 MiB overlay: 1020 of its 1559 writes; qemu-img keeps them in its
// metadata caches and writes them back whole). Here they wait in guest memory and go out merged
// with the next runs' (refcounts while contiguous, L2 entries while in one table: the writer's copy
// of it fills what lies between), in qemu's dependency order: the refcounts before
// the L2 entries that reference the clusters, both after the data they describe, which is written at
// once. Any other request (a read, another write, a discard) first writes what waits, so every
// other ordering the writer relies on (a table before the pointer to it, a reference dropped before
// its refcount) is kept as it was. A kill while entries wait leaves the clusters their data went to
// unreferenced (at worst counted, so leaked): the old content, as before.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

class DeferredMeta final : public guest::BlockDevice {
public:
    // `cap`: the most bytes one kind holds before it is written (a cluster: one refcount block,
    // one L2 table).
    DeferredMeta(guest::BlockDevice& inner, guest::Allocator& alloc, uint64_t cap)
        : inner_(inner), alloc_(alloc), cap_(cap) {}

    uint64_t size() const override { return inner_.size(); }
    guest::Status read(uint64_t offset, void* buf, size_t len) override {
        if (const guest::Status st = settle(); st != guest::Status::Ok)
            return st;
        return inner_.read(offset, buf, len);
    }
    guest::Status write(uint64_t offset, const void* buf, size_t len) override {
        if (const guest::Status st = settle(); st != guest::Status::Ok)
            return st;
        return inner_.write(offset, buf, len);
    }
    guest::Status allocation(uint64_t offset, bool* data, uint64_t* length) override {
        return inner_.allocation(offset, data, length); // the host's file map, not the image's bytes
    }
    guest::Status discard(uint64_t offset, uint64_t len) override {
        if (const guest::Status st = settle(); st != guest::Status::Ok)
            return st;
        return inner_.discard(offset, len);
    }

    // Guest data, ahead of the metadata that waits: nothing that waits describes it yet, or (a
    // cluster written in place) it does not change what waits.
    guest::Status write_data(uint64_t offset, const void* buf, size_t len) { return inner_.write(offset, buf, len); }

    // A run's refcounts (bytes of one refcount block, contiguous with the run before's).
    guest::Status defer_refcounts(uint64_t offset, const void* buf, size_t len) { return defer(rc_, offset, buf, len); }
    // Other small metadata writes (an L1 or refcount table entry), contiguous with the one before.
    guest::Status defer_l2(uint64_t offset, const void* buf, size_t len) { return defer(l2_, offset, buf, len); }
    // Bytes [lo, hi) of the L2 table at `base` that the writer has changed in its copy `table` (one
    // cluster, kept equal to the file's but for what waits here): runs that skip entries (a safe
    // rebase copies every other MiB) still go out as one write of the range, the skipped entries
    // from the copy. The copy must not change but through here until settle(): the writer reloads
    // it only through read(), which settles first.
    guest::Status defer_table(uint64_t base, const uint8_t* table, uint64_t lo, uint64_t hi) {
        if (tab_.hi != 0 && (tab_.base != base || tab_.src != table))
            if (const guest::Status st = settle(); st != guest::Status::Ok)
                return st;
        if (tab_.hi == 0) {
            tab_ = Table{table, base, lo, hi};
            return guest::Status::Ok;
        }
        tab_.lo = lo < tab_.lo ? lo : tab_.lo;
        tab_.hi = hi > tab_.hi ? hi : tab_.hi;
        return guest::Status::Ok;
    }

    // Writes what waits: the refcounts, then the L2 entries (the table's range, then the others).
    guest::Status settle() {
        if (const guest::Status st = put(rc_); st != guest::Status::Ok)
            return st;
        if (tab_.hi != 0) {
            const Table t = tab_;
            tab_ = Table{};
            if (const guest::Status st = inner_.write(t.base + t.lo, t.src + t.lo, static_cast<size_t>(t.hi - t.lo));
                st != guest::Status::Ok)
                return st;
        }
        return put(l2_);
    }

    void release() {
        if (rc_.buf != nullptr)
            alloc_.deallocate(rc_.buf, static_cast<size_t>(cap_));
        if (l2_.buf != nullptr)
            alloc_.deallocate(l2_.buf, static_cast<size_t>(cap_));
        rc_ = Pending{};
        l2_ = Pending{};
    }

private:
    struct Pending {
        uint8_t* buf = nullptr;
        uint64_t offset = 0;
        uint64_t len = 0;
    };

    struct Table {
        const uint8_t* src = nullptr;
        uint64_t base = 0;
        uint64_t lo = 0;
        uint64_t hi = 0; // 0: nothing waits
    };

    bool extends(const Pending& p, uint64_t offset, size_t len) const {
        return p.len != 0 && offset == p.offset + p.len && p.len + len <= cap_;
    }

    guest::Status defer(Pending& p, uint64_t offset, const void* buf, size_t len) {
        if (!extends(p, offset, len)) {
            // Not contiguous: what waits of this kind goes first (refcounts always before the L2
            // entries, so settle() when it is the refcounts that must go).
            if (p.len != 0)
                if (const guest::Status st = &p == &rc_ ? put(rc_) : settle(); st != guest::Status::Ok)
                    return st;
            if (len > cap_) { // (the writer's are at most a cluster) written at once, after what waits
                if (const guest::Status st = settle(); st != guest::Status::Ok)
                    return st;
                return inner_.write(offset, buf, len);
            }
            if (p.buf == nullptr && (p.buf = static_cast<uint8_t*>(alloc_.allocate(static_cast<size_t>(cap_), 64))) ==
                                        nullptr) {
                if (const guest::Status st = settle(); st != guest::Status::Ok)
                    return st;
                return inner_.write(offset, buf, len); // no room: written at once, as before
            }
            p.offset = offset;
        }
        __builtin_memcpy(p.buf + p.len, buf, len);
        p.len += len;
        return guest::Status::Ok;
    }

    guest::Status put(Pending& p) {
        if (p.len == 0)
            return guest::Status::Ok;
        const guest::Status st = inner_.write(p.offset, p.buf, static_cast<size_t>(p.len));
        p.len = 0;
        return st;
    }

    guest::BlockDevice& inner_;
    guest::Allocator& alloc_;
    uint64_t cap_;
    Pending rc_;
    Pending l2_;
    Table tab_;
};

} // namespace instar::qcow2
