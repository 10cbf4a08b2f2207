// BlockDevice over hypercalls. Ranges are checked here first so format code gets IoError for a
// read past the end (format_api's contract); the host checks again and ends a guest that lies.
#include "runtime.h"

#include <new>

namespace instar::guest {
namespace {

// Whether a device that is not a new output has changed in this run (runtime.h, devices_changed()).
constinit bool changed_devices = false;

// The small-read block: format code reads headers in small pieces (qcow2 8 then 112 bytes at 0,
// vmdk 2048, 4 and 79, vpc's footer and header in four, vhdx's log and metadata entries), and
// each read is an exit (~0.1 ms under nested KVM). A read shorter than a block of a read-only
// device fetches the aligned block around it once; later small reads inside it are copied from
// guest memory. One block for the whole run: it costs one page and serves the open, where the
// small reads cluster. Trusted only until a device changes (devices_changed()): a read-only
// device may be the same file as a writable one.
constexpr uint64_t SMALL_READ_BLOCK = 4096;
alignas(64) constinit uint8_t small_block[SMALL_READ_BLOCK];
constinit uint32_t small_device = UINT32_MAX; // UINT32_MAX: the block holds nothing
constinit uint64_t small_offset = 0;          // of the block in its device
constinit uint64_t small_len = 0;             // bytes held (less than a block at the device end)

// The bytes of the aligned block at `block` that lie before `end` (a device's or file's end).
uint64_t block_bytes(uint64_t block, uint64_t end) {
    return end <= block ? 0 : (end - block < SMALL_READ_BLOCK ? end - block : SMALL_READ_BLOCK);
}

// Serves a read of [offset, offset + len) (inside the device, len < SMALL_READ_BLOCK) through the
// block; false to read it directly instead (it crosses a block boundary, or devices changed).
bool read_small(uint32_t index, uint64_t size, uint64_t offset, void* buf, size_t len, Status* st) {
    if (devices_changed()) {
        small_device = UINT32_MAX;
        return false;
    }
    const uint64_t block = offset & ~(SMALL_READ_BLOCK - 1);
    if (offset + len > block + SMALL_READ_BLOCK) return false;
    if (small_device != index || small_offset != block) {
        const uint64_t n = block_bytes(block, size);
        small_device = UINT32_MAX;
        if (hc_read(index, block, small_block, n) != 0) {
            *st = Status::IoError;
            return true;
        }
        small_device = index;
        small_offset = block;
        small_len = n;
    }
    if (offset + len - block > small_len) return false; // cannot happen: the read is inside the device
    __builtin_memcpy(buf, small_block + (offset - block), len);
    *st = Status::Ok;
    return true;
}

// The own block: bytes this run read from a writable device (an image changed in place: resize,
// snapshot, amend, bitmap, commit's base), kept to serve later small reads inside them. Format code
// reads its header again after each step it writes (a qcow2 resize: 112 bytes at 0 after each of
// its two header switches), an exit each: 3 of a 1T -> 2T resize's 22. It holds the first 4 KiB a
// read brought, or, where the file's length is known (note_file_length(): an edit's plan), the
// whole block a small read lies in, fetched as the read-only block is (a writable device's size is
// not its file's, so without the length a fetch could run past the end). This run is the file's
// only writer, so the block stays true by copying its own writes in: a write the host took (not
// deferred, which may still fail) is copied; any other change to the device (a deferred or failed
// write, a discard, a new length) empties the block, and so does a change to any other input
// device, which may be the same file (note_device_change()). Not while writes are gathered
// (convert's outputs): those reach the device later.
struct OwnBlock {
    uint32_t device = UINT32_MAX; // UINT32_MAX: holds nothing
    uint64_t offset = 0;          // of bytes[0] in the device
    uint64_t len = 0;             // bytes held, at most SMALL_READ_BLOCK
};
constinit OwnBlock own_block;
alignas(64) constinit uint8_t own_bytes[SMALL_READ_BLOCK];

// The file lengths note_file_length() was told, for the boot devices (0: not known).
constinit uint64_t* file_lengths = nullptr;

bool read_own(uint32_t index, uint64_t offset, void* buf, uint64_t len) {
    const OwnBlock& b = own_block;
    if (b.device != index || offset < b.offset || offset - b.offset > b.len || len > b.len - (offset - b.offset))
        return false;
    __builtin_memcpy(buf, own_bytes + (offset - b.offset), len);
    return true;
}

// Fetches the block holding [offset, offset + len) of writable `index` into the own block, when the
// file's length is known and the read lies inside it; false to read directly. *st: the fetch's.
bool fetch_own(uint32_t index, uint64_t offset, uint64_t len, Status* st) {
    const uint64_t known = file_lengths != nullptr ? file_lengths[index] : 0;
    const uint64_t block = offset & ~(SMALL_READ_BLOCK - 1);
    const uint64_t n = block_bytes(block, known);
    if (offset + len > block + n) return false;
    own_block.device = UINT32_MAX; // nothing held while own_bytes is being overwritten
    if (hc_read(index, block, own_bytes, n) != 0) {
        *st = Status::IoError;
        return true;
    }
    own_block = OwnBlock{index, block, n};
    *st = Status::Ok;
    return true;
}

// The slot of `slots` holding device `index` (the run cache's and the read windows'), or nullptr.
template <typename Slot, uint32_t N>
Slot* held_slot(Slot (&slots)[N], uint32_t index) {
    for (Slot& s : slots)
        if (s.holds(index)) return &s;
    return nullptr;
}

// Allocation runs (INSTAR_ALLOCATION_RUNS): a walk over a raw file asks the status of each run in
// turn, and each question was an exit (~50 us under nested KVM: a 1 GiB file with 16384 runs spent
// 0.7 s in them). One call now brings the next RUNS_PER_SLOT runs of a read-only device, and the
// questions inside them are answered here. A few slots, so that a walk over two raw files (compare,
// convert's concatenated sources) keeps both; trusted only until a device changes, as the
// small-read block.
constexpr uint32_t RUN_SLOTS = 4;
constexpr uint32_t RUNS_PER_SLOT = 128; // 2 KiB a slot; a call's host work is two lseeks a run
// All zero is the empty state (count 0), so the 8 KiB stay in .bss instead of the runtime's image.
struct RunSlot {
    uint32_t device;     // meaningful while count > 0
    uint32_t count;      // runs held; 0: empty
    uint64_t start;      // offset of runs[0]
    uint32_t cursor;     // the run answered last, and its offset: walks ask in order
    uint64_t cursor_offset;
    instar_allocation_run runs[RUNS_PER_SLOT];
    bool holds(uint32_t index) const { return count != 0 && device == index; }
};
constinit RunSlot run_slots[RUN_SLOTS] = {};
constinit uint32_t run_slot_next = 0; // the slot a device without one takes (round robin)

// Answers from a slot of `index` holding `offset`; false when none does.
bool cached_run(uint32_t index, uint64_t offset, bool* data, uint64_t* length) {
    RunSlot* s = held_slot(run_slots, index);
    if (s == nullptr || offset < s->start) return false; // held: count > 0
    uint32_t i = 0;
    uint64_t at = s->start;
    if (offset >= s->cursor_offset) {
        i = s->cursor;
        at = s->cursor_offset;
    }
    for (; i < s->count; at += s->runs[i].length, ++i) {
        if (offset - at < s->runs[i].length) {
            s->cursor = i;
            s->cursor_offset = at;
            *data = (s->runs[i].flags & INSTAR_ALLOCATION_DATA) != 0;
            *length = s->runs[i].length - (offset - at);
            return true;
        }
    }
    return false;
}

// The run at `offset` from the host, bringing the runs after it into a slot. 0 or the call's error.
int64_t fetch_runs(uint32_t index, uint64_t offset, uint64_t size, bool* data, uint64_t* length) {
    RunSlot* slot = held_slot(run_slots, index);
    if (slot == nullptr) {
        slot = &run_slots[run_slot_next];
        run_slot_next = (run_slot_next + 1) % RUN_SLOTS;
    }
    slot->count = 0; // empty until the new runs are checked
    const int64_t ret = hc_allocation(index, offset, data, length, slot->runs, RUNS_PER_SLOT);
    if (ret <= 0 || static_cast<uint64_t>(ret) > RUNS_PER_SLOT) return ret < 0 ? ret : 0;
    // Kept only if every run is well formed and inside the device; a host that lies gets asked again.
    uint64_t at = offset;
    for (int64_t i = 0; i < ret; ++i) {
        const uint64_t n = slot->runs[i].length;
        if (n == 0 || n > size - at || (slot->runs[i].flags & ~uint64_t{INSTAR_ALLOCATION_DATA}) != 0) return 0;
        at += n;
    }
    slot->device = index;
    slot->count = static_cast<uint32_t>(ret);
    slot->start = offset;
    slot->cursor = 0;
    slot->cursor_offset = offset;
    return 0;
}

// Read windows: a walk over an image whose runs are short (a raw file with a hole every other
// 64 KiB, a qcow2 image's data clusters between unallocated ones) reads each run with its own call,
// an exit each. A short read (at most WINDOW_MAX_READ) of a read-only device that continues a run of
// reads moving forward in small steps (WINDOW_MAX_GAP, WINDOW_STREAK below) fetches READ_WINDOW
// bytes from its 4 KiB-aligned start instead, and the reads inside them are copied from guest memory. Two slots
// (compare's two sides), allocated when first needed and only with room to spare; trusted only until
// a device changes, as the small-read block. A window that fails to read is not kept: the read is
// made alone, so a failure is reported for the bytes asked.
constexpr uint64_t READ_WINDOW = 2u << 20;
constexpr uint64_t WINDOW_MAX_READ = 256u << 10; // longer reads are few enough to pay their exit
constexpr uint64_t WINDOW_MIN_ROOM = 32u << 20;  // arena left after a window: walks keep their buffers
constexpr uint32_t WINDOW_SLOTS = 2;
// A slot's first fetch is READ_WINDOW_FIRST bytes, each next one twice the last up to READ_WINDOW
// (as the kernel's readahead ramps up): a short walk (a 64 KiB-cluster check: its refcount table,
// refcount block, L1 and first L2 lie in the first clusters) then copies and first-touches 256 KiB
// rather than 2 MiB of fresh guest memory, which on a host whose first touch of a page is slow (a
// nested VM here: ~13 us a page, 6.6 ms for 2 MiB) was a third of the check's time; a long walk
// reaches 2 MiB windows after three fetches.
constexpr uint64_t READ_WINDOW_FIRST = 256u << 10;
struct WindowSlot {
    uint32_t device = UINT32_MAX; // UINT32_MAX: holds nothing
    uint64_t start = 0;
    uint64_t len = 0;
    uint8_t* buf = nullptr; // READ_WINDOW bytes from the arena, kept for the run
    uint64_t next_len = 0; // the next fetch's length (0: window_first): doubles up to READ_WINDOW
    bool holds(uint32_t index) const { return device == index; }
};
constinit WindowSlot window_slots[WINDOW_SLOTS];
constinit uint32_t window_next = 0;
constinit bool windows_allowed = false;
constinit uint64_t window_max_read = WINDOW_MAX_READ; // allow_read_windows()'s choice
constinit uint64_t window_first = READ_WINDOW_FIRST;  // and its first fetch's length

// When a read may fetch a window: it starts at most WINDOW_MAX_GAP past the end of the read before
// (any length up to WINDOW_MAX_READ, the small ones included), so a window (a 2 MiB copy, ~0.1-0.2 ms
// here) serves ~4 or more reads of a pattern that continues (an exit each, ~45 us) and reads spread
// further apart pay their own exit. A check at 512-byte clusters, whose L2 tables lie 16-130 KiB
// apart, then reads them in one exit per 2 MiB (1 GiB image: 37461 exits -> 789, 1.5 s -> 0.3 s).
// WINDOW_STREAK = 2 (a window only on the second close read in a row) was measured too: no gain on a
// 64 KiB-cluster check (13 exits instead of 11, the same time), 10% more exits for a convert whose
// runs are short, so one close read is enough.
constexpr uint64_t WINDOW_MAX_GAP = READ_WINDOW / 4;
constexpr uint32_t WINDOW_STREAK = 1;

// Serves [offset, offset + len) of device `index` from a window, fetching one when `fetch`; false to
// read it directly.
bool read_windowed(uint32_t index, uint64_t size, uint64_t offset, void* buf, uint64_t len, bool fetch) {
    WindowSlot* slot = held_slot(window_slots, index);
    if (slot != nullptr && offset >= slot->start && offset + len <= slot->start + slot->len) {
        __builtin_memcpy(buf, slot->buf + (offset - slot->start), len);
        return true;
    }
    if (!fetch) return false;
    if (slot == nullptr) {
        slot = &window_slots[window_next];
        if (slot->buf == nullptr) {
            if (arena_room() < READ_WINDOW + WINDOW_MIN_ROOM) return false;
            slot->buf = static_cast<uint8_t*>(arena().allocate(READ_WINDOW, 4096));
            if (slot->buf == nullptr) return false;
        }
        window_next = (window_next + 1) % WINDOW_SLOTS;
    }
    const uint64_t start = offset & ~uint64_t{4095};
    if (slot->next_len == 0)
        slot->next_len = window_first;
    const uint64_t want = slot->next_len < offset + len - start ? READ_WINDOW : slot->next_len;
    const uint64_t n = size - start < want ? size - start : want;
    slot->next_len = want < READ_WINDOW ? want * 2 : READ_WINDOW;
    slot->device = UINT32_MAX;
    if (offset + len > start + n || hc_read(index, start, slot->buf, n) != 0) return false;
    slot->device = index;
    slot->start = start;
    slot->len = n;
    __builtin_memcpy(buf, slot->buf + (offset - start), len);
    return true;
}

// Write gathering: a convert whose source runs are short writes its target one short run at a time
// (a qcow2 target's 64 KiB clusters back to back, a raw target's data blocks with holes between
// them), an exit each. Once convert allows it, a write of at most GATHER_MAX_WRITE to an output is
// copied into one GATHER_BYTES buffer instead: onto the last segment when it starts where that one
// ends, else as a new segment (at most INSTAR_MAX_WRITE_SEGMENTS). The buffer is written in one call
// (WRITE for one segment, WRITE_SEGMENTS for more) when a write does not fit, goes to another
// device or is longer, and before every other device call and the exit (hypercalls.cpp:
// flush_gathered()), so the host sees the same bytes in the same order, fewer calls. Outputs only:
// they are files the host created for this run, discarded if it fails, and no input reads them, so
// a failure found at the later write fails the run as the write itself would have.
constexpr uint64_t GATHER_BYTES = 2u << 20;
constexpr uint64_t GATHER_MAX_WRITE = 256u << 10; // longer writes are few enough to pay their exit
struct Gather {
    uint32_t device = UINT32_MAX; // UINT32_MAX: nothing gathered
    uint32_t segments = 0;        // segs[0, segments) hold the gathered writes, in order
    uint64_t used = 0;            // bytes of buf taken by them
    uint8_t* buf = nullptr;       // GATHER_BYTES from the arena, kept for the run
    instar_write_segment segs[INSTAR_MAX_WRITE_SEGMENTS] = {};
};
constinit Gather gather;
constinit bool gathering_allowed = false;

// Writes what is gathered, then starts again with this write alone.
bool gather_restart(uint32_t index, uint64_t offset, const void* src, uint64_t len, Status* st) {
    if (flush_gathered() != 0) {
        *st = Status::IoError;
        return true;
    }
    if (gather.buf == nullptr) {
        if (arena_room() < GATHER_BYTES + WINDOW_MIN_ROOM) return false;
        gather.buf = static_cast<uint8_t*>(arena().allocate(GATHER_BYTES, 4096));
        if (gather.buf == nullptr) return false;
    }
    __builtin_memcpy(gather.buf, src, len);
    gather.device = index;
    gather.segments = 1;
    gather.segs[0] = {offset, reinterpret_cast<uintptr_t>(gather.buf), len};
    gather.used = len;
    *st = Status::Ok;
    return true;
}

// Gathers [offset, offset + len) of output `index`; false when the write must be made alone.
bool gather_write(uint32_t index, uint64_t offset, const void* src, uint64_t len, Status* st) {
    if (gather.device == index && len <= GATHER_BYTES - gather.used) {
        instar_write_segment& last = gather.segs[gather.segments - 1];
        if (offset == last.offset + last.len) {
            last.len += len;
        } else if (gather.segments < INSTAR_MAX_WRITE_SEGMENTS) {
            gather.segs[gather.segments++] = {offset, reinterpret_cast<uintptr_t>(gather.buf + gather.used), len};
        } else {
            return gather_restart(index, offset, src, len, st);
        }
        __builtin_memcpy(gather.buf + gather.used, src, len);
        gather.used += len;
        *st = Status::Ok;
        return true;
    }
    return gather_restart(index, offset, src, len, st);
}

// Discard gathering: qemu's repair frees each leaked cluster with its own discard, each an exit
// (check -r allows gathering; other operations discard little). Once an operation allows it, a discard is
// kept in a table of up to INSTAR_MAX_DISCARD_RANGES ranges of one device (one continuing the last
// range extends it) and the table is sent in one DISCARD_RANGES call before any other device call
// and the exit (flush_gathered(), which also sends gathered writes; only one kind is ever pending).
// The host sees the same operations in the same order, so what a kill leaves is what a kill at an
// earlier point would have left; a failed discard fails the call it is sent before.
struct DiscardGather {
    uint32_t device = UINT32_MAX; // UINT32_MAX: nothing gathered
    uint32_t count = 0;
    instar_range ranges[INSTAR_MAX_DISCARD_RANGES] = {};
};
constinit DiscardGather discards;
constinit bool discard_gathering_allowed = false;

// Gathers the discard of [offset, offset + len) of writable device `index`; *st says how it went.
void gather_discard(uint32_t index, uint64_t offset, uint64_t len, Status* st) {
    *st = Status::Ok;
    const bool fits = discards.device == index && discards.count < INSTAR_MAX_DISCARD_RANGES;
    if (gather.device != UINT32_MAX || (discards.device != UINT32_MAX && !fits)) {
        if (flush_gathered() != 0) {
            *st = Status::IoError;
            return;
        }
    }
    // Caches of inputs that may be this file are dropped now; their next read sends this first.
    note_device_change(index);
    if (discards.device == index) {
        instar_range& last = discards.ranges[discards.count - 1];
        if (offset == last.offset + last.len) {
            last.len += len;
            return;
        }
    }
    discards.device = index;
    discards.ranges[discards.count++] = {offset, len};
}

class HypercallDevice final : public BlockDevice {
public:
    void init(uint32_t index) {
        uint64_t size = 0, flags = 0;
        if (hc_device_info(index, &size, &flags) != 0) size = 0;
        init(index, size, flags);
    }
    void init(uint32_t index, uint64_t size, uint64_t flags) {
        index_ = index;
        size_ = size;
        writable_ = (flags & INSTAR_DEVICE_WRITABLE) != 0;
        output_ = (flags & INSTAR_DEVICE_OUTPUT) != 0;
    }
    bool output() const { return output_; }
    bool writable() const { return writable_; }
    uint32_t index() const { return index_; }
    uint64_t size() const override { return size_; }
    Status read(uint64_t offset, void* buf, size_t len) override {
        if (!in_range(offset, len)) return Status::IoError;
        if (len == 0) return Status::Ok;
        Status st = Status::Ok;
        const bool forward = offset >= last_end_ && offset - last_end_ < WINDOW_MAX_GAP;
        streak_ = forward ? (streak_ < WINDOW_STREAK ? streak_ + 1 : streak_) : 0;
        last_end_ = offset + len;
        if (!writable_ && windows_allowed && len <= window_max_read && !devices_changed() &&
            read_windowed(index_, size_, offset, buf, len, streak_ >= WINDOW_STREAK))
            return Status::Ok;
        if (!writable_ && len < SMALL_READ_BLOCK && read_small(index_, size_, offset, buf, len, &st)) return st;
        if (writable_ && !gathering_allowed && len < SMALL_READ_BLOCK) {
            if (read_own(index_, offset, buf, len)) return Status::Ok;
            if (fetch_own(index_, offset, len, &st)) {
                if (st == Status::Ok) __builtin_memcpy(buf, own_bytes + (offset - own_block.offset), len);
                return st;
            }
        }
        return hc_read(index_, offset, buf, len) == 0 ? Status::Ok : Status::IoError;
    }
    Status write(uint64_t offset, const void* buf, size_t len) override {
        if (!writable_ || !in_range(offset, len)) return Status::IoError;
        if (len == 0) return Status::Ok;
        Status st = Status::Ok;
        if (output_ && gathering_allowed && len <= GATHER_MAX_WRITE && gather_write(index_, offset, buf, len, &st))
            return st;
        return hc_write(index_, offset, buf, len) == 0 ? Status::Ok : Status::IoError;
    }

