// Resize for formats whose virtual disk is a stretch of one file: raw (the whole file) and luks (the
// payload after its header). qemu hands both to file-posix's raw_co_truncate: the file's length
// changes, `off` truncates or leaves a hole, `falloc` reserves and `full` writes zeros over the
// appended region only, `metadata` is refused. Freestanding-clean.
#pragma once

#include <instar/guest/edit_api.h>
#include <instar/guest/edit_resize.h>

#include <stdint.h>

namespace instar::guest {

// The reason when the host could not set the length: the host's run_edit puts the errno's text in
// place of "the host refused the new length", as qemu's raw_regular_truncate words it ("Could not
// resize file: File too large" past the file system's limit).
inline constexpr char RESIZE_FILE_REFUSED[] = "Could not resize file: the host refused the new length";

// Decodes EditCommand::Resize's bytes with the checks both formats share.
inline Status resize_file_args(const EditRequest& req, EditHost& host, ResizeArgs* a) {
    if (req.args_len != sizeof *a)
        return edit_refuse(host, "resize: malformed arguments", Status::Invalid);
    __builtin_memcpy(a, req.args, sizeof *a);
    if (!req.writable)
        return edit_refuse(host, "resize: the image was not opened for writing", Status::Invalid);
    if (a->new_size == 0 || a->new_size > INT64_MAX)
        return edit_refuse(host, "New image size must be positive", Status::Invalid);
    return Status::Ok;
}

// file-posix's truncate of `file` (now `current` bytes long) to `length` with preallocation `mode`.
inline Status resize_file_length(EditHost& host, BlockDevice& file, uint64_t current, uint64_t length,
                                 uint32_t mode) {
    switch (static_cast<Prealloc>(mode)) {
    case Prealloc::Off:
    case Prealloc::Falloc:
    case Prealloc::Full:
        break;
    case Prealloc::Metadata:
        return edit_refuse(host, "Unsupported preallocation mode: metadata");
    default:
        return edit_refuse(host, "resize: unknown preallocation mode", Status::Invalid);
    }
    // qemu truncates to the exact size; preallocation applies to the grown part only (the host
    // fills [old length, new length) as `mode` asks).
    if (length == current)
        return Status::Ok;
    // Past the longest file the host writes (the output device's limit, INSTAR_MAX_OUTPUT_SIZE:
    // far past ext4's 16 TiB): ftruncate's EFBIG in qemu's words.
    if (length > file.size())
        return edit_refuse(host, "Could not resize file: File too large", Status::TooLarge);
    const Status st = host.set_length(file, length, static_cast<Prealloc>(mode));
    if (st != Status::Ok)
        return edit_refuse(host, RESIZE_FILE_REFUSED, st);
    return Status::Ok;
}

} // namespace instar::guest
