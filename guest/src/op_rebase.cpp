// INSTAR_OP_REBASE: rebase's safe mode (docs/rebase.md). Reads the host's plan, opens the image, its
// old backing chain and the new backing chain with their formats' readers and the image's format's
// writer over the image's writable device, then walks the image as img_rebase does: where the image
// allocates nothing, the old and new chains are read and every cluster of the image in which they
// differ gets the old chain's bytes written into the image (whole clusters, as qemu-img 10.0 aligns
// its writes; under 7.2 the differing sectors, as 7.2 writes them). The image's content never
// changes (it still reads the old chain where it allocates nothing), so a kill at any point leaves
// it as it was, at worst with leaked clusters. The backing switch is the host's next step.
#include "create_target.h"
#include "image_table.h"

#include "byte_scan.h"
#include "chain_reader.h"

#include <instar/guest/arena_new.h>

namespace instar::guest {
namespace {

// qemu-img's IO_BUF_SIZE: the walk's step, and what each of the two buffers holds.
constexpr uint64_t REBASE_CHUNK = 2u << 20;

struct Plan {
    instar_rebase_plan head{};
    instar_convert_image* images = nullptr;
    uint64_t file_count = 0;               // INSTAR_REBASE_IMAGE_FILES: the image's other files
    const uint8_t* file_lengths = nullptr; // file_count uint64 lengths
};

Status read_plan(uint32_t plan_device, Plan& plan) {
    uint8_t* bytes = nullptr;
    size_t size = 0;
    if (const Status st = read_plan_device(plan_device, sizeof(instar_rebase_plan), &bytes, &size); st != Status::Ok)
        return st;
    __builtin_memcpy(&plan.head, bytes, sizeof plan.head);
    const instar_rebase_plan& h = plan.head;
    const uint64_t table = static_cast<uint64_t>(h.image_count) * sizeof(instar_convert_image);
    if (h.magic != INSTAR_REBASE_PLAN_MAGIC || h.image_count < 1 || h.image_count > INSTAR_CONVERT_MAX_IMAGES ||
        h.write_device >= device_count() || device(h.write_device) == nullptr ||
        (h.flags & ~(INSTAR_REBASE_PROGRESS | INSTAR_REBASE_COMPRESS | INSTAR_REBASE_IMAGE_FILES)) != 0 ||
        (h.new_backing != INSTAR_CONVERT_NO_BACKING && (h.new_backing == 0 || h.new_backing >= h.image_count)))
        return Status::Invalid;
    uint64_t tail = 0;
    if ((h.flags & INSTAR_REBASE_IMAGE_FILES) != 0) {
        if (size < sizeof h + table + 8)
            return Status::Invalid;
        __builtin_memcpy(&plan.file_count, bytes + sizeof h + table, 8);
        if (plan.file_count == 0 || plan.file_count > MAX_EXISTING_FILES)
            return Status::Invalid;
        tail = 8 + 8 * plan.file_count;
        plan.file_lengths = bytes + sizeof h + table + 8;
    }
    if (sizeof h + table + tail != size)
        return Status::Invalid;
    // The plan starts 16-aligned; 32 is a multiple of the entries' alignment.
    plan.images = reinterpret_cast<instar_convert_image*>(bytes + sizeof h);
    return check_image_table(plan.images, h.image_count);
}

void send(uint32_t outcome, uint32_t image, uint64_t copied) {
    const instar_rebase_record rec{outcome, image, copied};
    hc_record(INSTAR_REC_REBASE, &rec, sizeof rec);
}

struct Walk {
    ImageReader* image;          // the image alone (its own allocation)
    convert::ChainReader old_chain;
    convert::ChainReader new_chain;
    bool has_old;
    bool has_new;
    ImageWriter* writer;
    bool compress;
    bool progress;
    bool loop_72;             // 7.2's loop: steps end where a backing file ends; differing sectors
    uint64_t old_size;        // the old and new backing chains' virtual sizes (0: none)
    uint64_t new_size;
    uint8_t* buf_old;
    uint8_t* buf_new;
    // Write-behind (docs/sandbox.md): the host may still be writing from one old-data buffer while
    // the next chunk is read into the other; made once the host is seen to defer writes.
    uint8_t* buf_old_spare;
    uint64_t copied = 0;
};

// Writes from the old-data buffer may be deferred while this lives (never those from a writer's
// own buffers).
struct DeferFrom {
    DeferFrom(const void* buf, uint64_t len) { defer_writes_from(buf, len); }
    ~DeferFrom() { defer_writes_from(nullptr, 0); }
    DeferFrom(const DeferFrom&) = delete;
    DeferFrom& operator=(const DeferFrom&) = delete;
};

// One unallocated run [offset, offset + n) of the image, n <= REBASE_CHUNK: compare and copy.
uint32_t copy_run(Walk& w, uint64_t offset, uint64_t n, uint64_t cs, uint64_t sc) {
    if (w.buf_old_spare == nullptr && host_defers_writes())
        w.buf_old_spare = static_cast<uint8_t*>(arena().allocate(REBASE_CHUNK, 64));
    if (w.buf_old_spare != nullptr) {
        uint8_t* t = w.buf_old;
        w.buf_old = w.buf_old_spare;
        w.buf_old_spare = t;
    }
    settle_writes_from(w.buf_old); // its last write may still be in flight
    if (!w.has_old) __builtin_memset(w.buf_old, 0, static_cast<size_t>(n)); // no backing file: zeros
    else if (w.old_chain.read(offset, w.buf_old, static_cast<size_t>(n)) != Status::Ok)
        return INSTAR_REBASE_READ_OLD;
    if (!w.has_new) __builtin_memset(w.buf_new, 0, static_cast<size_t>(n));
    else if (w.new_chain.read(offset, w.buf_new, static_cast<size_t>(n)) != Status::Ok)
        return INSTAR_REBASE_READ_NEW;
    // Consecutive differing clusters go to the writer as one request (qcow2 appends them as one
    // run: a few writes instead of a few per cluster); -c stores each cluster of a run compressed.
    // A run that starts at or past the old chain's end is written as zeros (img_rebase's
    // blk_pwrite_zeroes once the old backing file is at EOF: qcow2 v3 zero clusters, no data).
    uint64_t done = 0, run_start = 0, run_len = 0;
    const DeferFrom window(w.buf_old, REBASE_CHUNK);
    auto flush_run = [&]() -> uint32_t {
        if (run_len == 0) return INSTAR_REBASE_DONE;
        const uint64_t at = offset + run_start;
        Status st = Status::Ok;
        if (!w.has_old || at >= w.old_size) {
            st = w.writer->write_zeroes(at, run_len, false);
        } else if (!w.compress) {
            st = w.writer->write(at, w.buf_old + run_start, static_cast<size_t>(run_len));
        } else {
            for (uint64_t i = 0; i < run_len && st == Status::Ok;) {
                uint64_t piece = cs - ((at + i) & (cs - 1));
                if (piece > run_len - i) piece = run_len - i;
                st = w.writer->write_compressed(at + i, w.buf_old + run_start + i, static_cast<size_t>(piece));
                i += piece;
            }
        }
        w.copied += run_len;
        run_len = 0;
        return st == Status::Ok ? INSTAR_REBASE_DONE : INSTAR_REBASE_WRITE;
    };
    // What is compared and written: whole subclusters of the image (10.0 aligns its writes to
    // bdrv_get_info's subcluster_size: the cluster, or a 32nd of it with extended L2 entries), or
    // 512-byte sectors (7.2's compare_buffers: only the differing sectors are written; a partial
    // cluster is completed from the old chain by the writer's copy-on-write, so the content is
    // the same and only enabled dirty bitmaps finer than a cluster can tell the two apart).
    const uint64_t unit = w.loop_72 ? 512 : sc;
    while (done < n) {
        // Up to the next unit boundary of the image.
        const uint64_t at = offset + done;
        uint64_t piece = unit - (at & (unit - 1));
        if (piece > n - done) piece = n - done;
        if (convert::buffers_differ(w.buf_old + done, w.buf_new + done, piece)) {
            if (run_len == 0) run_start = done;
            run_len += piece;
        } else if (const uint32_t out = flush_run(); out != INSTAR_REBASE_DONE) {
            return out;
        }
        done += piece;
    }
    if (const uint32_t out = flush_run(); out != INSTAR_REBASE_DONE) return out;
    return INSTAR_REBASE_DONE;
}

// How far from `at` (at most `len`) a chain reads as zeros by its block status (0: it does not
// start with zeros); no chain reads as zeros throughout. *failed on a status error.
uint64_t zeros_from(const convert::ChainReader& c, bool has, uint64_t at, uint64_t len, bool* failed) {
    if (!has) return len;
    convert::ChainClass cls{};
    uint64_t run = 0;
    if (c.status(at, len, false, &cls, &run) != Status::Ok || run == 0 || run > len) {
        *failed = true;
        return 0;
    }
    return cls == convert::ChainClass::Zero ? run : 0;
}

// One unallocated step [offset, offset + n) of the image: where both chains read as zeros by
// block status (whole compare units of it) nothing can differ, and nothing is read or compared
// (qemu-img skips such spans too: 10.0 by block status, 7.2 where the new backing file lies in
// the old chain); the rest goes to copy_run in maximal pieces, so its writes merge as before.
uint32_t copy_step(Walk& w, uint64_t offset, uint64_t n, uint64_t cs, uint64_t sc) {
    const uint64_t unit = w.loop_72 ? 512 : sc;
    const uint64_t end = offset + n;
    uint64_t pending = offset; // start of what still goes to copy_run
    for (uint64_t pos = offset; pos < end;) {
        bool failed = false;
        const uint64_t zo = zeros_from(w.old_chain, w.has_old, pos, end - pos, &failed);
        const uint64_t both = zo == 0 ? 0 : zeros_from(w.new_chain, w.has_new, pos, zo, &failed);
        if (failed) return INSTAR_REBASE_STATUS_FAILED;
        if (both == 0) {
            // Up to where either chain's class may change: the next status answer decides.
            convert::ChainClass cls{};
            uint64_t ro = end - pos, rn = end - pos;
            if (w.has_old && w.old_chain.status(pos, end - pos, false, &cls, &ro) != Status::Ok)
                return INSTAR_REBASE_STATUS_FAILED;
            if (w.has_new && w.new_chain.status(pos, end - pos, false, &cls, &rn) != Status::Ok)
                return INSTAR_REBASE_STATUS_FAILED;
            const uint64_t step = ro < rn ? ro : rn;
            pos += step == 0 || step > end - pos ? end - pos : step;
            continue;
        }
        // Whole units of the zero span: from the next unit boundary to the last one inside it
        // (or the step's end).
        const uint64_t from = (pos + unit - 1) / unit * unit;
        const uint64_t to = pos + both == end ? end : (pos + both) / unit * unit;
        if (to <= from) {
            pos += both;
            continue;
        }
        for (uint64_t at = pending; at < from;) { // what came before, in chunks copy_run takes
            const uint64_t k = from - at < REBASE_CHUNK ? from - at : REBASE_CHUNK;
            if (const uint32_t out = copy_run(w, at, k, cs, sc); out != INSTAR_REBASE_DONE) return out;
            at += k;
        }
        pending = to;
        pos = to;
    }
    if (pending < end) return copy_run(w, pending, end - pending, cs, sc);
    return INSTAR_REBASE_DONE;
}

uint32_t walk(Walk& w, uint64_t size, uint64_t cs, uint64_t sc) {
    for (uint64_t offset = 0; offset < size;) {
        uint64_t n = size - offset < REBASE_CHUNK ? size - offset : REBASE_CHUNK;
        Extent e{};
        if (w.image->status(offset, n, &e) != Status::Ok || e.length == 0 || e.length > n)
            return INSTAR_REBASE_STATUS_FAILED;
        n = e.length;
        if (e.allocation == Allocation::Unallocated) {
            // qemu-img 7.2 ends a step where either backing file ends (10.0 reads both over the
            // whole step): one progress figure per step, so the same number of figures.
            // qemu's qcow2 block status ends at the end of an L2 table (cluster_size / 8 entries,
            // / 16 with extended L2 entries, the images with subclusters): each step stays inside
            // one, so 7.2 and 10.0 print as many figures.
            const uint64_t l2_span = cs * (cs / (sc != cs ? 16 : 8));
            if (n > l2_span - offset % l2_span) n = l2_span - offset % l2_span;
            if (w.loop_72) {
                const uint64_t ends[2] = {w.old_size, w.new_size};
                for (const uint64_t end : ends)
                    if (offset < end && n > end - offset) n = end - offset;
            }
            // The image allocates whole clusters: an unallocated run starts and ends on its
            // cluster boundaries (or the disk's end), so whole clusters are written.
            if (const uint32_t out = copy_step(w, offset, n, cs, sc); out != INSTAR_REBASE_DONE) return out;
            // One figure per step that was not skipped, as img_rebase (the host adds qemu's
            // 100 / (size / IO_BUF_SIZE) for each).
            if (w.progress) hc_progress(offset + n, size);
        }
        offset += n;
    }
    return INSTAR_REBASE_DONE;
}

} // namespace

Status rebase_op(const uint8_t* arg, uint32_t arg_len) {
    instar_rebase_arg a{};
    if (arg_len != sizeof a) return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    Plan plan;
    if (const Status st = read_plan(a.plan_device, plan); st != Status::Ok) return st;
    const instar_rebase_plan& h = plan.head;
    RecordReasons reasons;

    auto* readers =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* chains =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* buf_old = static_cast<uint8_t*>(arena().allocate(REBASE_CHUNK, 64));
    auto* buf_new = static_cast<uint8_t*>(arena().allocate(REBASE_CHUNK, 64));
    if (readers == nullptr || chains == nullptr || buf_old == nullptr || buf_new == nullptr) return Status::NoMemory;
    Secrets secrets;
    if (const Status sst = read_secrets(a.secrets_device, h.image_count, &secrets); sst != Status::Ok)
        return sst;
    uint32_t opened = 0;
    Status st = open_images(plan.images, h.image_count, nullptr, h.qemu_version, reasons, readers, &opened, &secrets);
    if (st != Status::Ok) {
        send(INSTAR_REBASE_OPEN_FAILED, opened, 0);
        close_images(readers, opened);
        return Status::Ok; // the record says what failed
    }

    // The old chain: entry 0's backing downwards; the new one from new_backing. They share no
    // entries (the host added them separately), so together they fit the table's size.
    uint32_t old_depth = 0, new_depth = 0;
    if (plan.images[0].backing != INSTAR_CONVERT_NO_BACKING)
        st = chain_of(plan.images, h.image_count, plan.images[0].backing, readers, chains, h.image_count, &old_depth);
    if (st == Status::Ok && h.new_backing != INSTAR_CONVERT_NO_BACKING)
        st = chain_of(plan.images, h.image_count, h.new_backing, readers, chains + old_depth,
                      h.image_count - old_depth, &new_depth);
    if (st != Status::Ok) {
        close_images(readers, opened);
        return st;
    }

    // The image's format's writer over its writable file (convert -n's entry point).
    const ModuleOps* m = module(plan.images[0].module);
    ImageWriter* writer = nullptr;
    if (m->open_writer == nullptr) {
        static constexpr char TEXT[] = "instar cannot write into an image of this format yet";
        reasons.reason(TEXT, sizeof TEXT - 1);
        send(INSTAR_REBASE_WRITE, 0, 0);
        close_images(readers, opened);
        return Status::Ok;
    }
    auto* file = arena_new<ExistingTarget>(arena(), *device(h.write_device), h.image_length);
    if (file == nullptr) {
        close_images(readers, opened);
        return Status::NoMemory;
    }
    // The image's other files (a data file, vmdk extents) follow its writable device.
    const auto nfiles = static_cast<uint32_t>(plan.file_count);
    BlockDevice** files = nullptr;
    if ((st = existing_files(h.write_device, plan.file_lengths, nfiles, &files)) != Status::Ok) {
        close_images(readers, opened);
        return st;
    }
    OpenRequest req{file, files, nfiles, &arena(), &codecs(), &reasons, nullptr, h.qemu_version};
    // An encrypted image is written with its own key: entry 0's secret (the reader unlocked it).
    if (secrets.bytes != nullptr) {
        req.secret = secrets.bytes[0];
        req.secret_len = secrets.lengths[0];
    }
    if ((st = m->open_writer(req, &writer)) != Status::Ok) {
        // Corrupt: the image fails qemu's read-write open (its corrupt bit, a broken encryption
        // header), which qemu-img rebase words as the image's failed open, before anything else.
        send(st == Status::Corrupt ? INSTAR_REBASE_OPEN_FAILED : INSTAR_REBASE_WRITE, 0, 0);
        close_images(readers, opened);
        return Status::Ok;
    }
    // Partly written clusters (none from this walk but a short tail) are filled from the old chain.
    convert::ChainImageReader old_image(chains, old_depth);
    writer->set_backing(&old_image);

    Walk w{readers[0],
           convert::ChainReader(chains, old_depth),
           convert::ChainReader(chains + old_depth, new_depth),
           old_depth > 0,
           new_depth > 0,
           writer,
           (h.flags & INSTAR_REBASE_COMPRESS) != 0,
           (h.flags & INSTAR_REBASE_PROGRESS) != 0,
           h.qemu_version < 80000,
           old_depth > 0 ? chains[0]->virtual_size() : 0,
           new_depth > 0 ? chains[old_depth]->virtual_size() : 0,
           buf_old,
           buf_new,
           nullptr};
    uint64_t cs = writer->cluster_size();
    if (cs == 0 || (cs & (cs - 1)) != 0 || cs > REBASE_CHUNK) cs = 512; // a format without clusters: sectors
    uint64_t sc = writer->subcluster_size();
    if (sc < 512 || sc > cs || cs % sc != 0) sc = cs;
    uint32_t outcome = walk(w, readers[0]->virtual_size(), cs, sc);
    settle_writes_from(w.buf_old);
    if (w.buf_old_spare != nullptr) settle_writes_from(w.buf_old_spare);
    if (outcome == INSTAR_REBASE_DONE && (st = writer->finish()) != Status::Ok) outcome = INSTAR_REBASE_WRITE;
    writer->close();
    // The copied data durable before the host switches the header to the new backing file.
    for (uint32_t i = 0; i < nfiles && outcome == INSTAR_REBASE_DONE; ++i)
        if (hc_flush(h.write_device + 1 + i) < 0) outcome = INSTAR_REBASE_WRITE;
    if (outcome == INSTAR_REBASE_DONE && hc_flush(h.write_device) < 0) outcome = INSTAR_REBASE_WRITE;
    send(outcome, 0, w.copied);
    close_images(readers, opened);
    return Status::Ok;
}

} // namespace instar::guest
