// The raw format's guest half: a partition-table probe, `info`, and naming of formats instar does
// not support (so a file is never silently treated as raw).
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

namespace instar::raw {

// True only for a disk with a plausible MBR or a GPT header (512- or 4096-byte sectors). An
// unpartitioned file is not raw by default (docs/quirks.md: raw-needs-partition-table).
guest::Status probe(guest::BlockDevice& dev, bool* match);

// Reports format "raw" and the device size rounded up to 512 bytes as virtual size (as qemu-img).
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

// Recognises an image format instar does not support, so the host can name it instead of falling
// back to raw: *name is "iso", "vdi", "qed", "luks", "qcow", "dmg", "parallels", "bochs" or
// "cloop", or nullptr when none matches. Never fails on garbage (Ok with *name = nullptr).
guest::Status detect_other(guest::BlockDevice& dev, const char** name);

} // namespace instar::raw
