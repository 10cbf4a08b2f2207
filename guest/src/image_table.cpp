// The image table shared by the data operations (image_table.h).
#include "image_table.h"

namespace instar::guest {

void RecordReasons::reason(const char* text, size_t len) {
    if (sent_ || quiet_) return;
    sent_ = true;
    hc_record(INSTAR_REC_REASON, text, len < CREATE_MAX_REASON ? len : CREATE_MAX_REASON);
}

Status read_plan_device(uint32_t plan_device, size_t min_size, uint8_t** bytes, size_t* size) {
    BlockDevice* dev = device(plan_device);
    if (dev == nullptr || dev->size() < min_size || dev->size() > MAX_PLAN_BYTES) return Status::Invalid;
    *size = static_cast<size_t>(dev->size());
    *bytes = static_cast<uint8_t*>(arena().allocate(*size + 1, 16));
    if (*bytes == nullptr) return Status::NoMemory;
    if (dev->read(0, *bytes, *size) != Status::Ok) return Status::IoError;
    (*bytes)[*size] = 0;
    return Status::Ok;
}

Status read_secrets(uint32_t device_plus_one, uint32_t image_count, Secrets* out) {
    *out = Secrets{};
    if (device_plus_one == 0) return Status::Ok;
    // Bound: every image's secret at most INSTAR_MAX_SECRET_BYTES, plus the tables.
    const uint64_t max_bytes = uint64_t{image_count} * (INSTAR_MAX_SECRET_BYTES + sizeof(instar_secret_entry)) +
                               sizeof(instar_secret_table);
    BlockDevice* dev = device(device_plus_one - 1);
    if (dev == nullptr || dev->size() < sizeof(instar_secret_table) || dev->size() > max_bytes) return Status::Invalid;
    const size_t size = static_cast<size_t>(dev->size());
    auto* bytes = static_cast<uint8_t*>(arena().allocate(size, 16));
    out->bytes = static_cast<const uint8_t**>(arena().allocate(image_count * sizeof(uint8_t*) + 1, 8));
    out->lengths = static_cast<size_t*>(arena().allocate(image_count * sizeof(size_t) + 1, 8));
    if (bytes == nullptr || out->bytes == nullptr || out->lengths == nullptr) return Status::NoMemory;
    for (uint32_t i = 0; i < image_count; ++i) {
        out->bytes[i] = nullptr;
        out->lengths[i] = 0;
    }
    if (dev->read(0, bytes, size) != Status::Ok) return Status::IoError;
    instar_secret_table head;
    __builtin_memcpy(&head, bytes, sizeof head);
    if (head.magic != INSTAR_SECRETS_MAGIC || head.count > image_count ||
        head.count > (size - sizeof head) / sizeof(instar_secret_entry))
        return Status::Invalid;
    size_t at = sizeof head + head.count * sizeof(instar_secret_entry);
    for (uint32_t k = 0; k < head.count; ++k) {
        instar_secret_entry e;
        __builtin_memcpy(&e, bytes + sizeof head + k * sizeof e, sizeof e);
        if (e.image >= image_count || out->bytes[e.image] != nullptr || e.length > INSTAR_MAX_SECRET_BYTES ||
            e.length > size - at)
            return Status::Invalid;
        out->bytes[e.image] = bytes + at;
        out->lengths[e.image] = e.length;
        at += e.length;
    }
    return at == size ? Status::Ok : Status::Invalid;
}

Status check_image_table(const instar_convert_image* images, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
        const instar_convert_image& im = images[i];
        if (module(im.module) == nullptr || any_device(im.device) == nullptr || im.file_count > device_count() ||
            im.first_file > device_count() - im.file_count ||
            (im.backing != INSTAR_CONVERT_NO_BACKING && (im.backing >= count || im.backing == i)))
            return Status::Invalid;
    }
    return Status::Ok;
}

Status open_images(const instar_convert_image* images, uint32_t count, const char* snapshot, uint32_t qemu_version,
                   ReasonSink& reasons, ImageReader** readers, uint32_t* opened, const Secrets* secrets,
                   const ExactSnapshot* exact) {
    auto* files = static_cast<BlockDevice**>(arena().allocate(device_count() * sizeof(BlockDevice*) + 1, 8));
    if (files == nullptr) return Status::NoMemory;
    for (uint32_t i = 0; i < device_count(); ++i) files[i] = device(i);
    for (*opened = 0; *opened < count; ++*opened) {
        const instar_convert_image& im = images[*opened];
        const ModuleOps* m = module(im.module);
        if (m->open == nullptr) {
            static constexpr char TEXT[] = "this format's plugin cannot read image data";
            reasons.reason(TEXT, sizeof TEXT - 1);
            return Status::Unsupported;
        }
        OpenRequest req{any_device(im.device), files + im.first_file, im.file_count, &arena(), &codecs(),
                        &reasons, *opened == 0 ? snapshot : nullptr, qemu_version,
                        secrets && secrets->bytes ? secrets->bytes[*opened] : nullptr,
                        secrets && secrets->lengths ? secrets->lengths[*opened] : 0};
        if (*opened == 0 && exact != nullptr) {
            req.snapshot_exact = true;
            req.snapshot_id = exact->id;
            req.snapshot_name = exact->name;
            req.snapshot = exact->id != nullptr ? exact->id : exact->name;
        }
        if (const Status st = m->open(req, &readers[*opened]); st != Status::Ok) return st;
    }
    return Status::Ok;
}

void close_images(ImageReader** readers, uint32_t opened) {
    for (uint32_t i = 0; i < opened; ++i) readers[i]->close();
}

Status chain_of(const instar_convert_image* images, uint32_t count, uint32_t top, ImageReader* const* readers,
                ImageReader** out, uint32_t out_cap, uint32_t* depth) {
    *depth = 0;
    for (uint32_t i = top; i != INSTAR_CONVERT_NO_BACKING; i = images[i].backing) {
        if (*depth == out_cap || i >= count) return Status::Invalid;
        out[(*depth)++] = readers[i];
    }
    return Status::Ok;
}

} // namespace instar::guest
