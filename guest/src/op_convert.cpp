// INSTAR_OP_CONVERT: reads the host's plan (a device), opens every source image with its format's
// reader, makes the target with the target format's writer, and runs the convert engine
// (guest/convert) between them. Failures are reported as an INSTAR_REC_CONVERT_FAILURE naming the
// phase and image, then the format's reason (INSTAR_REC_REASON).
#include "create_target.h"
#include "image_table.h"
#include "info_first.h"
#include "read_ahead_hooks.h"

#include "chain_reader.h"
#include "convert_engine.h"
#include "window_reader.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/dd_window.h>

namespace instar::guest {
namespace {

constexpr uint32_t MAX_SNAPSHOT_NAME = 1024; // qemu's snapshot names are far shorter

void report_failure(uint32_t phase, uint32_t image) {
    const instar_convert_failure f{phase, image};
    hc_record(INSTAR_REC_CONVERT_FAILURE, &f, sizeof f);
}

void progress(void*, uint64_t done, uint64_t total) {
    if (done <= total) hc_progress(done, total);
}

// --salvage: consecutive failed sectors of one kind and status become one record (the host prints
// qemu-img's warning once per sector), so a damaged region costs one record, not one per sector.
// In the copy pass a sector whose block status failed is then read, and usually fails again: those
// pairs coalesce as INSTAR_SALVAGE_BOTH.
struct SalvageRecords {
    instar_convert_salvage pending{};
    bool has_pending = false;
    bool half = false; // BOTH: the next sector's status warning arrived, its read warning not yet

