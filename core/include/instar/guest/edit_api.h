// `edit`: what a format's guest half gets to change an existing image in place (INSTAR_OP_EDIT,
// docs/edit.md): resize, snapshot, amend, bitmap, the backing-file switch of rebase, commit's
// emptying of the top image. One module entry (ModuleOps::edit) serves every such command; the
// command's own arguments are bytes the host built (trusted) that the command's code decodes.
// Everything read from the image is untrusted and checked as a reader checks it.
//
// Crash consistency is the format code's job: order the writes so that a kill at any point leaves
// an image qemu-img check accepts (at worst leaked clusters) holding the old or the new content:
// new structures first, flush, then the one write that switches to them (docs/edit.md).
// Freestanding-clean: the same sources run in the guest module, hosted unit tests and fuzz targets.
#pragma once

#include <instar/guest/create_api.h>
#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

// The commands (instar_edit_arg.command). Each names the header that defines its argument bytes.
enum class EditCommand : uint32_t {
    Resize = 1,     // instar/guest/edit_resize.h
    Snapshot = 2,   // instar/guest/edit_snapshot.h
    Amend = 3,      // instar/guest/edit_amend.h
    Bitmap = 4,     // instar/guest/edit_bitmap.h
    SetBacking = 5, // instar/guest/edit_backing.h (rebase -u; the last step of rebase and commit)
    MakeEmpty = 6,  // no arguments: commit's emptying of the top image (qemu's bdrv_make_empty)
    // No arguments: what qemu's read-write open changes before anything reads the image (vhdx
    // replays its log), for a format declaring CAP_OPEN_REPLAY. Ok, nothing written, when there is
    // nothing to replay or the image fails an earlier open check (the open that follows words it).
    // A replay that happened reports one EDIT_DATA_REPLAYED record (qemu's check counts it).
    ReplayLog = 7,
};

// ReplayLog's data record (no bytes): the image was changed by the replay. qemu's `check -r`
// counts a log replayed on open as one fixed corruption (vhdx_co_check's log_replayed_on_open).
// The value is INSTAR_EDIT_COMMAND_DATA, the first command data kind: guest_abi.h is not part of the
// installed plugin SDK (this header is), so the value is spelled here and checked where both meet
// (core/src/ops/open_replay.cpp).
inline constexpr uint32_t EDIT_DATA_REPLAYED = 16;

// Longest command argument the host sends (names, option lists): far below guest RAM.
inline constexpr size_t EDIT_MAX_ARGS = 64u << 10;

// The host side of an edit: file lengths, durability, new files, and output.
class EditHost {
public:
    // Sets a file's length (the image or one of its files). Growing adds zeros: a hole (Off),
    // reserved space (Falloc) or written zeros (Full), filled by the host.
    virtual Status set_length(BlockDevice& file, uint64_t length, Prealloc mode) = 0;
    // Makes the writes so far to `file` durable: the ordering point between dependent steps.
    virtual Status flush(BlockDevice& file) = 0;
    // Creates a further file beside the image (a vmdk extent). `name` is a plain file name, no '/'.
    // Unsupported when the host did not allow the command to add files.
    virtual Status add_file(const char* name, BlockDevice** out) = 0;
    // Text for the host's stdout or stderr (complete lines). A stderr line qemu prints through
    // error_report starts with CHECK_PROGRAM_PREFIX ('\x01'): the host puts its program name there.
    virtual Status out(const char* text, size_t len) = 0;
    virtual Status err(const char* text, size_t len) = 0;
    // Why the command was refused, in qemu-img's words (one line, at most CREATE_MAX_REASON bytes).
    // Call it before returning a non-Ok Status.
    virtual void reason(const char* text, size_t len) = 0;
    // A command's own structured result (kind >= INSTAR_EDIT_COMMAND_DATA; at most
    // EDIT_MAX_DATA_RECORD bytes per call), decoded by the host's command code.
    virtual Status data(uint32_t kind, const void* bytes, size_t len) = 0;
    // -p: work done out of total.
    virtual void progress(uint64_t done, uint64_t total) = 0;

protected:
    ~EditHost() = default;
};

// One data record's payload at most: under INSTAR_MAX_RECORD_SIZE with room for its head.
inline constexpr size_t EDIT_MAX_DATA_RECORD = 60u << 10;

struct EditRequest {
    EditCommand command;
    BlockDevice* image;
    // Its length when the host opened it: an output device's size() is only its limit.
    uint64_t image_length;
    BlockDevice* const* files; // the files the image names, as OpenRequest::files
    const uint64_t* file_lengths;
    uint32_t file_count;
    BlockDevice* const* extra; // further read-only files the command names (bitmap --merge -b)
    uint32_t extra_count;
    bool writable;             // false: the command only reads (snapshot -l)
    const uint8_t* args;       // the command's argument bytes (see EditCommand)
    size_t args_len;
    int64_t unix_time;         // the host's clock, for on-disk dates
    uint32_t unix_nsec;
    const uint8_t* random;     // CREATE_RANDOM_BYTES bytes from the host's CSPRNG
    uint32_t qemu_version;     // major*10000 + minor*100 + micro
    Allocator* allocator;
    const Codecs* codecs;
    // INSTAR_EDIT_SECRETS: secrets[i] (secret_lengths[i] bytes) for i < EDIT_MAX_SECRETS, nullptr
    // where the host sent none; secrets itself nullptr when it sent no secrets device.
    const uint8_t* const* secrets = nullptr;
    const size_t* secret_lengths = nullptr;
};

// EditRequest::secrets entries (INSTAR_EDIT_SECRETS).
inline constexpr uint32_t EDIT_SECRET_KEY = 0; // the image's key (key-secret / encrypt.key-secret)
inline constexpr uint32_t EDIT_SECRET_NEW = 1; // amend's new-secret
inline constexpr uint32_t EDIT_SECRET_OLD = 2; // amend's old-secret
inline constexpr uint32_t EDIT_MAX_SECRETS = 3;

// Ok when the command did what it was asked; otherwise a Status with a reason sent (nothing
// changed, or, past the switch point, the change complete: docs/edit.md says which).
using EditFn = Status (*)(const EditRequest& req, EditHost& host);

// Refuses with `text` as the reason (a command a format does not implement).
inline Status edit_refuse(EditHost& host, const char* text, Status status = Status::Unsupported) {
    size_t len = 0;
    while (text[len] != 0)
        ++len;
    host.reason(text, len);
    return status;
}

} // namespace instar::guest
