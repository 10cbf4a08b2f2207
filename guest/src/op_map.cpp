// INSTAR_OP_MAP: reads the host's plan (a device), opens the image and its backing chain with their
// formats' readers, and walks the disk as qemu-img map does (guest/convert/map_walk), sending the
// runs as INSTAR_REC_MAP records. Failures are an INSTAR_REC_CONVERT_FAILURE naming the phase
// (OPEN with the image, COPY for the walk), then the format's reason (INSTAR_REC_REASON).
#include "image_table.h"
#include "info_first.h"

#include "file_status.h"
#include "map_walk.h"

namespace instar::guest {
namespace {

// Records are bounded by the host (INSTAR_MAX_RECORD_BYTES, INSTAR_MAX_RECORDS): leave room for the
// failure record and reason after the runs. 16 MiB / 40 bytes is ~419k runs.
constexpr uint64_t MAX_MAP_ENTRIES =
    (INSTAR_MAX_RECORD_BYTES - 2 * INSTAR_MAX_RECORD_SIZE) / sizeof(instar_map_entry);

void report_failure(uint32_t phase, uint32_t image) {
    const instar_convert_failure f{phase, image};
    hc_record(INSTAR_REC_CONVERT_FAILURE, &f, sizeof f);
}

class RecordSink final : public convert::MapSink {
public:
    Status emit(const instar_map_entry* entries, uint32_t count) override {
        if (hc_record(INSTAR_REC_MAP, entries, static_cast<uint64_t>(count) * sizeof(instar_map_entry)) != 0)
            return Status::IoError;
        return Status::Ok;
    }
};

struct Plan {
    instar_map_plan head{};
    instar_convert_image* images = nullptr;
    const uint32_t* styles = nullptr;
    const uint8_t* facts = nullptr; // image_count instar_image_facts (copied out before use)
};

Status read_plan(uint32_t plan_device, Plan& plan) {
    uint8_t* bytes = nullptr;
    size_t size = 0;
    if (const Status st = read_plan_device(plan_device, sizeof(instar_map_plan), &bytes, &size); st != Status::Ok)
        return st;
    __builtin_memcpy(&plan.head, bytes, sizeof plan.head);
    const instar_map_plan& h = plan.head;
    if (h.magic != INSTAR_MAP_PLAN_MAGIC || h.image_count == 0 || h.image_count > INSTAR_CONVERT_MAX_IMAGES)
        return Status::Invalid;
    const uint64_t table = static_cast<uint64_t>(h.image_count) * sizeof(instar_convert_image);
    const uint64_t styles = static_cast<uint64_t>(h.image_count) * sizeof(uint32_t);
    const uint64_t facts = static_cast<uint64_t>(h.image_count) * sizeof(instar_image_facts);
    if (sizeof h + table + styles + facts != size)
        return Status::Invalid;
    plan.images = reinterpret_cast<instar_convert_image*>(bytes + sizeof h); // 16-aligned + 32: 8-aligned
    plan.styles = reinterpret_cast<const uint32_t*>(bytes + sizeof h + table);
    plan.facts = bytes + sizeof h + table + styles;
    for (uint32_t i = 0; i < h.image_count; ++i) {
        instar_image_facts f{};
        __builtin_memcpy(&f, plan.facts + static_cast<size_t>(i) * sizeof f, sizeof f);
        if ((plan.styles[i] & ~INSTAR_MAP_STYLE_ALL) || (f.flags & ~INSTAR_IMAGE_DETECT_PREALLOC) || f.reserved != 0)
            return Status::Invalid;
    }
    return check_image_table(plan.images, h.image_count);
}

} // namespace

Status map_op(const uint8_t* arg, uint32_t arg_len) {
    instar_map_arg a{};
    if (arg_len != sizeof a)
        return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    Plan plan;
    if (const Status st = read_plan(a.plan_device, plan); st != Status::Ok)
        return st;
    const instar_map_plan& h = plan.head;
    if ((h.flags & ~(INSTAR_MAP_PLAN_CLUSTER_FROM_INFO | INSTAR_MAP_PLAN_CHAIN_FROM_INFO)) != 0)
        return Status::Invalid;
    // The host planned before it had the image's info: the inspections that started this run
    // (INSTAR_OP_INFO_FIRST) know its cluster size and its backing files, as the host's table would.
    const bool from_info = (h.flags & INSTAR_MAP_PLAN_CLUSTER_FROM_INFO) != 0;
    if (from_info && plan.images[0].module != 0)
        return Status::Invalid;
    if (const Status st = complete_plan_from_info(1, from_info, (h.flags & INSTAR_MAP_PLAN_CHAIN_FROM_INFO) != 0,
                                                  &plan.images, &plan.styles, &plan.facts, &plan.head.image_count);
        st != Status::Ok)
        return st;
    RecordReasons reasons;

    auto* readers =
        static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* chain = static_cast<ImageReader**>(arena().allocate(h.image_count * sizeof(ImageReader*), alignof(ImageReader*)));
    auto* layers = static_cast<convert::MapLayer*>(
        arena().allocate(h.image_count * sizeof(convert::MapLayer), alignof(convert::MapLayer)));
    auto* batch = static_cast<instar_map_entry*>(
        arena().allocate(INSTAR_MAP_MAX_BATCH * sizeof(instar_map_entry), alignof(instar_map_entry)));
    if (readers == nullptr || chain == nullptr || layers == nullptr || batch == nullptr)
        return Status::NoMemory;
    Secrets secrets;
    if (const Status sst = read_secrets(a.secrets_device, h.image_count, &secrets); sst != Status::Ok)
        return sst;
    uint32_t opened = 0;
    Status st = open_images(plan.images, h.image_count, nullptr, h.qemu_version, reasons, readers, &opened, &secrets);
    if (st != Status::Ok)
        report_failure(INSTAR_CONVERT_PHASE_OPEN, opened);
    uint32_t depth = 0;
    if (st == Status::Ok)
        st = chain_of(plan.images, h.image_count, 0, readers, chain, h.image_count, &depth);
    if (st == Status::Ok) {
        // The styles follow the chain: find each layer's table index again.
        uint32_t i = 0;
        for (uint32_t k = 0; k < depth; ++k) {
            BlockDevice* file = any_device(plan.images[i].device);
            layers[k] = convert::MapLayer{chain[k], plan.styles[i], file->size(), file, false};
            instar_image_facts f{};
            __builtin_memcpy(&f, plan.facts + static_cast<size_t>(i) * sizeof f, sizeof f);
            // qemu's qcow2 runs its check at the first block status and ignores a failure.
            if ((f.flags & INSTAR_IMAGE_DETECT_PREALLOC) && plan.images[i].file_count == 0 &&
                convert::detect_metadata_preallocation(*chain[k], *file, f.allocated, plan.images[i].cluster_size,
                                                       &layers[k].recurse) != Status::Ok)
                layers[k].recurse = false;
            i = plan.images[i].backing;
        }
        const uint64_t size = chain[0]->virtual_size();
        const uint64_t end = h.end < size ? h.end : size;
        RecordSink sink;
        uint32_t failed = 0;
        st = convert::map_walk(layers, depth, h.start, end, batch, MAX_MAP_ENTRIES, sink, &failed);
        if (st != Status::Ok) {
            // The table index of the layer that failed (the host words qcow2's corruption as qemu).
            // INSTAR_CONVERT_NO_BACKING: the record bound was reached after whole runs; the host
            // continues from the end of the last one in another run.
            uint32_t image = 0;
            for (uint32_t k = 0; k < failed && k + 1 < depth; ++k)
                image = plan.images[image].backing;
            report_failure(INSTAR_CONVERT_PHASE_COPY, failed == UINT32_MAX ? INSTAR_CONVERT_NO_BACKING : image);
        }
    }
    close_images(readers, opened);
    return st;
}

} // namespace instar::guest
