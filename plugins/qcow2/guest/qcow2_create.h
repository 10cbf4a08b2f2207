// The qcow2 emitter: `instar create -f qcow2`, byte-identical to what qemu-img create writes.
#pragma once

#include "qcow2_create_alloc.h"
#include "qcow2_create_options.h"
#include "qcow2_create_tables.h"

#include "luks_crypto.h"

#include <instar/guest/create_api.h>

namespace instar::qcow2 {

guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

// A new image between create's layout (header, refcount structures, L1, preallocation) and its
// final writes (L2 tables still held, refcount blocks, header): convert's writer fills it between.
struct Qcow2NewImage {
    Qcow2NewImage(const Qcow2CreateSettings& settings, guest::BlockDevice& dev, guest::Allocator& alloc)
        : s(settings), a(dev, alloc, settings.cluster_bits, settings.refcount_order),
          t(a, alloc, settings.extended_l2) {
        t.set_data_file(settings.data_device);
    }
    Qcow2CreateSettings s;
    Qcow2Alloc a;
    Qcow2Tables t;
    // Encrypted images (s.crypt_method): the data cipher (arena memory, wiped and freed by
    // create_release), whether its sectors count from host offsets (LUKS) or guest offsets (AES),
    // and the LUKS header's clusters (the crypto header extension).
    luks::SectorCipher* cipher = nullptr;
    bool crypt_physical_offset = false;
    uint64_t crypto_header_offset = 0;
    uint64_t crypto_header_length = 0;
};

// create's first half: validates req and lays the image out as create does (from req.allocator).
guest::Status create_begin(const guest::CreateRequest& req, guest::CreateTarget& target, Qcow2NewImage** out);
// create's second half: the final writes; the image is complete when it returns Ok.
guest::Status create_end(Qcow2NewImage& img, guest::CreateTarget& target, guest::Allocator& alloc);
// Releases what create_begin allocated.
void create_release(Qcow2NewImage* img, guest::Allocator& alloc);

} // namespace instar::qcow2
