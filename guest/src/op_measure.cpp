// INSTAR_OP_MEASURE: reads the host's plan (a device), opens the source and its backing chain with
// their formats' readers, and runs qemu-img measure's allocation walk (guest/measure) over the
// composed chain for the target's cluster size. One INSTAR_REC_MEASURE on success; a failure to
// open an image is reported as convert's INSTAR_REC_CONVERT_FAILURE (phase OPEN) and a REASON.
#include "image_table.h"
#include "info_first.h"

#include "measure_walk.h"

namespace instar::guest {
namespace {

constexpr uint32_t MAX_SNAPSHOT_NAME = 1024; // qemu's snapshot names are far shorter

struct Plan {
    instar_measure_plan head{};
    instar_convert_image* images = nullptr;
    const uint8_t* layers = nullptr; // image_count instar_image_facts (copied out before use)
    char* snapshot = nullptr; // NUL-terminated copy, or nullptr
};

// Reads and checks the plan: every index inside the tables the host gave us.
Status read_plan(uint32_t plan_device, Plan& plan) {
    uint8_t* bytes = nullptr;
    size_t size = 0;
    if (const Status st = read_plan_device(plan_device, sizeof(instar_measure_plan), &bytes, &size); st != Status::Ok)
        return st;
    __builtin_memcpy(&plan.head, bytes, sizeof plan.head);
    const instar_measure_plan& h = plan.head;
    const uint64_t table = static_cast<uint64_t>(h.image_count) * sizeof(instar_convert_image);
    const uint64_t layers = static_cast<uint64_t>(h.image_count) * sizeof(instar_image_facts);
    if (h.magic != INSTAR_MEASURE_PLAN_MAGIC || h.image_count == 0 || h.image_count > INSTAR_CONVERT_MAX_IMAGES ||
        h.cluster_size < INSTAR_MEASURE_MIN_CLUSTER || h.cluster_size > INSTAR_MEASURE_MAX_CLUSTER ||
        (h.cluster_size & (h.cluster_size - 1)) != 0 || h.snapshot_len > MAX_SNAPSHOT_NAME ||
        (h.flags & ~INSTAR_MEASURE_PLAN_FROM_INFO) != 0 ||
        sizeof h + table + layers + h.snapshot_len != size)
        return Status::Invalid;
    plan.images = reinterpret_cast<instar_convert_image*>(bytes + sizeof h); // 16-aligned + 24: 8-aligned
    plan.layers = bytes + sizeof h + table;
    if (h.snapshot_len > 0) {
        plan.snapshot = reinterpret_cast<char*>(bytes + sizeof h + table + layers);
        plan.snapshot[h.snapshot_len] = 0; // the spare byte read_plan_device keeps
        if (__builtin_strlen(plan.snapshot) != h.snapshot_len) return Status::Invalid;
    }
    return check_image_table(plan.images, h.image_count);
}

} // namespace

Status measure_op(const uint8_t* arg, uint32_t arg_len) {
    instar_measure_arg a{};
    if (arg_len != sizeof a) return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    Plan plan;
    if (const Status st = read_plan(a.plan_device, plan); st != Status::Ok) return st;
    // The host planned before it had the image's info: the inspections that started this run
    // (INSTAR_OP_INFO_FIRST) know its cluster size and its backing files, as the host's table would.
    if ((plan.head.flags & INSTAR_MEASURE_PLAN_FROM_INFO) != 0) {
        static const uint32_t no_words[1] = {0}; // measure's table has no per-image words
        const uint32_t* words = no_words;
        if (const Status st = complete_plan_from_info(1, true, true, &plan.images, &words, &plan.layers,
                                                      &plan.head.image_count);
            st != Status::Ok)
            return st;
    }
    const instar_measure_plan& h = plan.head;
    RecordReasons reasons;

    auto* readers =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* chain =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* walk = static_cast<measure::Layer*>(
        arena().allocate(h.image_count * sizeof(measure::Layer), alignof(measure::Layer)));
    auto* refine = static_cast<bool*>(arena().allocate(h.image_count * sizeof(bool), alignof(bool)));
    if (readers == nullptr || chain == nullptr || walk == nullptr || refine == nullptr) return Status::NoMemory;
    Secrets secrets;
    if (const Status sst = read_secrets(a.secrets_device, h.image_count, &secrets); sst != Status::Ok)
        return sst;
    uint32_t opened = 0;
    Status st = open_images(plan.images, h.image_count, plan.snapshot, h.qemu_version, reasons, readers, &opened, &secrets);
    if (st != Status::Ok) {
        const instar_convert_failure f{INSTAR_CONVERT_PHASE_OPEN, opened};
        hc_record(INSTAR_REC_CONVERT_FAILURE, &f, sizeof f);
    }
    uint32_t depth = 0;
    if (st == Status::Ok) st = chain_of(plan.images, h.image_count, 0, readers, chain, h.image_count, &depth);
    // The chain's layers in order: follow `backing` from image 0 (chain_of checked every index).
    uint32_t at = 0;
    for (uint32_t k = 0; st == Status::Ok && k < depth; ++k) {
        instar_image_facts info{};
        __builtin_memcpy(&info, plan.layers + static_cast<size_t>(at) * sizeof info, sizeof info);
        if (info.reserved != 0 || (info.flags & ~INSTAR_IMAGE_DETECT_PREALLOC) != 0) {
            st = Status::Invalid;
            break;
        }
        walk[k] = measure::Layer{chain[k], device(plan.images[at].device), info.allocated,
                                 plan.images[at].cluster_size,
                                 (info.flags & INSTAR_IMAGE_DETECT_PREALLOC) != 0 && plan.images[at].file_count == 0};
        // qemu ignores a failed check (metadata_preallocation = ret == 1); so does this.
        if (measure::detect_metadata_preallocation(walk[k], &refine[k]) != Status::Ok) refine[k] = false;
        at = plan.images[at].backing;
    }
    instar_measure_record rec{};
    if (st == Status::Ok) {
        rec.virtual_size = chain[0]->virtual_size();
        st = measure::required_bytes(walk, refine, depth, h.cluster_size, &rec.required);
    }
    if (st == Status::Ok) st = services().send_record(INSTAR_REC_MEASURE, &rec, sizeof rec);
    close_images(readers, opened);
    return st;
}

} // namespace instar::guest
