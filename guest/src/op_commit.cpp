// INSTAR_OP_COMMIT: reads the host's plan (a device), opens the top image's chain with its formats'
// readers and the base with its format's writer (open_writer, as convert -n), and copies every range
// allocated above the base (qemu's bdrv_is_allocated_above over [top, base)) into the base: data as
// the chain reads it, zero ranges as write_zeroes. The host empties the top afterwards (INSTAR_OP_EDIT).
#include "create_target.h"
#include "image_table.h"

#include "chain_reader.h"

#include <instar/guest/arena_new.h>

namespace instar::guest {
namespace {

// The most one request copies: qemu's mirror buffer is 1 MiB x 16 in flight; 2 MiB is the guest's
// usual bulk-data unit (docs/architecture.md) and stays far below guest RAM.
constexpr uint64_t COMMIT_CHUNK = 2u << 20;

void report_failure(uint32_t phase, uint32_t image) {
    const instar_convert_failure f{phase, image};
    hc_record(INSTAR_REC_CONVERT_FAILURE, &f, sizeof f);
}

struct Plan {
    instar_commit_plan head{};
    instar_convert_image* images = nullptr;
    uint64_t file_count = 0;          // INSTAR_COMMIT_BASE_FILES: the base's other files
    const uint8_t* file_lengths = nullptr; // file_count uint64 lengths
};

Status read_plan(uint32_t plan_device, Plan& plan) {
    uint8_t* bytes = nullptr;
    size_t size = 0;
    if (const Status st = read_plan_device(plan_device, sizeof(instar_commit_plan), &bytes, &size); st != Status::Ok)
        return st;
    __builtin_memcpy(&plan.head, bytes, sizeof plan.head);
    const instar_commit_plan& h = plan.head;
    const uint64_t table = static_cast<uint64_t>(h.image_count) * sizeof(instar_convert_image);
    if (h.magic != INSTAR_COMMIT_PLAN_MAGIC || h.image_count < 2 || h.image_count > INSTAR_CONVERT_MAX_IMAGES ||
        h.base == 0 || h.base >= h.image_count || (h.flags & ~(INSTAR_COMMIT_PROGRESS | INSTAR_COMMIT_BASE_FILES)) != 0)
        return Status::Invalid;
    uint64_t tail = 0;
    if ((h.flags & INSTAR_COMMIT_BASE_FILES) != 0) {
        if (size < sizeof h + table + 8) return Status::Invalid;
        __builtin_memcpy(&plan.file_count, bytes + sizeof h + table, 8);
        if (plan.file_count == 0 || plan.file_count > MAX_EXISTING_FILES) return Status::Invalid;
        tail = 8 + 8 * plan.file_count;
        plan.file_lengths = bytes + sizeof h + table + 8;
    }
    if (sizeof h + table + tail != size) return Status::Invalid;
    plan.images = reinterpret_cast<instar_convert_image*>(bytes + sizeof h); // 16-aligned + 32
    if (const Status st = check_image_table(plan.images, h.image_count); st != Status::Ok) return st;
    // The table is one chain: entry i is backed by entry i + 1, so chain positions are table indices.
    for (uint32_t i = 0; i + 1 < h.image_count; ++i)
        if (plan.images[i].backing != i + 1) return Status::Invalid;
    if (plan.images[h.image_count - 1].backing != INSTAR_CONVERT_NO_BACKING || device(h.target_device) == nullptr)
        return Status::Invalid;
    return Status::Ok;
}

// qemu's bdrv_is_allocated_above(top, base_overlay, include_base = true): whether the first run of
// [offset, offset + len) is allocated in any of layers[0, above), and the run's length. A layer
// shorter than `offset` counts as unallocated there; a layer's run that reaches its own end does not
// shorten the answer (except the top's), as in qemu.
Status allocated_above(ImageReader* const* layers, uint32_t above, uint64_t offset, uint64_t len, bool* allocated,
                       uint64_t* run) {
    uint64_t n = len;
    for (uint32_t i = 0; i < above; ++i) {
        const uint64_t size = layers[i]->virtual_size();
        if (offset >= size) continue;
        const uint64_t ask = len < size - offset ? len : size - offset;
        Extent e{};
        if (const Status st = layers[i]->status(offset, ask, &e); st != Status::Ok) return st;
        if (e.length == 0 || e.length > ask) return Status::Invalid;
        if (e.allocation != Allocation::Unallocated) {
            *allocated = true;
            *run = e.length;
            return Status::Ok;
        }
        if (n > e.length && (i == 0 || offset + e.length < size)) n = e.length;
    }
    *allocated = false;
    *run = n;
    return Status::Ok;
}

// The bytes allocated above the base: qemu's job length (mirror_dirty_init), for -p and -r.
Status allocated_total(ImageReader* const* chain, uint32_t above, uint64_t size, uint64_t* total) {
    *total = 0;
    for (uint64_t offset = 0; offset < size;) {
        const uint64_t want = size - offset < COMMIT_CHUNK ? size - offset : COMMIT_CHUNK;
        bool allocated = false;
        uint64_t run = 0;
        if (const Status st = allocated_above(chain, above, offset, want, &allocated, &run); st != Status::Ok)
            return st;
        if (allocated) *total += run;
        offset += run;
    }
    return Status::Ok;
}

// Copies the allocated ranges of [0, size) into `base`. With `progress`, reports the bytes copied
// so far of the bytes to copy (the host's -p display and -r throttle).
Status copy_above(ImageReader* const* chain, uint32_t depth, uint32_t above, ImageWriter& base, bool progress,
                  ReasonSink& reasons) {
    const convert::ChainReader reader(chain, depth);
    const uint64_t size = chain[0]->virtual_size();
    // Write-behind (docs/sandbox.md): once the host is seen to defer writes, a second buffer, so
    // the next run is read while the host still writes the last.
    uint8_t* bufs[2] = {static_cast<uint8_t*>(arena().allocate(COMMIT_CHUNK, 4096)), nullptr};
    if (bufs[0] == nullptr) return Status::NoMemory;
    unsigned turn = 0;
    uint64_t total = 0, copied = 0;
    if (progress)
        if (const Status st = allocated_total(chain, above, size, &total); st != Status::Ok) return st;
    for (uint64_t offset = 0; offset < size;) {
        const uint64_t want = size - offset < COMMIT_CHUNK ? size - offset : COMMIT_CHUNK;
        bool allocated = false;
        uint64_t run = 0;
        if (const Status st = allocated_above(chain, above, offset, want, &allocated, &run); st != Status::Ok)
            return st;
        if (allocated) {
            convert::ChainClass cls{};
            uint64_t n = 0;
            if (const Status st = reader.status(offset, run, false, &cls, &n); st != Status::Ok) return st;
            if (n == 0 || n > run) return Status::Invalid;
            run = n;
            Status st = Status::Ok;
            if (cls == convert::ChainClass::Zero) {
                st = base.write_zeroes(offset, run, true);
            } else {
                uint8_t* buf = bufs[turn];
                if (bufs[1] != nullptr) turn ^= 1;
                settle_writes_from(buf); // its last write may still be in flight
                st = reader.read(offset, buf, run);
                defer_writes_from(buf, COMMIT_CHUNK);
                if (st == Status::Ok) st = base.write(offset, buf, run);
                defer_writes_from(nullptr, 0);
                if (bufs[1] == nullptr && host_defers_writes()) {
                    bufs[1] = static_cast<uint8_t*>(arena().allocate(COMMIT_CHUNK, 4096));
                    turn = bufs[1] != nullptr ? 1 : 0; // no room: one buffer, each refill settled
                }
            }
            if (st != Status::Ok) {
                say_reason(&reasons, "error while writing into the base image");
                return st;
            }
        }
        offset += run;
        if (allocated) copied += run;
        if (progress && allocated && copied <= total) hc_progress(copied, total);
    }
    for (const uint8_t* b : bufs)
        if (b != nullptr) settle_writes_from(b);
    return Status::Ok;
}

} // namespace

Status commit_op(const uint8_t* arg, uint32_t arg_len) {
    instar_commit_arg a{};
    if (arg_len != sizeof a) return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    Plan plan;
    if (const Status st = read_plan(a.plan_device, plan); st != Status::Ok) return st;
    const instar_commit_plan& h = plan.head;
    RecordReasons reasons;

    auto* readers =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* chain =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    if (readers == nullptr || chain == nullptr) return Status::NoMemory;
    Secrets secrets;
    if (const Status sst = read_secrets(a.secrets_device, h.image_count, &secrets); sst != Status::Ok)
        return sst;
    uint32_t opened = 0;
    Status st = open_images(plan.images, h.image_count, nullptr, h.qemu_version, reasons, readers, &opened, &secrets);
    if (st != Status::Ok) {
        report_failure(INSTAR_CONVERT_PHASE_OPEN, opened);
        close_images(readers, opened);
        return st;
    }
    uint32_t depth = 0;
    st = chain_of(plan.images, h.image_count, 0, readers, chain, h.image_count, &depth);
    if (st == Status::Ok && depth != h.image_count) st = Status::Invalid;

    // The base, opened again by its format for writing, on the writable device.
    ImageWriter* writer = nullptr;
    if (st == Status::Ok) {
        const ModuleOps* bm = module(plan.images[h.base].module);
        if (bm->open_writer == nullptr) {
            static constexpr char TEXT[] = "instar cannot write into an existing image of this format yet";
            reasons.reason(TEXT, sizeof TEXT - 1);
            st = Status::Unsupported;
        } else {
            auto* dev = arena_new<ExistingTarget>(arena(), *device(h.target_device), h.base_length);
            // The base's other files (vmdk extents, a data file) follow its device, with their lengths.
            const auto n = static_cast<uint32_t>(plan.file_count);
            BlockDevice** files = nullptr;
            st = dev == nullptr ? Status::NoMemory : existing_files(h.target_device, plan.file_lengths, n, &files);
            OpenRequest req{dev, files, n, &arena(), &codecs(), &reasons, nullptr, h.qemu_version};
            // An encrypted base: its writer encrypts with the secret its reader unlocked with.
            req.secret = secrets.bytes ? secrets.bytes[h.base] : nullptr;
            req.secret_len = secrets.lengths ? secrets.lengths[h.base] : 0;
            req.mirror_chunks = true; // the base's dirty bitmaps record whole mirror chunks
            if (st == Status::Ok) st = bm->open_writer(req, &writer);
        }
        // PHASE_CREATE: opening the base for writing (PHASE_OPEN is a reader, framed as qemu's open).
        if (st != Status::Ok) report_failure(INSTAR_CONVERT_PHASE_CREATE, h.base);
    }
    // A base deeper in the chain has a backing file of its own: its writer copies from it on write.
    auto* below = st == Status::Ok && h.base + 1 < depth
                      ? arena_new<convert::ChainImageReader>(arena(), chain + h.base + 1, depth - h.base - 1)
                      : nullptr;
    if (below != nullptr) writer->set_backing(below);
    if (st == Status::Ok) {
        st = copy_above(chain, depth, h.base, *writer, (h.flags & INSTAR_COMMIT_PROGRESS) != 0, reasons);
        if (st != Status::Ok) report_failure(INSTAR_CONVERT_PHASE_COPY, INSTAR_CONVERT_NO_BACKING);
    }
    if (st == Status::Ok) {
        st = writer->finish();
        if (st != Status::Ok) report_failure(INSTAR_CONVERT_PHASE_FINISH, INSTAR_CONVERT_NO_BACKING);
    }
    if (writer != nullptr) writer->close();
    close_images(readers, opened);
    return st;
}

} // namespace instar::guest
