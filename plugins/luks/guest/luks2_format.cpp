// The luks module's entry points over LUKS1 (luks_format.cpp, luks_create.cpp, luks_edit.cpp, shared
// with qcow2 and qcow) and LUKS2 (this plugin only): a header of version 2 is read here, as
// cryptsetup lays it out, its payload written (convert -n) and resized (a dynamic segment);
// creating or amending one is refused by name. docs/formats/luks.md, "LUKS2".
#include "luks2_format.h"

#include "luks_create.h"
#include "luks_edit.h"
#include "luks_format.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/edit_device.h>
#include <instar/guest/edit_resize_file.h>
#include <instar/guest/format_util.h>

namespace instar::luks {

using guest::BlockDevice;
using guest::Status;

namespace {

constexpr uint32_t QEMU_DETACHED_HEADER_VERSION = 90000;
constexpr char LUKS2_NO_AMEND[] = "instar cannot amend LUKS2 volumes (it would rewrite their metadata)";
constexpr char LUKS2_FIXED_SEGMENT[] = "instar cannot resize a LUKS2 volume whose segment has a fixed size (it would "
                                       "rewrite the metadata)";

// The primary header's magic and version 2 at the start of `dev`.
bool starts_luks2(BlockDevice& dev) {
    uint8_t head[8] = {};
    return guest::read_padded(dev, 0, head, sizeof head) == Status::Ok && head[0] == 'L' && luks2_magic(head, sizeof head);
}

// Loads the LUKS2 header of a file that starts like one into an arena copy (7 KiB: too big for the
// guest's stack). Ok with *out set; Ok with *out null when the file does not look like LUKS2 at all
// (no header copy of a LUKS2 size): the caller then lets the LUKS1 code answer, in qemu's words for
// a header of version 2 ("LUKS version 2 is not supported"). Otherwise the refusal, its reason in
// `why` (never empty). The one load-or-fall-back rule of the reader, the writer and the edits.
Status load(BlockDevice& dev, guest::Allocator& alloc, Luks2Header** out, LuksWhy* why) {
    *out = guest::arena_new<Luks2Header>(alloc);
    if (*out == nullptr)
        return Status::NoMemory;
    bool not_luks2 = false;
    const Status st = luks2_load(dev, alloc, *out, why, &not_luks2);
    if (st == Status::Ok)
        return st;
    guest::arena_delete(alloc, *out);
    *out = nullptr;
    if (not_luks2)
        return Status::Ok;
    if (why->text[0] == 0) {
        constexpr char IO[] = "I/O error reading the LUKS2 header";
        __builtin_memcpy(why->text, IO, sizeof IO);
    }
    return st;
}

// The LUKS2 header of an open's image, for the reader and the writer: Ok with *h set, or Ok with *h
// null where the LUKS1 code opens the image (no key, a detached header, no LUKS2 magic, or a header
// of version 2 that does not look like LUKS2 at all: qemu's LUKS1 words then); otherwise the
// refusal, said to the request's reasons.
Status open_header(const guest::OpenRequest& req, Luks2Header** h) {
    *h = nullptr;
    if (req.image == nullptr || req.allocator == nullptr || req.file_count != 0 || req.secret == nullptr ||
        !starts_luks2(*req.image))
        return Status::Ok;
    LuksWhy why;
    const Status st = load(*req.image, *req.allocator, h, &why);
    if (st != Status::Ok)
        guest::say_reason(req.reasons, why.text);
    return st;
}

// resize of a LUKS2 volume: where its segment's size is dynamic (the file's whole sectors after its
// offset, cryptsetup's default) the file is truncated as LUKS1's is and nothing in the metadata
// changes; the new size must be whole sectors of the segment. A fixed size is refused.
Status luks2_resize(const guest::EditRequest& req, guest::EditHost& host, const Luks2Header& h) {
    guest::ResizeArgs a{};
    if (const Status st = guest::resize_file_args(req, host, &a); st != Status::Ok)
        return st;
    if (!h.seg_dynamic)
        return guest::edit_refuse(host, LUKS2_FIXED_SEGMENT, Status::Unsupported);
    if (a.new_size % h.sector_size != 0) {
        char text[guest::CREATE_MAX_REASON] = "LUKS2 segment 0 has ";
        guest::append_decimal(text, sizeof text, h.sector_size);
        guest::append_text(text, sizeof text, "-byte sectors: the new size must be a multiple of ");
        guest::append_decimal(text, sizeof text, h.sector_size);
        return guest::edit_refuse(host, text, Status::Invalid);
    }
    return resize_payload(req, host, a, h.seg_offset);
}

} // namespace

Status luks_any_probe(BlockDevice& dev, bool* match) {
    if (const Status st = probe(dev, match); st != Status::Ok || *match)
        return st;
    *match = dev.size() >= 8 && starts_luks2(dev);
    return Status::Ok;
}

Status luks_any_info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    // The key-secret check comes first for LUKS2 too (luks_format.cpp's info); a detached header
    // (header=) is LUKS1 only.
    if (req.image == nullptr || req.allocator == nullptr || req.file_count != 0 || (req.flags & guest::INFO_REQUEST_NO_KEY) ||
        !starts_luks2(*req.image))
        return info(req, sink);
    Luks2Header* h = nullptr;
    LuksWhy why;
    if (const Status st = load(*req.image, *req.allocator, &h, &why); st != Status::Ok) {
        sink.reason(why.text, __builtin_strlen(why.text));
        return st;
    }
    if (h == nullptr)
        return info(req, sink); // qemu's LUKS1 words for a header of version 2
    // The LUKS1 report's sequence (luks_format.cpp's info).
    sink.format("luks");
    sink.dirty(false);
    sink.virtual_size(luks2_payload_size(*h, req.image->size()));
    sink.dirty(false);
    sink.encrypted(true);
    sink.dirty(false);
    sink.specific_type("luks");
    luks2_report(*h, req.qemu_version >= QEMU_DETACHED_HEADER_VERSION, sink);
    guest::arena_delete(*req.allocator, h);
    return Status::Ok;
}

