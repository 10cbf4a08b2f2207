// The qcow emitter (qemu's qcow_co_create_opts / qcow_co_create) and convert's writer.
#pragma once

#include <instar/guest/create_api.h>
#include <instar/guest/write_api.h>

#include <stdint.h>

namespace instar::qcow {

// What create laid down, for the writer.
struct QcowCreated {
    uint32_t cluster_bits;
    uint32_t l2_bits;
    uint64_t image_size; // bytes, whole sectors
    uint64_t l1_offset;
    uint64_t l1_size;    // entries
    uint64_t file_size;  // the file's length after create
};

guest::Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, QcowCreated* out);
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);
// convert -O qcow: the image as create makes it, then qemu's allocating-write rules (block/qcow.c).
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);
// convert -n into an existing qcow: the same writer over the image's own tables.
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::qcow
