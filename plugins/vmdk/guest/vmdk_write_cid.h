// The CID update qemu makes on an image's first write (block/vmdk.c vmdk_write_cid), byte for byte.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "vmdk_descriptor.h"

namespace instar::vmdk {

// Rewrites the descriptor window `desc` (VMDK_DESC_WINDOW bytes read zero-filled from the
// descriptor's offset) as qemu does: the last byte becomes NUL, the text after the first "CID" and
// its '=' becomes "%x\n" of `cid` followed by the text from "parentCID" on. Bytes after the new
// text's NUL keep their old values (qemu writes the whole window back). False when the text has no
// "parentCID" (qemu's -EINVAL: the write fails). `scratch` is another VMDK_DESC_WINDOW bytes (qemu's
// tmp_desc).
bool rewrite_cid(uint8_t* desc, uint8_t* scratch, uint32_t cid);

// How many bytes of the window qemu's write lands in a descriptor of `text_bytes` at `offset` of a
// file `file_bytes` long: the whole window inside a sparse extent, but only up to the descriptor
// file's length rounded up to a sector (qemu-img leaves monolithicFlat descriptors 512 bytes long).
size_t cid_write_bytes(uint64_t offset, uint64_t file_bytes);

} // namespace instar::vmdk
