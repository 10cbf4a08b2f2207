// The cloop format's guest half: header, open rules, probe and `info` (qemu's block/cloop.c).
#include "cloop_format.h"

namespace instar::cloop {

using guest::Status;

namespace {

constexpr char PREAMBLE[] = "#!/bin/sh\n"
                            "#V2.0 Format\n"
                            "modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

uint32_t load_be32(const uint8_t* p) {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

} // namespace

const char* cloop_message(CloopMessage* msg, const char* head, uint64_t v, const char* tail) {
    size_t n = 0;
    for (size_t i = 0; head[i] != 0; ++i)
        msg->text[n++] = head[i];
    char digits[20];
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

Status read_zero_past_eof(guest::BlockDevice& dev, uint64_t pos, uint8_t* dst, uint64_t len) {
    if (pos > CLOOP_MAX_FILE_OFFSET || len > CLOOP_MAX_FILE_OFFSET - pos)
        return Status::IoError;
    const uint64_t fsize = dev.size();
    const uint64_t in = pos < fsize ? (fsize - pos < len ? fsize - pos : len) : 0;
    if (in > 0)
        if (const Status st = dev.read(pos, dst, static_cast<size_t>(in)); st != Status::Ok)
            return st;
    if (in < len)
        __builtin_memset(dst + in, 0, static_cast<size_t>(len - in));
    return Status::Ok;
}

Status cloop_load(guest::BlockDevice& dev, CloopImage* out, const char** why, CloopMessage* msg) {
    uint8_t raw[8];
    if (const Status st = read_zero_past_eof(dev, CLOOP_BLOCK_SIZE_AT, raw, 8); st != Status::Ok) {
        *why = "Could not read the cloop header";
        return st;
    }
    CloopImage& s = *out;
    s.block_size = load_be32(raw);
    s.n_blocks = load_be32(raw + 4);
    s.max_compressed = 1;
    if (s.block_size % 512 != 0) {
        *why = cloop_message(msg, "block_size ", s.block_size, " must be a multiple of 512");
        return Status::Corrupt;
    }
    if (s.block_size == 0) {
        *why = "block_size cannot be zero";
        return Status::Corrupt;
    }
    if (s.block_size > CLOOP_MAX_BLOCK_SIZE) {
        *why = cloop_message(msg, "block_size ", s.block_size, " must be 64 MB or less");
        return Status::TooLarge;
    }
    if (s.n_blocks > CLOOP_MAX_N_BLOCKS) {
        // qemu: "n_blocks %u must be %zu or less"
        cloop_message(msg, "n_blocks ", s.n_blocks, " must be ");
        CloopMessage rest;
        cloop_message(&rest, "", CLOOP_MAX_N_BLOCKS, " or less");
        size_t n = 0;
        while (msg->text[n] != 0)
            ++n;
        for (size_t i = 0; rest.text[i] != 0; ++i)
            msg->text[n++] = rest.text[i];
        msg->text[n] = 0;
        *why = msg->text;
        return Status::TooLarge;
    }
    const uint64_t entries = uint64_t{s.n_blocks} + 1;
    if (entries * 8 > CLOOP_MAX_OFFSETS_BYTES) {
        *why = "image requires too many offsets, try increasing block size";
        return Status::TooLarge;
    }
    // Every offset, a page at a time: monotonic, and no block larger than CLOOP_MAX_COMPRESSED.
    uint8_t page[CLOOP_OFFSET_PAGE * 8];
    uint64_t prev = 0;
    for (uint64_t first = 0; first < entries; first += CLOOP_OFFSET_PAGE) {
        const uint64_t count = entries - first < CLOOP_OFFSET_PAGE ? entries - first : CLOOP_OFFSET_PAGE;
        if (const Status st = read_zero_past_eof(dev, CLOOP_OFFSETS_AT + 8 * first, page, 8 * count);
            st != Status::Ok) {
            *why = "Could not read the cloop offsets";
            return st;
        }
        for (uint64_t j = 0; j < count; ++j) {
            const uint64_t i = first + j;
            const uint64_t v = load_be64(page + 8 * j);
            if (i > 0) {
                if (v < prev) {
                    *why = cloop_message(msg, "offsets not monotonically increasing at index ", i,
                                   ", image file is corrupt");
                    return Status::Corrupt;
                }
                const uint64_t size = v - prev;
                if (size > CLOOP_MAX_COMPRESSED) {
                    *why = cloop_message(msg, "invalid compressed block size at index ", i, ", image file is corrupt");
                    return Status::Corrupt;
                }
                if (size > s.max_compressed)
                    s.max_compressed = size;
            }
            prev = v;
        }
    }
    return Status::Ok;
}

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    constexpr size_t n = sizeof PREAMBLE - 1;
    uint8_t raw[n];
    // qemu probes a 2 KiB buffer with zeros past the end of the file: the whole preamble must be there.
    if (dev.size() < n || dev.read(0, raw, n) != Status::Ok)
        return Status::Ok;
    for (size_t i = 0; i < n; ++i)
        if (raw[i] != static_cast<uint8_t>(PREAMBLE[i]))
            return Status::Ok;
    *match = true;
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr)
        return Status::Invalid;
    CloopImage img;
    CloopMessage msg;
    const char* why = nullptr;
    if (const Status st = cloop_load(*req.image, &img, &why, &msg); st != Status::Ok) {
        size_t n = 0;
        while (why[n] != 0)
            ++n;
        sink.reason(why, n);
        return st;
    }
    sink.format("cloop");
    sink.virtual_size(img.virtual_size());
    return Status::Ok;
}

} // namespace instar::cloop
