// LUKS2 volumes read through the luks format (an instar extension, docs/formats/luks.md "LUKS2"):
// unlocking with the passphrase and the info report. luks_format.cpp's probe, info and open call
// these for a header of version 2.
#pragma once

#include "luks2_header.h"
#include "luks_crypto.h"

#include <instar/guest/info_sink.h>
#include <instar/guest/read_api.h>

namespace instar::luks {

// Tries the key slots of segment 0's digest with `pass` (cryptsetup's order: priority 2, then 1)
// and sets up `*cipher` for the segment (its sector size included), and `*encryptor` too where
// given (the encrypting direction, for convert -n). Refusals are said to `reasons`: qemu's LUKS1
// "Invalid password, cannot unlock any keyslot" for a wrong passphrase, an argon2 cost above the
// guest arena naming --max-guest-memory (NoMemory), a key slot that cannot be used.
guest::Status luks2_unlock(guest::BlockDevice& dev, guest::Allocator& alloc, const Luks2Header& h, const uint8_t* pass,
                           size_t pass_len, SectorCipher* cipher, guest::ReasonSink* reasons,
                           SectorCipher* encryptor = nullptr);

// The "Format specific information" of a LUKS2 volume, in qemu's LUKS1 shape (luks_header_report):
// the segment's cipher-alg / cipher-mode / ivgen-alg (ivgen-hash-alg), the digest's hash-alg,
// payload-offset (the segment offset), master-key-iters (the digest's iterations), uuid, and one
// slot entry per key slot id up to the highest present (at least 8): active, iters (PBKDF2
// iterations or argon2 time cost), stripes, key-offset (the area offset).
void luks2_report(const Luks2Header& h, bool with_detached_header, guest::InfoSink& sink);

} // namespace instar::luks

#include <instar/guest/edit_api.h>
#include <instar/guest/read_api.h>
#include <instar/guest/write_api.h>

namespace instar::luks {

// The luks module's entry points (luks_module.cpp): LUKS1's probe/info/open/open_writer/edit, with
// LUKS2 read in front of them (luks2_format.cpp). A LUKS2 volume is refused to the writers.
guest::Status luks_any_probe(guest::BlockDevice& dev, bool* match);
guest::Status luks_any_info(const guest::InfoRequest& req, guest::InfoSink& sink);
guest::Status luks_any_open(const guest::OpenRequest& req, guest::ImageReader** out);
guest::Status luks_any_open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);
guest::Status luks_any_edit(const guest::EditRequest& req, guest::EditHost& host);

} // namespace instar::luks
