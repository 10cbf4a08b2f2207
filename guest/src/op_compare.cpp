// INSTAR_OP_COMPARE: reads the host's plan (a device), opens both images and their backing chains
// with their formats' readers, runs qemu-img compare's walk (guest/convert/compare_engine) and
// answers with one INSTAR_REC_COMPARE (after the format's INSTAR_REC_REASON when opening failed).
#include "image_table.h"
#include "read_ahead_hooks.h"
#include "info_first.h"

#include "compare_engine.h"
#include "file_status.h"

namespace instar::guest {
namespace {

struct Plan {
    instar_compare_plan head{};
    instar_convert_image* images = nullptr;
    const uint32_t* flags = nullptr; // image_count entries
    const uint8_t* facts = nullptr;  // image_count instar_image_facts (copied out before use)
};

Status read_plan(uint32_t plan_device, Plan& plan) {
    uint8_t* bytes = nullptr;
    size_t size = 0;
    if (const Status st = read_plan_device(plan_device, sizeof(instar_compare_plan), &bytes, &size); st != Status::Ok)
        return st;
    __builtin_memcpy(&plan.head, bytes, sizeof plan.head);
    const instar_compare_plan& h = plan.head;
    const uint64_t table = static_cast<uint64_t>(h.image_count) * sizeof(instar_convert_image);
    const uint64_t flags = static_cast<uint64_t>(h.image_count) * sizeof(uint32_t);
    const uint64_t facts = static_cast<uint64_t>(h.image_count) * sizeof(instar_image_facts);
    if (h.magic != INSTAR_COMPARE_PLAN_MAGIC || h.image_count < 2 || h.image_count > INSTAR_CONVERT_MAX_IMAGES ||
        sizeof h + table + flags + facts != size)
        return Status::Invalid;
    // The plan starts 16-aligned; 16 + 24n is 8-aligned, so both tables are aligned for their types.
    plan.images = reinterpret_cast<instar_convert_image*>(bytes + sizeof h);
    plan.flags = reinterpret_cast<const uint32_t*>(bytes + sizeof h + table);
    plan.facts = bytes + sizeof h + table + flags;
    for (uint32_t i = 0; i < h.image_count; ++i) {
        instar_image_facts f{};
        __builtin_memcpy(&f, plan.facts + static_cast<size_t>(i) * sizeof f, sizeof f);
        if ((plan.flags[i] & ~INSTAR_COMPARE_IMAGE_ALL) || (f.flags & ~INSTAR_IMAGE_DETECT_PREALLOC) || f.reserved != 0)
            return Status::Invalid;
    }
    return check_image_table(plan.images, h.image_count);
}

void send(const instar_compare_record& rec) { hc_record(INSTAR_REC_COMPARE, &rec, sizeof rec); }

void progress(void* ctx, uint64_t chunk, uint64_t total) {
    auto* done = static_cast<uint64_t*>(ctx);
    *done += chunk;
    if (*done <= total) hc_progress(*done, total);
}

} // namespace

Status compare_op(const uint8_t* arg, uint32_t arg_len) {
    instar_compare_arg a{};
    if (arg_len != sizeof a) return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    Plan plan;
    if (const Status st = read_plan(a.plan_device, plan); st != Status::Ok) return st;
    const instar_compare_plan& h = plan.head;
    if ((h.flags & ~(INSTAR_COMPARE_STRICT | INSTAR_COMPARE_PROGRESS | INSTAR_COMPARE_CLUSTER_FROM_INFO |
                     INSTAR_COMPARE_CHAIN_FROM_INFO)) != 0)
        return Status::Invalid;
    // The host planned before it had the images' info: the inspections that started this run
    // (INSTAR_OP_INFO_FIRST) know their cluster sizes and backing files, as the host's table would.
    if (const Status st = complete_plan_from_info(2, (h.flags & INSTAR_COMPARE_CLUSTER_FROM_INFO) != 0,
                                                  (h.flags & INSTAR_COMPARE_CHAIN_FROM_INFO) != 0, &plan.images,
                                                  &plan.flags, &plan.facts, &plan.head.image_count);
        st != Status::Ok)
        return st;
    RecordReasons reasons;

    auto* readers =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* chains =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* layer_flags = static_cast<uint32_t*>(arena().allocate(h.image_count * sizeof(uint32_t), alignof(uint32_t)));
    auto* layer_files =
        static_cast<BlockDevice**>(arena().allocate(h.image_count * sizeof(BlockDevice*), alignof(BlockDevice*)));
    if (readers == nullptr || chains == nullptr || layer_flags == nullptr || layer_files == nullptr)
        return Status::NoMemory;
    Secrets secrets;
    if (const Status sst = read_secrets(a.secrets_device, h.image_count, &secrets); sst != Status::Ok) return sst;
    uint32_t opened = 0;
    Status st = open_images(plan.images, h.image_count, nullptr, h.qemu_version, reasons, readers, &opened, &secrets);
    if (st != Status::Ok) {
        instar_compare_record rec{};
        rec.outcome = INSTAR_COMPARE_OPEN_FAILED;
        rec.image = opened;
        send(rec);
        close_images(readers, opened);
        return Status::Ok; // the record says what failed
    }

    // Both chains, top first; they share no entries, so together they fit the table's size.
    convert::CompareSide sides[2];
    uint32_t used = 0;
    for (uint32_t s = 0; st == Status::Ok && s < 2; ++s) {
        uint32_t depth = 0;
        st = chain_of(plan.images, h.image_count, s, readers, chains + used, h.image_count - used, &depth);
        if (st != Status::Ok) break;
        // chain_of walked entries s, images[s].backing, ...: the same walk gives each layer's flags.
        uint32_t k = 0;
        for (uint32_t i = s; i != INSTAR_CONVERT_NO_BACKING && k < depth; i = plan.images[i].backing) {
            layer_files[used + k] = any_device(plan.images[i].device);
            uint32_t lf = plan.flags[i];
            instar_image_facts f{};
            __builtin_memcpy(&f, plan.facts + static_cast<size_t>(i) * sizeof f, sizeof f);
            // qemu's qcow2 runs its check at the first block status and ignores a failure (the rule
            // map's and measure's walks share: file_status.h).
            bool recurse = false;
            if ((f.flags & INSTAR_IMAGE_DETECT_PREALLOC) && plan.images[i].file_count == 0 &&
                layer_files[used + k] != nullptr &&
                convert::detect_metadata_preallocation(*chains[used + k], *layer_files[used + k], f.allocated,
                                                       plan.images[i].cluster_size, &recurse) == Status::Ok &&
                recurse)
                lf |= INSTAR_COMPARE_IMAGE_RECURSE;
            layer_flags[used + k++] = lf;
        }
        sides[s] = convert::CompareSide{chains + used, layer_flags + used, layer_files + used, depth};
        used += depth;
    }
    if (st == Status::Ok) {
        uint64_t done = 0;
        convert::CompareParams p;
        p.strict = (h.flags & INSTAR_COMPARE_STRICT) != 0;
        p.ahead = runtime_read_ahead(reasons);
        allow_read_windows(); // short runs: one call reads several (devices.cpp)
        if (h.flags & INSTAR_COMPARE_PROGRESS) {
            p.progress = progress;
            p.progress_ctx = &done;
        }
        convert::CompareResult r;
        st = convert::run_compare(sides[0], sides[1], p, arena(), &r);
        if (st == Status::Ok) {
            instar_compare_record rec{};
            rec.outcome = static_cast<uint32_t>(r.outcome);
            rec.image = r.side;
            rec.offset = r.offset;
            rec.size_mismatch = r.size_mismatch ? 1u : 0u;
            if (r.outcome == convert::CompareOutcome::ReadFailed)
                rec.status = static_cast<uint32_t>(r.read_status);
            send(rec);
        }
    }
    close_images(readers, opened);
    return st;
}

} // namespace instar::guest