Status luks_any_open(const guest::OpenRequest& req, guest::ImageReader** out) {
    Luks2Header* h = nullptr;
    if (out == nullptr)
        return open(req, out);
    if (const Status loaded = open_header(req, &h); loaded != Status::Ok || h == nullptr)
        return loaded != Status::Ok ? loaded : open(req, out);
    guest::Allocator& alloc = *req.allocator;
    auto* cipher = guest::arena_new<SectorCipher>(alloc);
    Status st = cipher != nullptr ? Status::Ok : Status::NoMemory;
    if (st == Status::Ok)
        st = luks2_unlock(*req.image, alloc, *h, req.secret, req.secret_len, cipher, req.reasons);
    if (st == Status::Ok && guest::refuse_snapshot_load(req, "luks")) // after the key, as for LUKS1
        st = Status::Unsupported;
    if (st == Status::Ok)
        st = luks_make_reader(*req.image, alloc, h->seg_offset, luks2_payload_size(*h, req.image->size()),
                              h->sector_size, h->iv_tweak, *cipher, out);
    delete_wiped(alloc, cipher);
    guest::arena_delete(alloc, h);
    return st;
}

// convert -n into a LUKS2 volume: its segment's payload, written as dm-crypt would (the header
// and key slots untouched). A damaged LUKS2 header is refused with the reader's words.
Status luks_any_open_writer(const guest::OpenRequest& req, guest::ImageWriter** out) {
    Luks2Header* h = nullptr;
    if (out == nullptr)
        return open_writer(req, out);
    if (const Status loaded = open_header(req, &h); loaded != Status::Ok || h == nullptr)
        return loaded != Status::Ok ? loaded : open_writer(req, out);
    guest::Allocator& alloc = *req.allocator;
    auto* dec = guest::arena_new<SectorCipher>(alloc);
    auto* enc = guest::arena_new<SectorCipher>(alloc);
    Status st = dec != nullptr && enc != nullptr ? Status::Ok : Status::NoMemory;
    if (st == Status::Ok)
        st = luks2_unlock(*req.image, alloc, *h, req.secret, req.secret_len, dec, req.reasons, enc);
    if (st == Status::Ok)
        st = luks_payload_writer(*req.image, alloc, h->seg_offset, luks2_payload_size(*h, req.image->size()),
                                 h->sector_size, h->iv_tweak, *enc, *dec, out);
    delete_wiped(alloc, dec);
    delete_wiped(alloc, enc);
    guest::arena_delete(alloc, h);
    return st;
}

Status luks_any_edit(const guest::EditRequest& req, guest::EditHost& host) {
    if (req.image == nullptr || req.allocator == nullptr || req.image_length < LUKS2_MIN_HDR_SIZE)
        return edit(req, host);
    guest::SizedDevice file(*req.image, req.image_length); // the file's length, not the output's limit
    if (!starts_luks2(file))
        return edit(req, host);
    Luks2Header* h = nullptr;
    LuksWhy why;
    if (const Status st = load(file, *req.allocator, &h, &why); st != Status::Ok)
        return guest::edit_refuse(host, why.text, st);
    if (h == nullptr)
        return edit(req, host); // qemu's LUKS1 words for a header of version 2
    Status st;
    if (req.command == guest::EditCommand::Resize)
        st = luks2_resize(req, host, *h);
    else if (req.command == guest::EditCommand::Amend)
        st = guest::edit_refuse(host, LUKS2_NO_AMEND, Status::Unsupported);
    else
        st = edit(req, host);
    guest::arena_delete(*req.allocator, h);
    return st;
}

} // namespace instar::luks
