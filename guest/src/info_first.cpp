// Info first (info_first.h): the inspection shared by INSTAR_OP_EDIT's INSTAR_EDIT_INFO_FIRST and
// INSTAR_OP_INFO_FIRST, and the latter's operation.
#include "info_first.h"

#include <instar/guest/edit_device.h>
#include <instar/guest/info_sink.h>

namespace instar::guest {
namespace {

// Info's encoder, watched for what decides whether the edit may run here.
class WatchedInfo final : public InfoSink {
public:
    explicit WatchedInfo(InfoEncoder& to) : to_(to) {}
    void format(const char* name) override { to_.format(name); }
    void virtual_size(uint64_t bytes) override {
        size_ = bytes;
        have_size_ = true;
        to_.virtual_size(bytes);
    }
    void cluster_size(uint64_t bytes) override {
        cluster_size_ = bytes;
        to_.cluster_size(bytes);
    }
    void encrypted(bool yes) override {
        encrypted_ = encrypted_ || yes;
        to_.encrypted(yes);
    }
    void dirty(bool yes) override {
        dirty_ = yes;
        to_.dirty(yes);
    }
    void backing_format(const char* name, size_t len) override { to_.backing_format(name, len); }
    void snapshot(const SnapshotInfo& s) override { to_.snapshot(s); }
    void file_reference(FileRole role, const char* name, size_t len) override {
        references_ = true;
        (role == FileRole::Backing ? backing_ : others_) = true;
        to_.file_reference(role, name, len);
    }
    void specific_type(const char* type) override { to_.specific_type(type); }
    void begin_object(const char* key) override { to_.begin_object(key); }
    void end_object() override { to_.end_object(); }
    void begin_list(const char* key) override { to_.begin_list(key); }
    void end_list() override { to_.end_list(); }
    void put_string(const char* key, const char* value, size_t len) override { to_.put_string(key, value, len); }
    void put_uint(const char* key, uint64_t value) override { to_.put_uint(key, value); }
    void put_int(const char* key, int64_t value) override { to_.put_int(key, value); }
    void put_bool(const char* key, bool value) override {
        static constexpr char CORRUPT[] = "corrupt";
        bool is = value && key != nullptr; // list items have no key
        for (size_t i = 0; is && i < sizeof CORRUPT; ++i)
            is = key[i] == CORRUPT[i];
        corrupt_ = corrupt_ || is;
        to_.put_bool(key, value);
    }
    void reason(const char* text, size_t len) override { to_.reason(text, len); }

