// The VHDX format's guest half: detection and `info`.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

#include "vhdx_header.h"
#include "vhdx_metadata.h"
#include "vhdx_region_table.h"

namespace instar::vhdx {

// True when the file starts with the "vhdxfile" file identifier (qemu's probe).
guest::Status probe(guest::BlockDevice& dev, bool* match);

// Reports format "vhdx", the virtual size, the block size as cluster size, and a differencing
// disk's parent (qemu itself refuses differencing VHDX: see docs/formats/vhdx.md).
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

// What qemu's vhdx_open establishes about an image, shared by info and the reader.
struct VhdxImage {
    VhdxHeader header;
    VhdxRegions regions;
    VhdxMetadata meta;
    uint64_t virtual_size; // the virtual disk size rounded down to 512
    // A failure's text when it carries a line qemu error_reports first: '\x01' (the program-name
    // marker, ops/guest_module.cpp), that line, '\n', then qemu's error. *why points here then.
    char why_text[1 + VHDX_REPORT_MAX + 1 + 64];
};

// Runs qemu's open sequence without writing (headers, log check, region table, metadata, BAT
// checks). On failure *why (when not nullptr) is qemu's error text where instar has it; a log that
// needs replay is Unsupported with qemu-img's read-only message ("{image}" for the file name).
guest::Status vhdx_load(guest::BlockDevice& dev, guest::Allocator& alloc, VhdxImage* out, const char** why);

} // namespace instar::vhdx
