// LUKS1 images (qemu: crypto/block-luks.c, block/crypto.c): probe, info and the reader.
#include "luks_format.h"

#include "luks_crypto.h"
#include "luks_header.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_util.h>

namespace instar::luks {

using guest::Allocation;
using guest::BlockDevice;
using guest::Extent;
using guest::ImageReader;
using guest::Status;

namespace {

constexpr uint8_t MAGIC[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
constexpr uint32_t QEMU_DETACHED_HEADER_VERSION = 90000;
// The reader decrypts at most this much per step (a bounce buffer from the arena).
constexpr size_t READ_CHUNK = 1u << 20;

// The payload reader of LUKS1 and LUKS2: `unit` bytes decrypted with one IV (LUKS1: 512; LUKS2: the
// segment's sector size), IVs counting 512-byte sectors from `iv_base` (LUKS2's iv_tweak).
class LuksReader final : public ImageReader {
public:
    LuksReader(BlockDevice& dev, guest::Allocator& alloc, uint64_t payload_offset, uint64_t size, uint8_t* bounce,
               uint32_t unit = LUKS_SECTOR_SIZE, uint64_t iv_base = 0)
        : dev_(dev), alloc_(alloc), payload_offset_(payload_offset), size_(size), bounce_(bounce), unit_(unit),
          iv_base_(iv_base) {}
    SectorCipher cipher;

    uint64_t virtual_size() const override { return size_; }
    Status status(uint64_t, uint64_t length, Extent* out) override {
        *out = Extent{length, Allocation::Data, guest::EXTENT_ENCRYPTED, 0, 0, 0};
        return Status::Ok;
    }
    Status read(uint64_t offset, void* buf, size_t len) override {
        auto* dst = static_cast<uint8_t*>(buf);
        while (len > 0) {
            const uint64_t sector = offset / unit_;
            const size_t skip = static_cast<size_t>(offset % unit_);
            // Whole units covering [offset, offset + n), clipped to the file's end.
            size_t want = len + skip;
            if (want > READ_CHUNK) want = READ_CHUNK;
            uint64_t span = (want + unit_ - 1) / unit_ * unit_;
            const uint64_t start = payload_offset_ + sector * unit_;
            if (span > dev_.size() - start) span = dev_.size() - start;
            if (const Status st = dev_.read(start, bounce_, static_cast<size_t>(span)); st != Status::Ok)
                return st;
            cipher.decrypt(iv_base_ + sector * (unit_ / LUKS_SECTOR_SIZE), bounce_, static_cast<size_t>(span));
            size_t n = want - skip;
            __builtin_memcpy(dst, bounce_ + skip, n);
            dst += n;
            offset += n;
            len -= n;
        }
        return Status::Ok;
    }
    void close() override {
        alloc_.deallocate(bounce_, READ_CHUNK);
        guest::Allocator& a = alloc_;
        guest::arena_delete(a, this);
    }

private:
    BlockDevice& dev_;
    guest::Allocator& alloc_;
    uint64_t payload_offset_;
    uint64_t size_;
    uint8_t* bounce_;
    uint32_t unit_;
    uint64_t iv_base_;
};

} // namespace

Status luks_make_reader(BlockDevice& dev, guest::Allocator& alloc, uint64_t payload_offset, uint64_t size,
                        uint32_t unit, uint64_t iv_base, const SectorCipher& cipher, ImageReader** out) {
    auto* bounce = static_cast<uint8_t*>(alloc.allocate(READ_CHUNK, 16));
    if (bounce == nullptr)
        return Status::NoMemory;
    LuksReader* r = guest::arena_new<LuksReader>(alloc, dev, alloc, payload_offset, size, bounce, unit, iv_base);
    if (r == nullptr) {
        alloc.deallocate(bounce, READ_CHUNK);
        return Status::NoMemory;
    }
    r->cipher = cipher;
    *out = r;
    return Status::Ok;
}

// One key slot (qcrypto_block_luks_load_key): PBKDF2 over the slot's salt, decrypt the slot's split
// key with the payload cipher, merge the stripes, and check PBKDF2 of the candidate master key
// against the header's digest. `split` holds key_bytes * LUKS_STRIPES bytes of scratch.
Status luks_load_key(BlockDevice& dev, uint64_t base, guest::Allocator& alloc, const LuksHeader& h, uint32_t slot,
                     const uint8_t* pass, size_t pass_len, uint8_t* split, uint8_t* master_key) {
    const size_t split_len = size_t{h.key_bytes} * LUKS_STRIPES;
    const LuksKeySlot& s = h.slots[slot];
    if (!s.active)
        return Status::Invalid;
    if (s.iterations > LUKS_MAX_PBKDF2_ITERATIONS || h.master_key_iterations > LUKS_MAX_PBKDF2_ITERATIONS)
        return Status::Corrupt;
    if (s.key_offset > dev.size() || base > dev.size() - s.key_offset)
        return Status::Corrupt;
    uint8_t slot_key[LUKS_MAX_KEY_BYTES];
    if (!luks_pbkdf2(h.hash_alg, pass, pass_len, h.slot_salt[slot], 32, s.iterations, slot_key, h.key_bytes))
        return Status::Unsupported;
    Status result = dev.read(base + s.key_offset, split, split_len);
    auto* c = result == Status::Ok ? guest::arena_new<SectorCipher>(alloc) : nullptr;
    if (result == Status::Ok && c == nullptr)
        result = Status::NoMemory;
    if (result == Status::Ok)
        result = c->init(h, slot_key, h.key_bytes);
    __builtin_memset(slot_key, 0, sizeof slot_key);
    if (c != nullptr && result == Status::Ok)
        c->decrypt(0, split, split_len);
    delete_wiped(alloc, c);
    if (result != Status::Ok)
        return result;
    uint8_t candidate[LUKS_MAX_KEY_BYTES];
    if (!af_merge(h.hash_alg, h.key_bytes, LUKS_STRIPES, split, candidate))
        return Status::Unsupported;
    uint8_t digest[LUKS_DIGEST_BYTES];
    luks_pbkdf2(h.hash_alg, candidate, h.key_bytes, h.mk_salt, 32, h.master_key_iterations, digest, sizeof digest);
    uint8_t diff = 0;
    for (size_t k = 0; k < sizeof digest; ++k)
        diff |= static_cast<uint8_t>(digest[k] ^ h.mk_digest[k]);
    if (diff == 0)
        __builtin_memcpy(master_key, candidate, h.key_bytes);
    __builtin_memset(candidate, 0, sizeof candidate);
    return diff == 0 ? Status::Ok : Status::Invalid;
}

namespace {

// Tries each active key slot with the passphrase (qcrypto_block_luks_find_key).
Status find_key(BlockDevice& dev, uint64_t base, guest::Allocator& alloc, const LuksHeader& h, const uint8_t* pass,
                size_t pass_len, uint8_t* master_key) {
    const size_t split_len = size_t{h.key_bytes} * LUKS_STRIPES;
    auto* split = static_cast<uint8_t*>(alloc.allocate(split_len, 16));
    if (split == nullptr)
        return Status::NoMemory;
    Status result = h.master_key_iterations > LUKS_MAX_PBKDF2_ITERATIONS ? Status::Corrupt : Status::Invalid;
    for (uint32_t i = 0; i < LUKS_NUM_KEY_SLOTS && result == Status::Invalid; ++i)
        if (h.slots[i].active)
            result = luks_load_key(dev, base, alloc, h, i, pass, pass_len, split, master_key);
    __builtin_memset(split, 0, split_len);
    alloc.deallocate(split, split_len);
    return result;
}

// Every cipher, mode and hash the header parser admits has a nettle implementation; what is left is
// qemu's own refusal of xts over cast5's 8-byte blocks (crypto/cipher-nettle.c.inc's message).
void say_unsupported_mode(guest::ReasonSink* reasons, const LuksHeader& h) {
    char text[64] = "Unsupported cipher mode ";
    size_t at = 0;
    while (text[at] != 0)
        ++at;
    for (size_t i = 0; h.cipher_mode != nullptr && h.cipher_mode[i] != 0 && at + 1 < sizeof text; ++i)
        text[at++] = h.cipher_mode[i];
    text[at] = 0;
    guest::say_reason(reasons, text);
}

// The device holding the LUKS header: the image itself, or (qemu 9.0+'s `header=`, a detached
// header) the one file the host attached after it, the image then being the payload alone.
BlockDevice* header_device(BlockDevice* image, BlockDevice* const* files, uint32_t file_count) {
    if (file_count == 0)
        return image;
    return file_count == 1 && files != nullptr ? files[0] : nullptr;
}

} // namespace

Status load_header(BlockDevice& dev, LuksHeader* h, uint64_t at, bool detached, LuksWhy* why) {
    // qemu reads the header through its block layer: bytes past the end of the file read as zeros.
    uint8_t buf[sizeof(LuksHeaderDisk)];
    if (const Status st = guest::read_padded(dev, at, buf, sizeof buf); st != Status::Ok)
        return st;
    return luks_header_parse(buf, sizeof buf, h, detached, why);
}

Status luks_unlock(BlockDevice& dev, uint64_t header_offset, guest::Allocator& alloc, const uint8_t* pass,
                   size_t pass_len, LuksHeader* header, SectorCipher* cipher, guest::ReasonSink* reasons,
                   uint8_t* master_key_out, uint32_t qemu_version, bool detached) {
    LuksHeader& h = *header;
    LuksWhy why;
    if (const Status st = load_header(dev, &h, header_offset, detached, &why); st != Status::Ok) {
        guest::say_reason(reasons, why.text[0] != 0 ? why.text : "I/O error reading the LUKS header");
        return st;
    }
    if (const char* refusal = luks_header_profile_refusal(h, qemu_version)) {
        guest::say_reason(reasons, refusal);
        return Status::Unsupported;
    }
    uint8_t master_key[LUKS_MAX_KEY_BYTES];
    const Status found = find_key(dev, header_offset, alloc, h, pass, pass_len, master_key);
    if (found == Status::Invalid) {
        guest::say_reason(reasons, "Invalid password, cannot unlock any keyslot");
        return Status::Invalid;
    }
    if (found == Status::Unsupported) {
        say_unsupported_mode(reasons, h);
        return found;
    }
    if (found == Status::Corrupt) {
        guest::say_reason(reasons, "LUKS header asks for too many PBKDF2 iterations or has key material past the end");
        return found;
    }
    if (found != Status::Ok)
        return found;
    const Status st = cipher->init(h, master_key, h.key_bytes);
    if (master_key_out != nullptr)
        __builtin_memcpy(master_key_out, master_key, h.key_bytes);
    __builtin_memset(master_key, 0, sizeof master_key);
    if (st != Status::Ok)
        say_unsupported_mode(reasons, h);
    return st;
}

// qemu's qcrypto_block_luks_has_format: the magic and version 1 (a LUKS2 volume is not luks to it;
// luks2_format.cpp's probe adds it).
Status probe(BlockDevice& dev, bool* match) {
    *match = false;
    uint8_t buf[sizeof MAGIC + 2];
    if (dev.size() < sizeof buf)
        return Status::Ok;
    if (const Status st = dev.read(0, buf, sizeof buf); st != Status::Ok)
        return st;
    *match = __builtin_memcmp(buf, MAGIC, sizeof MAGIC) == 0 && buf[sizeof MAGIC] == 0 && buf[sizeof MAGIC + 1] == 1;
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    BlockDevice* const hdr = req.image ? header_device(req.image, req.files, req.file_count) : nullptr;
    if (hdr == nullptr)
        return Status::Invalid;
    // qemu's luks open asks for its key-secret before it reads the header, unless it opens the image
    // without I/O (info, create's look at a backing file).
    if (req.flags & guest::INFO_REQUEST_NO_KEY) {
        static constexpr char NO_KEY[] = "Parameter 'key-secret' is required for cipher";
        sink.reason(NO_KEY, sizeof NO_KEY - 1);
        return Status::Unsupported;
    }
    LuksHeader h;
    LuksWhy why;
    if (const Status st = load_header(*hdr, &h, 0, hdr != req.image, &why); st != Status::Ok) {
        if (why.text[0] != 0)
            sink.reason(why.text, __builtin_strlen(why.text));
        return st;
    }
    // qemu 7.2's info (opened without I/O) parses the header and refuses sm3; its other commands ask
    // for the key-secret first. So the refusal goes with an Ok report: the host's info prints it, a
    // command reading the data leaves it to open (luks_unlock), after the secret check.
    if (const char* refusal = luks_header_profile_refusal(h, req.qemu_version))
        sink.reason(refusal, __builtin_strlen(refusal));
    const uint64_t size = req.image->size();
    sink.format("luks");
    sink.dirty(false); // qemu's block_crypto_get_info_luks: JSON shows "dirty-flag": false
    // block/crypto.c: the payload after the header is the disk.
    sink.virtual_size(size > h.payload_offset ? size - h.payload_offset : 0);
    sink.dirty(false); // qemu's luks has bdrv_get_info: its JSON shows dirty-flag
    sink.encrypted(true);
    sink.dirty(false); // qemu's block_crypto_get_info_luks: dirty-flag false
    sink.specific_type("luks");
    luks_header_report(h, req.qemu_version >= QEMU_DETACHED_HEADER_VERSION, sink, h.payload_offset == 0);
    return Status::Ok;
}

Status open(const guest::OpenRequest& req, ImageReader** out) {
    BlockDevice* const hdr = req.image ? header_device(req.image, req.files, req.file_count) : nullptr;
    if (hdr == nullptr || req.allocator == nullptr || out == nullptr)
        return Status::Invalid;
    // qemu asks for the key-secret first; luks_unlock then reads and checks the header.
    if (req.secret == nullptr) {
        guest::say_reason(req.reasons, "Parameter 'key-secret' is required for cipher");
        return Status::Unsupported;
    }
    LuksHeader h;
    SectorCipher cipher;
    if (const Status st = luks_unlock(*hdr, 0, *req.allocator, req.secret, req.secret_len, &h, &cipher,
                                      req.reasons, nullptr, req.qemu_version, hdr != req.image);
        st != Status::Ok)
        return st;
    if (guest::refuse_snapshot_load(req, "luks")) // after the key, as qemu's convert -l
        return Status::Unsupported;
    const uint64_t size = req.image->size();
    auto* bounce = static_cast<uint8_t*>(req.allocator->allocate(READ_CHUNK, 16));
    if (bounce == nullptr)
        return Status::NoMemory;
    LuksReader* r = guest::arena_new<LuksReader>(*req.allocator, *req.image, *req.allocator, h.payload_offset,
                                                 size > h.payload_offset ? size - h.payload_offset : 0, bounce);
    if (r == nullptr) {
        req.allocator->deallocate(bounce, READ_CHUNK);
        return Status::NoMemory;
    }
    r->cipher = cipher;
    __builtin_memset(static_cast<void*>(&cipher), 0, sizeof cipher);
    *out = r;
    return Status::Ok;
}

} // namespace instar::luks
