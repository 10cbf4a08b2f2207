// The QED emitter (qemu's bdrv_qed_co_create_opts / bdrv_qed_co_create) and convert's writer.
#pragma once

#include <instar/guest/create_api.h>
#include <instar/guest/write_api.h>

#include <stdint.h>

namespace instar::qed {

// What create laid down, for the writer.
struct QedCreated {
    uint32_t cluster_size;
    uint32_t table_size;
    uint64_t image_size;
    uint64_t l1_offset;
    bool has_backing;
};

guest::Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, QedCreated* out);
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);
// convert -O qed: the image as create makes it, then qemu's allocating-write rules (block/qed.c).
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);
// convert -n into an existing qed: qemu's read-write open (autoclear bits, the automatic check of
// an image with QED_F_NEED_CHECK), then the same writer over the image's own tables.
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::qed
