// The bochs format's guest half: header, open rules, probe and `info` (qemu's block/bochs.c).
#include "bochs_format.h"

namespace instar::bochs {

using guest::Status;

namespace {

uint32_t le32(const uint8_t* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint64_t le64(const uint8_t* p) { return uint64_t{le32(p)} | uint64_t{le32(p + 4)} << 32; }

// strcmp(field, want): the field's bytes up to want's NUL must equal want, NUL included (qemu's
// strcmp may run past a 32-byte field with no NUL into the next: it then differs from the constant
// strings anyway, since those are shorter than their fields).
bool cstr_is(const uint8_t* field, const char* want) {
    size_t i = 0;
    for (; want[i] != 0; ++i)
        if (field[i] != static_cast<uint8_t>(want[i]))
            return false;
    return field[i] == 0;
}

bool header_matches(const uint8_t* h) {
    const uint32_t v = le32(h + 64);
    return cstr_is(h, "Bochs Virtual HD Image") && cstr_is(h + 32, "Redolog") && cstr_is(h + 48, "Growing") &&
           (v == BOCHS_VERSION_2 || v == BOCHS_VERSION_1);
}

// Reads [0, 512) with zeros past the end of the file, as qemu's block layer does.
Status read_header(guest::BlockDevice& dev, uint8_t* raw) {
    for (size_t i = 0; i < BOCHS_HEADER_SIZE; ++i)
        raw[i] = 0;
    const uint64_t fsize = dev.size();
    const size_t n = fsize < BOCHS_HEADER_SIZE ? static_cast<size_t>(fsize) : BOCHS_HEADER_SIZE;
    return n == 0 ? Status::Ok : dev.read(0, raw, n);
}

// "Extent size %u is ..." into msg.
const char* extent_message(BochsMessage* msg, uint32_t v, const char* tail) {
    static constexpr char head[] = "Extent size ";
    size_t n = 0;
    for (; head[n] != 0; ++n)
        msg->text[n] = head[n];
    char digits[10];
    size_t k = 0;
    do {
        digits[k++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (k > 0)
        msg->text[n++] = digits[--k];
    for (size_t i = 0; tail[i] != 0; ++i)
        msg->text[n++] = tail[i];
    msg->text[n] = 0;
    return msg->text;
}

} // namespace

Status bochs_load(guest::BlockDevice& dev, BochsImage* out, const char** why, BochsMessage* msg) {
    uint8_t raw[BOCHS_HEADER_SIZE];
    if (const Status st = read_header(dev, raw); st != Status::Ok) {
        *why = "Could not read the Bochs header";
        return st;
    }
    if (!header_matches(raw)) {
        *why = "Image not in Bochs format";
        return Status::Corrupt;
    }
    BochsImage& s = *out;
    s.version = le32(raw + 64);
    s.header = le32(raw + 68);
    s.catalog_size = le32(raw + 72);
    s.bitmap = le32(raw + 76);
    s.extent_size = le32(raw + 80);
    s.disk = s.version == BOCHS_VERSION_1 ? le64(raw + 84) : le64(raw + 88);
    s.total_sectors = s.disk / 512;
    if (s.catalog_size > BOCHS_MAX_CATALOG) {
        *why = "Catalog size is too large";
        return Status::TooLarge;
    }
    // qemu's uint32 arithmetic, wrapping included (a bitmap or extent field of 0 gives 0x800000).
    s.data_offset = s.header + s.catalog_size * 4;
    s.bitmap_blocks = 1 + (s.bitmap - 1) / 512;
    s.extent_blocks = 1 + (s.extent_size - 1) / 512;
    if (s.extent_size < BOCHS_MIN_EXTENT) {
        *why = "Extent size must be at least 512";
        return Status::Corrupt;
    }
    if ((s.extent_size & (s.extent_size - 1)) != 0) {
        *why = extent_message(msg, s.extent_size, " is not a power of two");
        return Status::Corrupt;
    }
    if (s.extent_size > BOCHS_MAX_EXTENT) {
        *why = extent_message(msg, s.extent_size, " is too large");
        return Status::Corrupt;
    }
    const uint64_t per_extent = s.extent_size / 512;
    if (s.catalog_size < (s.total_sectors + per_extent - 1) / per_extent) {
        *why = "Catalog size is too small for this disk size";
        return Status::Corrupt;
    }
    return Status::Ok;
}

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    uint8_t raw[BOCHS_HEADER_SIZE];
    // qemu probes with 2 KiB read from the start, zeros past the end; an empty file is raw.
    if (dev.size() == 0 || read_header(dev, raw) != Status::Ok)
        return Status::Ok;
    *match = header_matches(raw);
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr)
        return Status::Invalid;
    BochsImage img;
    BochsMessage msg;
    const char* why = nullptr;
    if (const Status st = bochs_load(*req.image, &img, &why, &msg); st != Status::Ok) {
        size_t n = 0;
        while (why[n] != 0)
            ++n;
        sink.reason(why, n);
        return st;
    }
    sink.format("bochs");
    sink.virtual_size(img.virtual_size());
    return Status::Ok;
}

} // namespace instar::bochs
