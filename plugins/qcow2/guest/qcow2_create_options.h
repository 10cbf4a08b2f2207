// qcow2 create options: qemu's qcow2_co_create_opts / qcow2_co_create validation, in its order and
// with its error texts.
#pragma once

#include <instar/guest/create_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// Everything the emitter needs from the request, validated.
struct Qcow2CreateSettings {
    uint32_t version = 3;
    uint32_t cluster_bits = 16;
    uint32_t refcount_order = 4;
    bool extended_l2 = false;
    bool lazy_refcounts = false;
    uint8_t compression_type = 0;
    guest::Prealloc prealloc = guest::Prealloc::Off;
    // The virtual size rounded up to 512 bytes as qemu does silently. qemu's rounding is in int64, so
    // a size within 511 bytes of INT64_MAX wraps negative: size_negative says so.
    uint64_t size = 0;
    bool size_negative = false;
    const char* backing_file = nullptr; // verbatim, or nullptr
    const char* backing_fmt = nullptr;  // nullptr: no backing format extension
    // The external data file: its name as stored in the header extension, and the device the host
    // made for it (CreateRequest::data_file); both nullptr without one.
    const char* data_file = nullptr;
    guest::BlockDevice* data_device = nullptr;
    bool data_file_raw = false;
    // encrypt.format (or the legacy `encryption=on`): QCOW_CRYPT_NONE, QCOW_CRYPT_AES or QCOW_CRYPT_LUKS.
    uint32_t crypt_method = 0;
};

// Fills `out` from `req`, or reports qemu-img's error through `target` and returns non-Ok.
guest::Status qcow2_create_settings(const guest::CreateRequest& req, guest::CreateTarget& target,
                                    Qcow2CreateSettings* out);

// Appends the NUL-terminated `src` to `dst` (capacity `cap`, always NUL-terminated), for building
// qemu's messages that quote user values.
void qcow2_append(char* dst, size_t cap, const char* src);

} // namespace instar::qcow2
