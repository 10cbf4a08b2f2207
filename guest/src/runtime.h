// Internal interfaces between the guest runtime's parts (not seen by modules).
#pragma once

#include <instar/guest_abi.h>
#include <instar_guest/module_abi.h>

namespace instar::guest {

// hypercalls.cpp: typed wrappers over the mailbox.
int64_t hc_read(uint32_t device, uint64_t offset, void* buf, uint64_t len);
int64_t hc_write(uint32_t device, uint64_t offset, const void* buf, uint64_t len);
// INSTAR_HC_WRITE_SEGMENTS: count (1..INSTAR_MAX_WRITE_SEGMENTS) segments, written in order.
int64_t hc_write_segments(uint32_t device, const instar_write_segment* segments, uint64_t count);
int64_t hc_flush(uint32_t device);
int64_t hc_device_info(uint32_t device, uint64_t* size, uint64_t* flags);
int64_t hc_record(uint32_t type, const void* data, uint64_t len);
int64_t hc_set_length(uint32_t device, uint64_t length, uint32_t fill);
int64_t hc_add_file(const char* name, uint64_t len); // >= 0: the new device's index
// >= 0: the device of image `image`'s backing file (INSTAR_HC_NEXT_IMAGE), *module_flags its module
// index and INSTAR_NEXT_IMAGE_* flags, *allocated its file's allocated bytes; < 0: the host did not
// open it.
int64_t hc_next_image(uint32_t image, uint32_t* module_flags, uint64_t* allocated);
// The run at `offset`; with `runs`, also up to max_runs runs from offset on (INSTAR_ALLOCATION_RUNS):
// ret is how many the host wrote there (0 when it wrote none).
int64_t hc_allocation(uint32_t device, uint64_t offset, bool* data, uint64_t* length,
                      instar_allocation_run* runs = nullptr, uint64_t max_runs = 0);
int64_t hc_discard(uint32_t device, uint64_t offset, uint64_t len);
// INSTAR_HC_DISCARD_RANGES: count (1..INSTAR_MAX_DISCARD_RANGES) ranges, discarded in order.
int64_t hc_discard_ranges(uint32_t device, const instar_range* ranges, uint64_t count);
void hc_progress(uint64_t done, uint64_t total);
// INSTAR_HC_GROW_MEMORY: RAM of at least `size` bytes; *ram = the RAM size now (0: grown, or there
// was enough).
int64_t hc_grow_memory(uint64_t size, uint64_t* ram);
// INSTAR_HC_COMPRESS: count <= INSTAR_MAX_COMPRESS_JOBS jobs, results written into the table.
int64_t hc_compress(uint32_t kind, instar_compress_job* jobs, uint64_t count);
void hc_log(const char* text, uint64_t len);
// Whether hc_write, hc_discard or hc_set_length has been called in this run on a device that is
// not a new output (devices.cpp's small-read block and allocation runs are only trusted before:
// two devices may be one file, e.g. commit's base; an output is a file the host created for this
// run, never one an input names). hypercalls.cpp reports each such call with note_device_change().
bool devices_changed();
// own_write: the call is a write to `device`, reported by note_own_write() once made, so the own
// block (devices.cpp) keeps that device's bytes for it to update; any other change empties it.
void note_device_change(uint32_t device, bool own_write = false);
// A write of [offset, offset + len) from `src` to `device` was made; `taken`: the host wrote it (not
// deferred, not failed). The own block copies the bytes in, or empties itself when not taken.
void note_own_write(uint32_t device, uint64_t offset, const void* src, uint64_t len, bool taken);
// A read of [offset, offset + len) of `device` into `src` completed: the own block may keep it.
void note_own_read(uint32_t device, uint64_t offset, const void* src, uint64_t len);
// The length of writable `device`'s file, from the host (an edit's plan) or a SET_LENGTH it made (0:
// not known, e.g. after a failed one): the own block then fetches whole blocks below it. Writes
// past it extend it (note_own_write()).
void note_file_length(uint32_t device, uint64_t length);
[[noreturn]] void hc_exit(int32_t status);
void log_str(const char* text);
// Write-behind (docs/sandbox.md): device writes from inside [buf, buf + len) are sent as
// INSTAR_WRITE_DEFERRABLE until the next call (len 0: none are), so the caller leaves those bytes
// alone until settle_writes_from(buf) has returned; that waits for the host only when the last
// deferred write came from this window and nothing has settled it since.
void defer_writes_from(const void* buf, uint64_t len);
void settle_writes_from(const void* buf);
// Whether the host has deferred a write in this run (it has write-behind): only then does a second
// copy buffer pay for its memory.
bool host_defers_writes();
// Read-ahead (docs/convert.md): device reads into [buf, buf + len) are sent as INSTAR_READ_AHEAD
// (len 0: none are), so the caller leaves those bytes alone until settle_reads() has returned;
// settle_reads() answers 0 or the first failure (-INSTAR_EIO) among them, and asks the host only
// when one is outstanding. host_reads_ahead(): a read has come back INSTAR_READ_PENDING in this run
// (only then does reading ahead overlap anything).
void read_ahead_into(const void* buf, uint64_t len);
int64_t settle_reads();
bool host_reads_ahead();

// arena.cpp: the bounded allocator behind Services::allocator and malloc/free.
void arena_init(uint64_t base, uint64_t size);
Allocator& arena();
// Bytes never handed out yet (the bump region; freed blocks not counted).
uint64_t arena_room();

// devices.cpp
void devices_init(const instar_boot_info& boot); // the boot info describes the first devices
uint32_t device_count();
BlockDevice* device(uint32_t index);
// A device the host attached during the run (INSTAR_HC_ADD_FILE), or nullptr when the arena is full.
BlockDevice* attach_device(uint32_t index);
// Device `index`: a boot device, or one attached before (attach_device); nullptr for any other.
BlockDevice* any_device(uint32_t index);
// The host's index of a device made by device() or attach_device(); UINT32_MAX for any other.
uint32_t device_index(const BlockDevice& dev);
// Read windows (devices.cpp): from now on, short reads that move forward through a read-only
// device are served from a window read in one call. For the walks over data (convert, compare),
// called once their own buffers are placed: the windows take arena memory. Reads longer than
// `max_read` (capped at the windows' own limit) are never served from a window; `first` is a
// window's first fetch (0: READ_WINDOW_FIRST), doubling from there.
void allow_read_windows(uint64_t max_read = UINT64_MAX, uint64_t first = 0);
// Write gathering (devices.cpp): from now on, short writes to an output are copied into one buffer
// (a segment each, or onto the last one they continue) and written together, in one WRITE or
// WRITE_SEGMENTS, before any other device call (hypercalls.cpp calls flush_gathered() first in
// each, and at exit). For convert.
void allow_write_gathering();
// Discard gathering (devices.cpp): from now on, discards of writable devices are kept and sent
// together (INSTAR_HC_DISCARD_RANGES) before any other device call. For check's repairs.
void allow_discard_gathering();
// Writes (or discards) what was gathered: 0, or -INSTAR_EIO when that failed (the host keeps why).
int64_t flush_gathered();

// services.cpp
const Services& services();
Status inflate_buffer(const void* src, size_t src_len, void* dst, size_t dst_cap, size_t* out_len,
                      int window_bits);
// The compressors and decompressors format code gets through OpenRequest and CreateRequest.
const Codecs& codecs();

// modules.cpp
Status modules_init(const instar_boot_info& boot);
uint32_t module_count();
const ModuleOps* module(uint32_t index);

// ops.cpp
Status dispatch(uint32_t op, const uint8_t* arg, uint32_t arg_len);

// op_create.cpp
Status create_op(const uint8_t* arg, uint32_t arg_len);

// op_convert.cpp
Status convert_op(const uint8_t* arg, uint32_t arg_len);

// op_check.cpp
Status check_op(const uint8_t* arg, uint32_t arg_len);
// INSTAR_OP_EDIT: an in-place change by module 0 (op_edit.cpp).
Status edit_op(const uint8_t* arg, uint32_t arg_len);

// op_compare.cpp
Status compare_op(const uint8_t* arg, uint32_t arg_len);
// INSTAR_OP_REBASE: rebase's safe-mode copy (op_rebase.cpp).
Status rebase_op(const uint8_t* arg, uint32_t arg_len);
// op_map.cpp
Status map_op(const uint8_t* arg, uint32_t arg_len);
// op_measure.cpp
Status measure_op(const uint8_t* arg, uint32_t arg_len);
// op_commit.cpp
Status commit_op(const uint8_t* arg, uint32_t arg_len);

} // namespace instar::guest