    Status discard(uint64_t offset, uint64_t len) override {
        if (!writable_ || !in_range(offset, len)) return Status::IoError;
        if (len == 0) return Status::Ok;
        if (discard_gathering_allowed) {
            Status st = Status::Ok;
            gather_discard(index_, offset, len, &st);
            return st;
        }
        return hc_discard(index_, offset, len) == 0 ? Status::Ok : Status::IoError;
    }
    Status allocation(uint64_t offset, bool* data, uint64_t* length) override {
        if (offset >= size_) return Status::IoError;
        const bool runs = !writable_ && !devices_changed();
        if (runs && cached_run(index_, offset, data, length)) return Status::Ok;
        const int64_t ret = runs ? fetch_runs(index_, offset, size_, data, length)
                                 : hc_allocation(index_, offset, data, length);
        if (ret != 0 || *length == 0 || *length > size_ - offset) return Status::IoError;
        return Status::Ok;
    }

private:
    bool in_range(uint64_t offset, uint64_t len) const { return offset <= size_ && len <= size_ - offset; }

    uint32_t index_ = 0;
    uint64_t size_ = 0;
    bool writable_ = false;
    bool output_ = false;
    uint64_t last_end_ = 0; // the end of the last read (read windows)
    uint32_t streak_ = 0;   // reads in a row that followed the one before closely (WINDOW_STREAK)
};

// The boot devices, in the arena: INSTAR_MAX_DEVICES is large (a vmdk's extents), most runs have few.
constinit HypercallDevice* devices = nullptr;
constinit uint32_t count = 0;

} // namespace

void devices_init(const instar_boot_info& boot) {
    count = 0;
    uint32_t n = boot.device_count < INSTAR_MAX_DEVICES ? boot.device_count : INSTAR_MAX_DEVICES;
    if (n == 0) return;
    void* table = arena().allocate(n * sizeof(HypercallDevice), alignof(HypercallDevice));
    if (table == nullptr) return; // no devices: every operation then fails on device(0)
    devices = static_cast<HypercallDevice*>(table);
    for (uint32_t i = 0; i < n; ++i) {
        new (&devices[i]) HypercallDevice();
        if (i < INSTAR_BOOT_DEVICES)
            devices[i].init(i, boot.devices[i].size, boot.devices[i].flags); // described at boot: no exit
        else
            devices[i].init(i);
    }
    count = n;
}

uint32_t device_count() { return count; }

bool devices_changed() { return changed_devices; }

void note_device_change(uint32_t index, bool own_write) {
    if (!own_write || own_block.device != index) own_block.device = UINT32_MAX;
    // Devices past the boot ones were added by the host during the run (INSTAR_HC_ADD_FILE): new
    // outputs. A new output is a file the host created for this run, never one an input names.
    if (index >= count || devices[index].output()) return;
    changed_devices = true;
    small_device = UINT32_MAX;
    for (RunSlot& s : run_slots) s.count = 0;
    for (WindowSlot& w : window_slots) w.device = UINT32_MAX;
}

void note_file_length(uint32_t index, uint64_t length) {
    if (index >= count || !devices[index].writable()) return;
    if (file_lengths == nullptr) {
        if (length == 0) return;
        file_lengths = static_cast<uint64_t*>(arena().allocate(count * sizeof(uint64_t), alignof(uint64_t)));
        if (file_lengths == nullptr) return; // no fetches: reads are made as asked
        for (uint32_t i = 0; i < count; ++i) file_lengths[i] = 0;
    }
    file_lengths[index] = length;
}

void note_own_read(uint32_t index, uint64_t offset, const void* src, uint64_t len) {
    if (index >= count || !devices[index].writable() || gathering_allowed || len == 0) return;
    OwnBlock& b = own_block;
    // A short read is what may come again (a header): it takes the block. A longer one that covers
    // the bytes held refreshes them from there on; elsewhere it leaves them.
    const bool covers = b.device == index && offset <= b.offset && b.offset - offset < len;
    if (!covers && b.device != UINT32_MAX && len >= SMALL_READ_BLOCK) return;
    const uint64_t start = covers ? b.offset : offset;
    const uint64_t n = offset + len - start < SMALL_READ_BLOCK ? offset + len - start : SMALL_READ_BLOCK;
    __builtin_memmove(own_bytes, static_cast<const uint8_t*>(src) + (start - offset), n); // a fetch reads into it
    b = OwnBlock{index, start, n};
}

void note_own_write(uint32_t index, uint64_t offset, const void* src, uint64_t len, bool taken) {
    // A write past the known end makes the file longer (a failed one may have too: not known then).
    if (file_lengths != nullptr && index < count && file_lengths[index] != 0 && offset + len > file_lengths[index])
        file_lengths[index] = taken ? offset + len : 0;
    OwnBlock& b = own_block;
    if (b.device != index || offset >= b.offset + b.len || offset + len <= b.offset) return;
    if (!taken) {
        b.device = UINT32_MAX;
        return;
    }
    // The overlap of [offset, offset + len) with the bytes held.
    const uint64_t from = offset > b.offset ? offset : b.offset;
    const uint64_t to = offset + len < b.offset + b.len ? offset + len : b.offset + b.len;
    __builtin_memcpy(own_bytes + (from - b.offset), static_cast<const uint8_t*>(src) + (from - offset), to - from);
}

void allow_read_windows(uint64_t max_read, uint64_t first) {
    windows_allowed = true;
    window_max_read = max_read < WINDOW_MAX_READ ? max_read : WINDOW_MAX_READ;
    window_first = first == 0 ? READ_WINDOW_FIRST : (first < READ_WINDOW ? first : READ_WINDOW);
}

void allow_write_gathering() {
    gathering_allowed = true;
    own_block.device = UINT32_MAX; // gathered writes reach the device later: the block could not follow
}

void allow_discard_gathering() { discard_gathering_allowed = true; }

int64_t flush_gathered() {
    if (discards.device != UINT32_MAX) {
        const uint32_t index = discards.device;
        const uint32_t n = discards.count;
        discards.device = UINT32_MAX; // first: hc_discard_ranges flushes too, and finds nothing now
        discards.count = 0;
        return hc_discard_ranges(index, discards.ranges, n) == 0 ? 0 : -INSTAR_EIO;
    }
    if (gather.device == UINT32_MAX) return 0;
    const uint32_t index = gather.device;
    gather.device = UINT32_MAX; // first: hc_write flushes too, and finds nothing now
    const int64_t ret = gather.segments == 1 ? hc_write(index, gather.segs[0].offset, gather.buf, gather.segs[0].len)
                                             : hc_write_segments(index, gather.segs, gather.segments);
    return ret == 0 ? 0 : -INSTAR_EIO;
}

BlockDevice* device(uint32_t index) { return index < count ? &devices[index] : nullptr; }

// Devices the host attached during the run, by host index - count: a table that grows by doubling
// (most runs attach none or a few: a chain's backing files, a created image's extents; zeroing room
// for every possible index cost a 4 KiB-page guest ~200 page faults, 2 ms under kvm-pvm).
constinit HypercallDevice** attached = nullptr;
constinit uint32_t attached_cap = 0; // slots in `attached`
constexpr uint32_t ATTACHED_SLOTS = INSTAR_MAX_DEVICES + INSTAR_MAX_ADDED_FILES;
constexpr uint32_t ATTACHED_FIRST_CAP = 64;
constinit uint32_t last_attached = UINT32_MAX;

// Room for slot `slot`; false when the arena has none.
bool attached_room(uint32_t slot) {
    if (slot < attached_cap) return true;
    uint32_t cap = attached_cap == 0 ? ATTACHED_FIRST_CAP : attached_cap;
    while (cap <= slot) cap *= 2; // slot < ATTACHED_SLOTS < 2^31: no overflow
    void* table = arena().allocate(cap * sizeof(HypercallDevice*), alignof(HypercallDevice*));
    if (table == nullptr) return false;
    __builtin_memset(table, 0, cap * sizeof(HypercallDevice*));
    if (attached != nullptr) {
        __builtin_memcpy(table, attached, attached_cap * sizeof(HypercallDevice*));
        arena().deallocate(attached, attached_cap * sizeof(HypercallDevice*));
    }
    attached = static_cast<HypercallDevice**>(table);
    attached_cap = cap;
    return true;
}

BlockDevice* attach_device(uint32_t index) {
    if (index < count || index >= ATTACHED_SLOTS) return nullptr;
    const uint32_t slot = index - count;
    if (!attached_room(slot)) return nullptr;
    // Added files live as long as the run; the arena goes with the VM, so they are never freed.
    void* p = arena().allocate(sizeof(HypercallDevice), alignof(HypercallDevice));
    if (p == nullptr || attached[slot] != nullptr) return nullptr;
    auto* dev = new (p) HypercallDevice();
    dev->init(index);
    attached[slot] = dev;
    last_attached = index;
    return dev;
}

BlockDevice* any_device(uint32_t index) {
    if (index < count) return &devices[index];
    const uint32_t slot = index - count; // index >= count: no wrap
    return slot < attached_cap ? attached[slot] : nullptr;
}

uint32_t device_index(const BlockDevice& dev) {
    if (count != 0 && &dev >= &devices[0] && &dev < &devices[0] + count)
        return static_cast<uint32_t>(static_cast<const HypercallDevice*>(&dev) - devices);
    if (attached == nullptr) return UINT32_MAX;
    // Emitters size a file right after adding it: the newest device is the usual answer.
    if (last_attached < ATTACHED_SLOTS && attached[last_attached - count] == &dev) return last_attached;
    for (uint32_t i = 0; i < attached_cap; ++i)
        if (attached[i] == &dev) return count + i;
    return UINT32_MAX;
}

} // namespace instar::guest
