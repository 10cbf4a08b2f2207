// The contract between the guest runtime and a guest module (a plugin's guest half).
//
// A module is a position-independent, -nostdlib ELF whose entry point (e_entry) is
// instar_module_entry. The host copies it into guest RAM and applies its R_X86_64_RELATIVE
// relocations; nothing else is resolved, so a module reaches the runtime only through the
// Services table it is given, and the runtime reaches the module only through ModuleOps.
// Modules must not rely on static constructors (none are run): use constinit data.
#pragma once

#include <instar/guest/check_api.h>
#include <instar/guest/create_api.h>
#include <instar/guest/edit_api.h>
#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>
#include <instar/guest/read_api.h>
#include <instar/guest/write_api.h>
#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

// Bumped whenever Services or ModuleOps change layout or meaning, or a class a module implements
// (ImageReader, ImageWriter, ...) gains a virtual function (7: ImageReader::content_id and
// backing_valid, vmdk's parentCID check; 10: InfoRequest::flags; 11: ImageWriter::subcluster_size).
inline constexpr uint32_t MODULE_ABI_VERSION = 11;

// What the runtime offers a module. Valid for the whole run.
struct Services {
    uint32_t abi_version; // MODULE_ABI_VERSION
    uint32_t size;        // sizeof(Services), for forward compatibility
    Allocator* allocator; // bounded arena: returns nullptr when exhausted
    uint32_t device_count;
    // Device `index`, or nullptr when there is no such device. Reads past the end are IoError.
    BlockDevice* (*device)(uint32_t index);
    // One result record for the host (at most INSTAR_MAX_RECORD_SIZE bytes).
    Status (*send_record)(uint32_t type, const void* data, size_t len);
    // One diagnostic line (truncated to INSTAR_MAX_LOG_LINE bytes).
    void (*log)(const char* text, size_t len);
    // Inflates one complete deflate stream. window_bits as zlib's inflateInit2 (15: zlib
    // wrapper, -15: raw deflate, 31: gzip). Ok with *out_len set, Corrupt on bad data,
    // TooLarge when the output would exceed dst_cap (a decompression bomb stops there).
    Status (*inflate)(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len,
                      int window_bits);
    uint32_t (*crc32)(uint32_t crc, const void* data, size_t len);
};

// What a module offers. Any function pointer may be null when the module lacks it.
struct ModuleOps {
    uint32_t abi_version; // MODULE_ABI_VERSION
    uint32_t size;        // sizeof(ModuleOps)
    const char* name;     // the format name, e.g. "raw"
    // Does `dev` hold this format? Sets *match; a non-Ok status means the device failed.
    Status (*probe)(BlockDevice& dev, bool* match);
    // Module-defined work for INSTAR_OP_MODULE_RUN (used by tests of the sandbox).
    Status (*run)(const void* arg, size_t arg_len);
    // INSTAR_OP_INFO: report what `qemu-img info` shows (instar/guest/info_sink.h).
    Status (*info)(const InfoRequest& req, InfoSink& sink);
    // Names a format instar does not support (raw's module recognises vdi, qed, iso, ...): sets
    // *name, or nullptr when it sees none of them.
    Status (*detect_other)(BlockDevice& dev, const char** name);
    // INSTAR_OP_CREATE: write a new image's metadata (instar/guest/create_api.h).
    Status (*create)(const CreateRequest& req, CreateTarget& target);
    // Since module ABI 3. Reading an image's virtual disk (instar/guest/read_api.h).
    OpenFn open;
    // Creating an image and writing its data: convert's target (instar/guest/write_api.h).
    CreateWriterFn create_writer;
    // Since module ABI 4. Writing into an existing image: convert -n's target (write_api.h).
    OpenWriterFn open_writer;
    // Since module ABI 5. INSTAR_OP_CHECK: qemu-img check's consistency check (instar/guest/check_api.h);
    // null: "This image format does not support checks".
    CheckFn check;
    // Since module ABI 6. INSTAR_OP_EDIT: changing an existing image in place (resize, snapshot,
    // amend, bitmap, ...; instar/guest/edit_api.h). Null: the format supports none of them.
    // Keep new entries after this one.
    EditFn edit;
};

using ModuleEntryFn = const ModuleOps* (*)(const Services* services);

} // namespace instar::guest

// Every module defines exactly this function and links with -e instar_module_entry.
extern "C" __attribute__((visibility("default"))) const instar::guest::ModuleOps* instar_module_entry(const instar::guest::Services* services);