    void flush() {
        if (has_pending) hc_record(INSTAR_REC_CONVERT_SALVAGE, &pending, sizeof pending);
        if (has_pending && half) {
            const instar_convert_salvage rest{INSTAR_SALVAGE_STATUS, pending.status,
                                              pending.offset + pending.sectors * 512, 1};
            hc_record(INSTAR_REC_CONVERT_SALVAGE, &rest, sizeof rest);
        }
        has_pending = false;
        half = false;
    }
    static void add(void* ctx, uint32_t kind, uint64_t offset, Status st) {
        auto* self = static_cast<SalvageRecords*>(ctx);
        instar_convert_salvage& p = self->pending;
        const auto code = static_cast<uint32_t>(st);
        if (self->has_pending && p.status == code) {
            const uint64_t next = p.offset + p.sectors * 512;
            if (p.kind == kind && !self->half && next == offset) {
                ++p.sectors;
                return;
            }
            if (p.kind == INSTAR_SALVAGE_STATUS && kind == INSTAR_SALVAGE_READ && p.sectors == 1 &&
                offset == p.offset) {
                p.kind = INSTAR_SALVAGE_BOTH;
                return;
            }
            if (p.kind == INSTAR_SALVAGE_BOTH && kind == INSTAR_SALVAGE_STATUS && !self->half && offset == next) {
                self->half = true;
                return;
            }
            if (p.kind == INSTAR_SALVAGE_BOTH && kind == INSTAR_SALVAGE_READ && self->half && offset == next) {
                self->half = false;
                ++p.sectors;
                return;
            }
        }
        self->flush();
        p = instar_convert_salvage{kind, code, offset, 1};
        self->has_pending = true;
    }
};

struct Plan {
    instar_convert_plan head{};
    instar_convert_image* images = nullptr;
    uint8_t* create = nullptr; // in the plan's own copy: PLAN_FROM_INFO fills in the size
    const char* snapshot = nullptr; // NUL-terminated copy, or nullptr
    bool exact = false;       // INSTAR_CONVERT_SNAPSHOT_EXACT: `exact` names the snapshot
    ExactSnapshot exact_snapshot;
    instar_dd_window_spec dd{}; // dd_spec_follows: img_dd's arguments
};

// A dd planned before its input was open: img_dd's arguments follow the snapshot bytes.
bool dd_spec_follows(const instar_convert_plan& h) {
    return (h.flags & INSTAR_CONVERT_PLAN_FROM_INFO) != 0 && (h.flags & INSTAR_CONVERT_WINDOW) != 0;
}

// Reads and checks the plan: every index inside the tables the host gave us.
Status read_plan(uint32_t plan_device, Plan& plan) {
    uint8_t* bytes = nullptr;
    size_t size = 0;
    if (const Status st = read_plan_device(plan_device, sizeof(instar_convert_plan), &bytes, &size); st != Status::Ok)
        return st;
    __builtin_memcpy(&plan.head, bytes, sizeof plan.head);
    const instar_convert_plan& h = plan.head;
    const uint64_t table = static_cast<uint64_t>(h.image_count) * sizeof(instar_convert_image);
    if (h.magic != INSTAR_CONVERT_PLAN_MAGIC || h.image_count == 0 || h.image_count > INSTAR_CONVERT_MAX_IMAGES ||
        h.source_count == 0 || h.source_count > h.image_count || h.snapshot_len > MAX_SNAPSHOT_NAME ||
        sizeof h + table + h.create_len + h.snapshot_len + (dd_spec_follows(h) ? sizeof(instar_dd_window_spec) : 0) !=
            size)
        return Status::Invalid;
    plan.images = reinterpret_cast<instar_convert_image*>(bytes + sizeof h); // 16-aligned + 72: 8-aligned
    plan.create = bytes + sizeof h + table;
    if (dd_spec_follows(h)) {
        __builtin_memcpy(&plan.dd, bytes + sizeof h + table + h.create_len + h.snapshot_len, sizeof plan.dd);
        if (plan.dd.block_size == 0 || plan.dd.block_size > INT64_MAX ||
            (plan.dd.flags & ~(INSTAR_DD_HAS_COUNT | INSTAR_DD_HAS_SKIP)) != 0 || plan.dd.reserved != 0)
            return Status::Invalid;
    }
    if (h.snapshot_len > 0 || (h.flags & INSTAR_CONVERT_SNAPSHOT) != 0) {
        char* const text = reinterpret_cast<char*>(bytes + sizeof h + table + h.create_len);
        text[h.snapshot_len] = 0; // the spare byte read_plan_device keeps
        if ((h.flags & INSTAR_CONVERT_SNAPSHOT_EXACT) == 0) {
            if (__builtin_strlen(text) != h.snapshot_len) return Status::Invalid;
            plan.snapshot = text; // perhaps empty: qemu looks `-l ''` up and finds nothing
        } else {
            // selector, id, NUL, name: each present only as the selector says.
            if (h.snapshot_len < 2) return Status::Invalid;
            const uint8_t sel = static_cast<uint8_t>(text[0]);
            const size_t id_len = __builtin_strlen(text + 1);
            if (sel == 0 || (sel & ~(INSTAR_SNAPSHOT_HAS_ID | INSTAR_SNAPSHOT_HAS_NAME)) != 0 ||
                1 + id_len + 1 > h.snapshot_len || 1 + id_len + 1 + __builtin_strlen(text + 2 + id_len) != h.snapshot_len)
                return Status::Invalid;
            plan.exact = true;
            plan.exact_snapshot.id = (sel & INSTAR_SNAPSHOT_HAS_ID) != 0 ? text + 1 : nullptr;
            plan.exact_snapshot.name = (sel & INSTAR_SNAPSHOT_HAS_NAME) != 0 ? text + 2 + id_len : nullptr;
            plan.snapshot = plan.exact_snapshot.id != nullptr ? plan.exact_snapshot.id : plan.exact_snapshot.name;
        }
    }
    if (const Status st = check_image_table(plan.images, h.image_count); st != Status::Ok) return st;
    if (module(h.target_module) == nullptr || device(h.target_device) == nullptr ||
        (h.target_backing != INSTAR_CONVERT_NO_BACKING && (h.target_backing >= h.image_count ||
                                                           h.target_backing < h.source_count)))
        return Status::Invalid;
    // One start (INSTAR_CONVERT_PLAN_FROM_INFO): one source, a new target of nothing but options.
    constexpr uint32_t NOT_FROM_INFO = INSTAR_CONVERT_EXISTING_TARGET | INSTAR_CONVERT_TARGET_HAS_BACKING |
                                       INSTAR_CONVERT_SNAPSHOT | INSTAR_CONVERT_SNAPSHOT_EXACT;
    if ((h.flags & INSTAR_CONVERT_PLAN_FROM_INFO) != 0 &&
        (h.image_count != 1 || h.source_count != 1 || h.target_backing != INSTAR_CONVERT_NO_BACKING ||
         (h.flags & NOT_FROM_INFO) != 0 || h.create_len < sizeof(instar_create_arg)))
        return Status::Invalid;
    // dd's window: one source, nothing else of convert's (the window's end is checked against the
    // source's size where the source is open).
    if ((h.flags & INSTAR_CONVERT_WINDOW) != 0 &&
        (h.source_count != 1 || h.target_backing != INSTAR_CONVERT_NO_BACKING ||
         h.window_offset > UINT64_MAX - h.window_length ||
         (h.flags & (INSTAR_CONVERT_COMPRESS | INSTAR_CONVERT_EXISTING_TARGET | INSTAR_CONVERT_TARGET_HAS_BACKING)) !=
             0))
        return Status::Invalid;
    return Status::Ok;
}

// The host planned before it had the source's info (INSTAR_CONVERT_PLAN_FROM_INFO): the
// inspections that started this run (INSTAR_OP_INFO_FIRST) know its cluster size and backing files,
// as the host's table would, and its virtual size, which the target takes in whole sectors as the
// host's sum of the sources' sizes would give it (qemu's blk_nb_sectors).
Status complete_plan_from_info(Plan& plan) {
    static const uint32_t no_words[1] = {0};           // convert's table has no per-image words
    static const instar_image_facts no_facts[1] = {};  // nor facts
    const uint32_t* words = no_words;
    const auto* facts = reinterpret_cast<const uint8_t*>(no_facts);
    if (const Status st = guest::complete_plan_from_info(1, true, true, &plan.images, &words, &facts,
                                                         &plan.head.image_count);
        st != Status::Ok)
        return st;
    uint64_t size = 0;
    if (!size_from_info(0, &size) || size > UINT64_MAX - 511) return Status::Invalid;
    size = (size + 511) / 512 * 512;
    // dd: the window img_dd takes of that size, whose length is the output's size.
    if (dd_spec_follows(plan.head)) {
        const instar_dd_window_spec& d = plan.dd;
        const DdWindow w = dd_window(size, d.block_size, (d.flags & INSTAR_DD_HAS_COUNT) != 0, d.count,
                                     (d.flags & INSTAR_DD_HAS_SKIP) != 0, d.skip);
        plan.head.window_offset = w.offset;
        plan.head.window_length = w.length;
        size = w.length;
    }
    __builtin_memcpy(plan.create + __builtin_offsetof(instar_create_arg, size), &size, sizeof size);
    return Status::Ok;
}

// -n: the existing target and the host that sizes it, for OpenRequest::set_length (one per run).
constinit ExistingTarget* existing_target = nullptr;
constinit HypercallTarget* existing_host = nullptr;

Status set_existing_length(BlockDevice& dev, uint64_t length) {
    if (existing_target == nullptr || existing_host == nullptr || &dev != existing_target) return Status::Invalid;
    return existing_target->set_length(*existing_host, length, Prealloc::Off);
}

} // namespace

Status convert_op(const uint8_t* arg, uint32_t arg_len) {
    instar_convert_arg a{};
    if (arg_len != sizeof a) return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    Plan plan;
    if (const Status st = read_plan(a.plan_device, plan); st != Status::Ok) return st;
    if ((plan.head.flags & INSTAR_CONVERT_PLAN_FROM_INFO) != 0)
        if (const Status st = complete_plan_from_info(plan); st != Status::Ok) return st;
    const instar_convert_plan& h = plan.head;
    RecordReasons reasons;

    // One reader per image, opened in table order (sources first).
    auto* readers =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    if (readers == nullptr) return Status::NoMemory;
    Secrets secrets;
    // One more entry than images: index image_count is the target's secret (create or -n).
    if (const Status sst = read_secrets(a.secrets_device, h.image_count + 1, &secrets); sst != Status::Ok) return sst;
    const uint8_t* target_secret = secrets.bytes ? secrets.bytes[h.image_count] : nullptr;
    const size_t target_secret_len = secrets.lengths ? secrets.lengths[h.image_count] : 0;
    uint32_t opened = 0;
    Status st = open_images(plan.images, h.image_count, plan.snapshot, h.qemu_version, reasons, readers, &opened, &secrets,
                            plan.exact ? &plan.exact_snapshot : nullptr);
    if (st != Status::Ok) report_failure(INSTAR_CONVERT_PHASE_OPEN, opened);

    // Each source's chain (and the -B image's), top first.
    const uint32_t chain_count = h.source_count + (h.target_backing != INSTAR_CONVERT_NO_BACKING ? 1 : 0);
    auto* chains = static_cast<ImageReader**>(
        arena().allocate(static_cast<size_t>(h.image_count) * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* sources = static_cast<convert::Source*>(
        arena().allocate(chain_count * sizeof(convert::Source), alignof(convert::Source)));
    if (st == Status::Ok && (chains == nullptr || sources == nullptr)) st = Status::NoMemory;
    uint32_t used = 0;
    for (uint32_t s = 0; st == Status::Ok && s < chain_count; ++s) {
        const uint32_t top = s < h.source_count ? s : h.target_backing;
        uint32_t depth = 0;
        // Chains share no entries, so together they fit the table's size.
        st = chain_of(plan.images, h.image_count, top, readers, chains + used, h.image_count - used, &depth);
        sources[s] = convert::Source{chains + used, depth, plan.images[top].cluster_size};
        used += depth;
    }
    // dd: the source's composed disk, cut to the window, is the one-image chain converted. The
    // window ends less than one sector past the disk (qemu's sector-rounded size of a raw input).
    if (st == Status::Ok && (h.flags & INSTAR_CONVERT_WINDOW) != 0) {
        auto* whole = arena_new<convert::ChainImageReader>(arena(), sources[0].chain, sources[0].depth);
        const uint64_t size = whole == nullptr ? 0 : whole->virtual_size();
        auto* window = whole == nullptr
                           ? nullptr
                           : arena_new<convert::WindowReader>(arena(), *whole, h.window_offset, h.window_length);
        auto* chain = static_cast<ImageReader**>(arena().allocate(sizeof(ImageReader*), alignof(ImageReader*)));
        if (window == nullptr || chain == nullptr)
            st = Status::NoMemory;
        else if (h.window_length != 0 && h.window_offset + h.window_length > size &&
                 h.window_offset + h.window_length - size >= 512)
            st = Status::Invalid;
        else {
            chain[0] = window;
            sources[0] = convert::Source{chain, 1, 0};
        }
    }

    // Writers keep the target (set_length, add_file) for their whole life.
    HypercallTarget target(h.target_device);
    ImageWriter* writer = nullptr;
    const bool existing = (h.flags & INSTAR_CONVERT_EXISTING_TARGET) != 0;
    if (st == Status::Ok && existing) {
        // -n: the format opens the image already on the target device and writes into it.
        const ModuleOps* tm = module(h.target_module);
        // The target's other files (vmdk extents) follow its device; the plan holds their lengths.
        const uint32_t file_count = h.create_len / 8;
        if (tm->open_writer == nullptr || h.create_len % 8 != 0 || file_count > MAX_EXISTING_FILES) {
            report_failure(INSTAR_CONVERT_PHASE_OPEN, INSTAR_CONVERT_NO_BACKING);
            static constexpr char TEXT[] = "instar cannot write into an existing image of this format yet";
            reasons.reason(TEXT, sizeof TEXT - 1);
            st = Status::Unsupported;
        } else {
            auto* dev = arena_new<ExistingTarget>(arena(), *device(h.target_device), h.target_backing_size);
            BlockDevice** files = nullptr;
            st = dev == nullptr ? Status::NoMemory : existing_files(h.target_device, plan.create, file_count, &files);
            OpenRequest req{dev, files, file_count, &arena(), &codecs(), &reasons, nullptr, h.qemu_version};
            req.secret = target_secret;
            req.secret_len = target_secret_len;
            existing_target = dev;
            existing_host = &target;
            req.set_length = set_existing_length;
            if (st == Status::Ok) st = tm->open_writer(req, &writer);
            if (st != Status::Ok) report_failure(INSTAR_CONVERT_PHASE_OPEN, INSTAR_CONVERT_NO_BACKING);
            // The target's own backing chain (vmdk: a new grain's other bytes come from it).
            if (st == Status::Ok && h.target_backing != INSTAR_CONVERT_NO_BACKING) {
                const convert::Source& b = sources[h.source_count];
                auto* below = arena_new<convert::ChainImageReader>(arena(), b.chain, b.depth);
                if (below == nullptr) st = Status::NoMemory;
                else writer->set_backing(below);
            }
        }
    }
    if (st == Status::Ok && !existing) {
        auto* u = static_cast<UnpackedCreate*>(arena().allocate(sizeof(UnpackedCreate), alignof(UnpackedCreate)));
        if (u == nullptr) st = Status::NoMemory;
        else {
            *u = UnpackedCreate{};
            if (!unpack_create(plan.create, h.create_len, *u)) st = Status::Invalid;
            // The backing image's file, for formats that record its identity (vmdk's parentCID).
            else if (h.target_backing != INSTAR_CONVERT_NO_BACKING)
                u->req.backing = device(plan.images[h.target_backing].device);
            // qcow2's external data file (-o data_file): the device after the target.
            if (st == Status::Ok && (u->arg.flags & INSTAR_CREATE_DATA_FILE_DEVICE)) {
                u->req.data_file = h.target_device + 1 > h.target_device ? device(h.target_device + 1) : nullptr;
                if (u->req.data_file == nullptr) st = Status::Invalid;
            }
            u->req.secret = target_secret;
            u->req.secret_len = target_secret_len;
        }
        const ModuleOps* tm = module(h.target_module);
        if (st == Status::Ok && tm->create_writer == nullptr) {
            report_failure(INSTAR_CONVERT_PHASE_CREATE, INSTAR_CONVERT_NO_BACKING);
            static constexpr char TEXT[] = "this format's plugin cannot write image data";
            reasons.reason(TEXT, sizeof TEXT - 1);
            st = Status::Unsupported;
        } else if (st == Status::Ok) {
            st = tm->create_writer(u->req, target, &writer);
            if (st != Status::Ok) report_failure(INSTAR_CONVERT_PHASE_CREATE, INSTAR_CONVERT_NO_BACKING);
        }
    }

    if (st == Status::Ok) {
        convert::Params p;
        p.min_sparse = h.min_sparse;
        p.compressed = (h.flags & INSTAR_CONVERT_COMPRESS) != 0;
        p.target_has_backing = (h.flags & INSTAR_CONVERT_TARGET_HAS_BACKING) != 0;
        p.target_is_zero = (h.flags & INSTAR_CONVERT_TARGET_IS_ZERO) != 0;
        p.existing_target = (h.flags & INSTAR_CONVERT_EXISTING_TARGET) != 0;
        p.out_of_order = (h.flags & INSTAR_CONVERT_OUT_OF_ORDER) != 0;
        p.one_request = (h.flags & INSTAR_CONVERT_ONE_COROUTINE) != 0;
        if (h.flags & INSTAR_CONVERT_PROGRESS) p.progress = progress;
        p.target_backing_size = h.target_backing_size;
        if (h.target_backing != INSTAR_CONVERT_NO_BACKING && !p.existing_target) { // -B only
            p.target_backing_chain = sources[h.source_count].chain;
            p.target_backing_depth = sources[h.source_count].depth;
        }
        SalvageRecords salvage;
        p.salvage = (h.flags & INSTAR_CONVERT_SALVAGE) != 0;
        p.salvage_warning = SalvageRecords::add;
        p.salvage_ctx = &salvage;
        p.defer_writes = defer_writes_from;
        p.settle_writes = settle_writes_from;
        p.writes_deferred = host_defers_writes;
        p.ahead = runtime_read_ahead(reasons);
        allow_read_windows();    // short runs: one call reads several,
        allow_write_gathering(); // and one call writes several (devices.cpp)
        // The engine finishes the target itself (writer->finish()) once the data is in.
        st = convert::run_convert(sources, h.source_count, *writer, p, arena(), &reasons);
        salvage.flush();
        if (st != Status::Ok) report_failure(INSTAR_CONVERT_PHASE_COPY, INSTAR_CONVERT_NO_BACKING);
    }
    if (writer != nullptr) writer->close();
    close_images(readers, opened);
    return st;
}

} // namespace instar::guest
