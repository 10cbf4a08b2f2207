// What format code offers to write a new image's virtual disk: the target side of convert (and
// later dd and commit into a new base). Freestanding-clean; the same sources run in the guest
// module, hosted unit tests and fuzz targets. Documented in docs/convert.md.
//
// A writer is made by the format's create_writer entry point, which first lays down exactly what
// `create` would (the same CreateRequest, the same emitter), then accepts data in the order and the
// piece sizes qemu-img convert issues them, so that the result is byte-identical to qemu-img's.
#pragma once

#include <instar/guest/create_api.h>
#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::guest {

// The reason convert gives when the empty compressed write that ends a `-c` convert fails (qcow2
// with an external data file): qemu-img's convert_do_copy returns without a message, so the host
// prints nothing and exits 1.
inline constexpr char CONVERT_END_OF_STREAM_FAILED[] = "the end-of-stream compressed write failed: ";

class ImageWriter {
public:
    // The target's allocation unit as qemu's bdrv_get_info reports it (cluster, grain or block
    // size), 0 when it has none: convert aligns data runs to it, as qemu-img does.
    virtual uint64_t cluster_size() const = 0;
    // Whether the new image already reads as zeros everywhere (qemu's bdrv_has_zero_init): convert
    // then leaves zero ranges alone instead of writing them.
    virtual bool zero_init() const = 0;
    // Virtual bytes [offset, offset + len). Offsets and lengths are 512-byte multiples, except at
    // the end of a virtual size that is not.
    virtual Status write(uint64_t offset, const void* buf, size_t len) = 0;
    // [offset, offset + len) reads as zeros afterwards (qemu's write_zeroes; may_unmap as
    // BDRV_REQ_MAY_UNMAP).
    virtual Status write_zeroes(uint64_t offset, uint64_t len, bool may_unmap) = 0;
    // -c: one cluster (the image's last may be shorter), stored compressed where that is smaller.
    // Unsupported when the format has no compressed clusters (qemu's "does not support
    // compression").
    virtual Status write_compressed(uint64_t offset, const void* buf, size_t len) = 0;
    // -B: the new image's backing file (its whole chain composed) as qemu's target sees it, for
    // copy-on-write of partly written clusters and the "rest reads as zeros" checks of write_zeroes.
    // Called before the first write; the reader outlives the writer's use. Formats without backing
    // files ignore it.
    virtual void set_backing(ImageReader* backing) { (void)backing; }
    // qemu's bdi.needs_compressed_writes: the format takes data only as whole compressed clusters
    // (vmdk streamOptimized), so convert runs in -c mode whether or not -c was given.
    virtual bool needs_compressed_writes() const { return false; }
    // Writes every table still held in memory; the image is complete when this returns Ok.
    virtual Status finish() = 0;
    // Releases the writer's memory. Unusable afterwards.
    virtual void close() = 0;
    // Appended in module ABI 11 (docs/guest-abi.md): the smallest unit the image allocates, as
    // bdrv_get_info's subcluster_size (a qcow2 cluster / 32 with extended L2 entries): qemu-img
    // 8.0+'s safe rebase compares and writes in these.
    virtual uint64_t subcluster_size() const { return cluster_size(); }

protected:
    ~ImageWriter() = default;
};

// Creates the image as `create` does (req, target: create_api.h), then returns a writer over it,
// allocated from req.allocator. `target` (and req.codecs) must outlive the writer: writers grow
// files through it. codecs carries the compressors for -c.
using CreateWriterFn = Status (*)(const CreateRequest& req, CreateTarget& target, ImageWriter** out);

// convert -n: opens the existing image on req.image (writable; everything read from it is untrusted
// and checked as a reader checks it) and returns a writer that updates it in place, allocated from
// req.allocator. req.files, req.snapshot are unused. The writer's zero_init() is false (qemu: a
// target that is not new has no zero initialisation) and its virtual size is the image's own,
// at least the sources' total (the host checked). Reasons go to req.reasons in qemu's words.
using OpenWriterFn = Status (*)(const OpenRequest& req, ImageWriter** out);

} // namespace instar::guest