    // The command may run in this start: nothing else to open, no key to ask for, a size to check with.
    bool lone() const { return !references_ && !encrypted_ && have_size_; }
    // ... or would, but for a backing file (INSTAR_INFO_FIRST_CHAINS opens it in this start).
    bool backing_only() const { return backing_ && !others_ && !encrypted_ && have_size_; }
    uint64_t size() const { return size_; }
    uint64_t cluster_size() const { return cluster_size_; }
    bool dirty_bit() const { return dirty_; }
    bool corrupt_bit() const { return corrupt_; }

private:
    InfoEncoder& to_;
    uint64_t size_ = 0;
    uint64_t cluster_size_ = 0;
    bool have_size_ = false;
    bool references_ = false;
    bool backing_ = false; // a backing file among the references
    bool others_ = false;  // any other reference (extent, data file)
    bool encrypted_ = false;
    bool dirty_ = false;
    bool corrupt_ = false;
};

// The image as info sees it: read-only, exactly the file's length (an output device's size() is
// the room it may grow to, not the file's length).
class InfoView final : public BlockDevice {
public:
    InfoView(BlockDevice& dev, uint64_t length) : sized_(dev, length) {}
    uint64_t size() const override { return sized_.size(); }
    Status read(uint64_t offset, void* buf, size_t len) override { return sized_.read(offset, buf, len); }
    Status write(uint64_t, const void*, size_t) override { return Status::Invalid; }
    Status allocation(uint64_t offset, bool* data, uint64_t* length) override {
        return sized_.allocation(offset, data, length);
    }

private:
    SizedDevice sized_;
};

// Bytes of info tokens per record, as INSTAR_OP_INFO sends them.
constexpr size_t INFO_FIRST_RECORD_BYTES = 32u << 10;

Status send_info_chunk(void*, const uint8_t* data, size_t len) {
    return services().send_record(INSTAR_REC_INFO, data, len);
}

// The inspections of an INSTAR_OP_INFO_FIRST run, and how many of them the operation it started
// may ask for (0 outside such an operation).
InfoFirstResult g_results[INSTAR_INFO_FIRST_MAX_IMAGES];
uint32_t g_started = 0;

// Each image's backing files given by the host (INSTAR_HC_NEXT_IMAGE), top down: their plan entries
// (module, device, cluster size) and allocated bytes. The host ends a chain at its own depth bound;
// a guest asked for more stops asking.
constexpr uint32_t INFO_FIRST_MAX_LEVELS = 64; // the host's MAX_CHAIN_DEPTH
struct Level {
    instar_convert_image entry;
    uint64_t allocated;
    uint64_t size; // its virtual size, as its inspection reported it
};
Level g_levels[INSTAR_INFO_FIRST_MAX_IMAGES][INFO_FIRST_MAX_LEVELS];
uint32_t g_level_count[INSTAR_INFO_FIRST_MAX_IMAGES];

// The inspection of image `image` (device `image`) before the running operation, when
// INSTAR_OP_INFO_FIRST started it; else nullptr.
const InfoFirstResult* info_first_result(uint32_t image) { return image < g_started ? &g_results[image] : nullptr; }

} // namespace

Status cluster_size_from_info(uint32_t image, instar_convert_image& entry) {
    const InfoFirstResult* first = info_first_result(image);
    if (first == nullptr || entry.device != image || entry.module != first->module)
        return Status::Invalid;
    entry.cluster_size = static_cast<uint32_t>(first->cluster_size < UINT32_MAX ? first->cluster_size : UINT32_MAX);
    return Status::Ok;
}

Status append_info_first_chains(uint32_t tops, instar_convert_image** images, const uint32_t** words,
                                const uint8_t** facts, uint32_t* count) {
    if (tops > g_started || tops > *count)
        return Status::Invalid;
    uint32_t total = *count;
    for (uint32_t i = 0; i < tops; ++i) {
        if ((*images)[i].backing != INSTAR_CONVERT_NO_BACKING || (*images)[i].device != i ||
            (*images)[i].module != g_results[i].module)
            return Status::Invalid;
        total += g_level_count[i];
    }
    if (total > INSTAR_CONVERT_MAX_IMAGES)
        return Status::TooLarge;
    auto* im = static_cast<instar_convert_image*>(arena().allocate(total * sizeof(instar_convert_image), 8));
    auto* w = static_cast<uint32_t*>(arena().allocate(total * sizeof(uint32_t), 8));
    auto* f = static_cast<instar_image_facts*>(arena().allocate(total * sizeof(instar_image_facts), 8));
    if (im == nullptr || w == nullptr || f == nullptr)
        return Status::NoMemory;
    __builtin_memcpy(im, *images, *count * sizeof(instar_convert_image));
    __builtin_memcpy(w, *words, *count * sizeof(uint32_t));
    __builtin_memcpy(f, *facts, *count * sizeof(instar_image_facts));
    uint32_t at = *count;
    for (uint32_t i = 0; i < tops; ++i) {
        uint32_t above = i;
        for (uint32_t k = 0; k < g_level_count[i]; ++k, ++at) {
            im[at] = g_levels[i][k].entry;
            im[above].backing = at;
            w[at] = w[i];
            f[at] = instar_image_facts{g_levels[i][k].allocated, f[i].flags, 0};
            above = at;
        }
    }
    *images = im;
    *words = w;
    *facts = reinterpret_cast<const uint8_t*>(f);
    *count = total;
    return Status::Ok;
}

Status complete_plan_from_info(uint32_t tops, bool cluster_from_info, bool chain_from_info,
                               instar_convert_image** images, const uint32_t** words, const uint8_t** facts,
                               uint32_t* count) {
    if (cluster_from_info) {
        if (*count != tops)
            return Status::Invalid;
        for (uint32_t i = 0; i < tops; ++i)
            if (const Status st = cluster_size_from_info(i, (*images)[i]); st != Status::Ok)
                return st;
    }
    if (!chain_from_info)
        return Status::Ok;
    if (!cluster_from_info)
        return Status::Invalid;
    return append_info_first_chains(tops, images, words, facts, count);
}

bool size_from_info(uint32_t image, uint64_t* size) {
    const InfoFirstResult* first = info_first_result(image);
    if (first == nullptr)
        return false;
    *size = first->size;
    return true;
}

bool backing_size_from_info(uint32_t image, uint64_t* size) {
    if (image >= INSTAR_INFO_FIRST_MAX_IMAGES || g_level_count[image] == 0)
        return false;
    *size = g_levels[image][0].size;
    return true;
}

Status inspect_first(const ModuleOps& ops, BlockDevice& image, uint64_t length, bool force, bool no_key,
                     uint32_t qemu_version, InfoFirstResult* out) {
    if (ops.info == nullptr)
        return Status::Invalid;
    InfoView view(image, length);
    if (!force) {
        bool match = false;
        if (ops.probe == nullptr)
            return Status::Invalid;
        if (const Status st = ops.probe(view, &match); st != Status::Ok || !match)
            return st != Status::Ok ? st : Status::Unsupported;
    }
    auto* info_buf = static_cast<uint8_t*>(arena().allocate(INFO_FIRST_RECORD_BYTES, 16));
    if (info_buf == nullptr)
        return Status::NoMemory;
    InfoEncoder encoder(info_buf, INFO_FIRST_RECORD_BYTES, send_info_chunk, nullptr);
    WatchedInfo watched(encoder);
    BlockDevice* const no_files[1] = {nullptr};
    const InfoRequest info_req{&view, &arena(), no_files, 0, qemu_version, no_key ? INFO_REQUEST_NO_KEY : 0u};
    const Status st = ops.info(info_req, watched);
    const Status flushed = encoder.finish();
    if (st != Status::Ok || flushed != Status::Ok)
        return st != Status::Ok ? st : flushed;
    out->lone = watched.lone();
    out->dirty = watched.dirty_bit();
    out->corrupt = watched.corrupt_bit();
    out->backing_only = watched.backing_only();
    out->size = watched.size();
    out->cluster_size = watched.cluster_size();
    return Status::Ok;
}

namespace {

// One image of an INSTAR_OP_INFO_FIRST run inspected, its records closed by INSTAR_REC_INFO_END.
Status inspect_and_end(const ModuleOps& ops, BlockDevice& image, bool force, bool no_key, uint32_t qemu_version,
                       InfoFirstResult* out) {
    if (const Status st = inspect_first(ops, image, image.size(), force, no_key, qemu_version, out); st != Status::Ok)
        return st;
    return end_inspection();
}

} // namespace

Status end_inspection() {
    static constexpr uint8_t NOTHING = 0;
    return services().send_record(INSTAR_REC_INFO_END, &NOTHING, 0);
}

Status inspect_backing_chain(uint32_t image, uint32_t qemu_version, const InfoFirstResult& top, bool* ends) {
    *ends = top.lone;
    bool backed = top.backing_only;
    g_level_count[image] = 0;
    while (!*ends && backed && g_level_count[image] < INFO_FIRST_MAX_LEVELS) {
        uint32_t how = 0;
        uint64_t allocated = 0;
        const int64_t index = hc_next_image(image, &how, &allocated);
        if (index < 0)
            return Status::Ok; // the host did not open it here: its ordinary path will
        const uint32_t module_index = how & INSTAR_NEXT_IMAGE_MODULE_MASK;
        const ModuleOps* next_ops = module(module_index);
        BlockDevice* next = attach_device(static_cast<uint32_t>(index));
        if (next_ops == nullptr || next == nullptr)
            return Status::Invalid;
        InfoFirstResult level{};
        if (const Status st = inspect_and_end(*next_ops, *next, (how & INSTAR_NEXT_IMAGE_FORCE) != 0,
                                              (how & INSTAR_NEXT_IMAGE_NO_KEY) != 0, qemu_version, &level);
            st != Status::Ok)
            return st;
        const uint32_t cluster = static_cast<uint32_t>(level.cluster_size < UINT32_MAX ? level.cluster_size : UINT32_MAX);
        g_levels[image][g_level_count[image]++] = Level{
            instar_convert_image{module_index, static_cast<uint32_t>(index), 0, 0, INSTAR_CONVERT_NO_BACKING, cluster},
            allocated, level.size};
        *ends = level.lone;
        backed = level.backing_only;
    }
    return Status::Ok;
}

Status info_first_op(const uint8_t* arg, uint32_t arg_len) {
    instar_info_first_arg a{};
    if (arg_len < sizeof a)
        return Status::Invalid;
    __builtin_memcpy(&a, arg, sizeof a);
    const uint8_t* op_arg = arg + sizeof a;
    const auto op_len = static_cast<uint32_t>(arg_len - sizeof a);
    // Only read-only operations on images that open as info opens them (image i on device i).
    if (a.image_count == 0 || a.image_count > INSTAR_INFO_FIRST_MAX_IMAGES || a.reserved != 0 || a.reserved2 != 0)
        return Status::Invalid;
    const uint32_t per_image = (1u << a.image_count) - 1; // image_count <= 2: the shift is defined
    const uint32_t known = per_image | (per_image << INSTAR_INFO_FIRST_NO_KEY_SHIFT) | INSTAR_INFO_FIRST_CHAINS;
    if ((a.flags & ~known) != 0)
        return Status::Invalid;
    if (a.op == INSTAR_OP_CHECK) { // a check that reads: no repair, no other file
        instar_check_arg c{};
        if (a.image_count != 1 || op_len != sizeof c)
            return Status::Invalid;
        __builtin_memcpy(&c, op_arg, sizeof c);
        if (c.fix != 0 || c.file_count != 0)
            return Status::Invalid;
    } else if (a.op == INSTAR_OP_MAP) { // a plan naming the image alone (op_map.cpp checks the rest)
        if (a.image_count != 1 || op_len != sizeof(instar_map_arg))
            return Status::Invalid;
    } else if (a.op == INSTAR_OP_MEASURE) { // a plan naming the image alone (op_measure.cpp)
        if (a.image_count != 1 || op_len != sizeof(instar_measure_arg))
            return Status::Invalid;
    } else if (a.op == INSTAR_OP_COMPARE) { // a plan naming the two images alone (op_compare.cpp)
        if (a.image_count != 2 || op_len != sizeof(instar_compare_arg))
            return Status::Invalid;
    } else if (a.op == INSTAR_OP_CONVERT) { // a plan naming the source alone (op_convert.cpp)
        if (a.image_count != 1 || op_len != sizeof(instar_convert_arg))
            return Status::Invalid;
    } else if (a.op == INSTAR_OP_INFO) { // info --backing-chain: the inspections are the command
        if (a.image_count != 1 || op_len != 0)
            return Status::Invalid;
    } else {
        return Status::Invalid;
    }
    // Every image is inspected (the host reuses each inspection on its ordinary path), each one's
    // records closed by an empty INSTAR_REC_INFO_END; the first failure ends the run. With
    // INSTAR_INFO_FIRST_CHAINS each image's backing files follow it, as the host opens them.
    bool alone = true;
    for (uint32_t i = 0; i < a.image_count; ++i) {
        const ModuleOps* ops = module(a.modules[i]);
        BlockDevice* image = device(i);
        if (ops == nullptr || image == nullptr)
            return Status::Invalid;
        InfoFirstResult& r = g_results[i];
        r = InfoFirstResult{};
        r.module = a.modules[i];
        if (const Status st = inspect_and_end(*ops, *image, (a.flags & (1u << i)) != 0,
                                              (a.flags & (1u << (INSTAR_INFO_FIRST_NO_KEY_SHIFT + i))) != 0,
                                              a.qemu_version, &r);
            st != Status::Ok)
            return st;
        bool ends = r.lone;
        if (!ends && (a.flags & INSTAR_INFO_FIRST_CHAINS) != 0)
            if (const Status st = inspect_backing_chain(i, a.qemu_version, r, &ends); st != Status::Ok)
                return st;
        alone = alone && ends && r.size <= a.max_virtual_size;
    }
    // Not started: Ok says the inspections themselves succeeded (the host reuses them).
    if (!alone)
        return Status::Ok;
    static constexpr uint8_t NOTHING = 0;
    if (const Status sent = services().send_record(INSTAR_REC_STARTED, &NOTHING, 0); sent != Status::Ok)
        return sent;
    if (a.op == INSTAR_OP_INFO)
        return Status::Ok;
    g_started = a.image_count;
    const Status st = dispatch(a.op, op_arg, op_len);
    g_started = 0;
    return st;
}

} // namespace instar::guest
