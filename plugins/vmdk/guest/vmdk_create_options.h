// The settings of a new VMDK image: qemu's vmdk create options read, defaulted and validated in
// the order and with the messages of block/vmdk.c (vmdk_co_create_opts, vmdk_co_do_create).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <instar/guest/create_api.h>

namespace instar::vmdk {

enum class Subformat : uint8_t {
    MonolithicSparse,
    MonolithicFlat,
    TwoGbMaxExtentSparse,
    TwoGbMaxExtentFlat,
    StreamOptimized,
};
enum class AdapterType : uint8_t { Ide, Buslogic, Lsilogic, LegacyEsx };

// qemu's BlockdevVmdkSubformat / BlockdevVmdkAdapterType spellings.
const char* subformat_name(Subformat s);
const char* adapter_name(AdapterType a);

struct CreateSettings {
    uint64_t size;              // bytes, rounded up to a sector (qemu's ROUND_UP(size, 512))
    Subformat subformat;
    AdapterType adapter;
    const char* hw_version;     // ddb.virtualHWVersion, verbatim
    const char* tools_version;  // ddb.toolsVersion, verbatim
    bool zeroed_grain;
    bool flat;                  // monolithicFlat, twoGbMaxExtentFlat
    bool split;                 // twoGbMaxExtent*: 2 GiB extents
    bool compress;              // streamOptimized
    const char* backing_file;   // nullptr: none
};

// qemu's errors come with a value in them ("invalid parameter value: X"); the caller's buffer
// holds the reason (at most CREATE_MAX_REASON bytes).
struct CreateError {
    char text[guest::CREATE_MAX_REASON + 1];
    size_t len;
};

// Reads req's options. On a value qemu refuses, fills `err` and returns Invalid (or Unsupported
// for qemu's -ENOTSUP refusals).
guest::Status read_create_settings(const guest::CreateRequest& req, CreateSettings* out, CreateError* err);

} // namespace instar::vmdk
