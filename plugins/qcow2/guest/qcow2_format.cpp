// qcow2 probe and info: header, extensions, backing file, snapshots, bitmaps, encryption.
#include "qcow2_format.h"

#include "qcow2_bitmap.h"
#include "qcow2_bytes.h"
#include "qcow2_crypto_window.h"
#include "qcow2_extensions.h"
#include "qcow2_header.h"
#include "qcow2_limits.h"
#include "luks_header.h"
#include "qcow2_reader.h"
#include "qcow2_snapshot.h"

namespace instar::qcow2 {

using guest::InfoSink;
// The LUKS1 header inside encrypted images: the luks plugin's parser (plugins/luks/guest).
using luks::LuksHeader;
using luks::LuksHeaderDisk;
using luks::luks_header_parse;
using luks::luks_header_report;

Status probe(BlockDevice& dev, bool* match) {
    *match = false;
    if (dev.size() < 8)
        return Status::Ok;
    uint8_t buf[8];
    if (dev.read(0, buf, sizeof buf) != Status::Ok)
        return Status::Ok;
    *match = load_be32(buf) == QCOW_MAGIC && load_be32(buf + 4) >= 2;
    return Status::Ok;
}

namespace {

// Everything parsed before anything is reported.
struct Parsed {
    Qcow2Header header;
    Qcow2Extensions ext;
    const uint8_t* backing = nullptr;
    size_t backing_len = 0;
    bool has_luks = false;
    LuksHeader luks;
};

Status read_luks(BlockDevice& dev, const Qcow2Extensions& ext, LuksHeader* out, InfoSink& sink) {
    // qemu reads the LUKS header through the extension's window: it must hold the whole header.
    if (ext.crypto_header_length < sizeof(LuksHeaderDisk)) {
        sink.reason(OUTSIDE_CRYPTO_HEADER, sizeof OUTSIDE_CRYPTO_HEADER - 1);
        return Status::Corrupt;
    }
    uint64_t end = 0;
    if (add_overflow(ext.crypto_header_offset, sizeof(LuksHeaderDisk), &end) || end > dev.size())
        return Status::Corrupt;
    uint8_t raw[sizeof(LuksHeaderDisk)];
    if (dev.read(ext.crypto_header_offset, raw, sizeof raw) != Status::Ok)
        return Status::Corrupt;
    luks::LuksWhy why;
    const Status st = luks_header_parse(raw, sizeof raw, out, false, &why);
    if (st != Status::Ok && why.text[0] != 0)
        sink.reason(why.text, __builtin_strlen(why.text));
    return st;
}

// Everything of ImageInfoSpecificQCow2 up to (not including) "bitmaps" and "compression-type".
// QCryptoBlockInfoLUKS gained "detached-header" in qemu 9.0.
constexpr uint32_t QEMU_DETACHED_HEADER_VERSION = 90000;

void report_specific(const Parsed& p, uint32_t qemu_version, InfoSink& sink) {
    const Qcow2Header& h = p.header;
    // ImageInfoSpecificQCow2 field order; v2 has only compat, refcount-bits, encrypt, compression-type.
    sink.specific_type("qcow2");
    if (h.version == 2) {
        sink.put_string("compat", "0.10", 4);
    } else {
        sink.put_string("compat", "1.1", 3);
        if (p.ext.has_data_file)
            sink.put_string("data-file", p.ext.data_file, p.ext.data_file_len);
        if (h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE)
            sink.put_bool("data-file-raw", (h.autoclear_features & QCOW2_AUTOCLEAR_DATA_FILE_RAW) != 0);
        sink.put_bool("extended-l2", (h.incompatible_features & QCOW2_INCOMPAT_EXTL2) != 0);
        sink.put_bool("lazy-refcounts", (h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS) != 0);
        sink.put_bool("corrupt", (h.incompatible_features & QCOW2_INCOMPAT_CORRUPT) != 0);
    }
    sink.put_int("refcount-bits", int64_t{1} << h.refcount_order);
    if (h.crypt_method == QCOW_CRYPT_AES) {
        sink.begin_object("encrypt");
        sink.put_string("format", "aes", 3);
        sink.end_object();
    } else if (h.crypt_method == QCOW_CRYPT_LUKS) {
        sink.begin_object("encrypt");
        sink.put_string("format", "luks", 4);
        luks_header_report(p.luks, qemu_version >= QEMU_DETACHED_HEADER_VERSION, sink);
        sink.end_object();
    }
}

} // namespace

Status info(const guest::InfoRequest& req, InfoSink& sink) {
    if (!req.image || !req.allocator)
        return Status::Invalid;
    BlockDevice& dev = *req.image;
    Parsed p;

    Qcow2HeaderDisk disk;
    Status st = read_zero_padded(dev, 0, reinterpret_cast<uint8_t*>(&disk), sizeof disk);
    if (st != Status::Ok)
        return st;
    HeaderProblem why;
    st = qcow2_header_parse(disk, &p.header, &why);
    if (st != Status::Ok) {
        if (why.len != 0)
            sink.reason(why.text, why.len);
        return st;
    }
    const Qcow2Header& h = p.header;

    // Cluster 0 up to the end of the extensions and the backing file name (<= 2 MiB).
    uint64_t need = h.extensions_end();
    if (h.backing_file_offset) {
        const uint64_t room = h.cluster_size() - h.backing_file_offset;
        const uint64_t max = room < QCOW2_MAX_BACKING_FILE_NAME ? room : QCOW2_MAX_BACKING_FILE_NAME;
        if (h.backing_file_size > max)
            return Status::Corrupt; // qemu: "Backing file name too long"
        need = h.backing_file_offset + h.backing_file_size;
    }
    if (need < sizeof disk)
        need = sizeof disk;
    ArenaBuffer cluster(*req.allocator, static_cast<size_t>(need));
    if (!cluster.ok())
        return Status::NoMemory;
    st = read_zero_padded(dev, 0, cluster.data(), cluster.size());
    if (st != Status::Ok)
        return st;
    st = qcow2_extensions_parse(h, cluster.data(), h.header_length, h.extensions_end(), &p.ext);
    if (st != Status::Ok)
        return st;
    if (h.backing_file_offset) {
        p.backing = cluster.data() + h.backing_file_offset;
        p.backing_len = bounded_strlen(p.backing, h.backing_file_size);
    }
    if ((h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) && !p.ext.has_data_file)
        return Status::Corrupt; // qemu: "'data-file' is required for this image"
    if (h.crypt_method == QCOW_CRYPT_LUKS) {
        if (!p.ext.has_crypto_header)
            return Status::Corrupt;
        // qemu opens the LUKS header where it meets the crypto header extension, and an open for
        // I/O asks for the key before it reads the header.
        if (req.flags & guest::INFO_REQUEST_NO_KEY) {
            static constexpr char NO_KEY[] = "Parameter 'encrypt.key-secret' is required for cipher";
            sink.reason(NO_KEY, sizeof NO_KEY - 1);
            return Status::Unsupported;
        }
        st = read_luks(dev, p.ext, &p.luks, sink);
        if (st != Status::Ok)
            return st;
        // qemu 7.2's info (opened without I/O) parses the LUKS header and refuses sm3; its other
        // commands ask for encrypt.key-secret first. So the refusal goes with an Ok report, as the
        // luks plugin's: the host's info prints it, a command reading the data leaves it to the open
        // (unlock_in_extension), after the secret check.
        if (const char* refusal = luks::luks_header_profile_refusal(p.luks, req.qemu_version))
            sink.reason(refusal, __builtin_strlen(refusal));
        p.has_luks = true;
    }

    // qemu reports whole 512-byte sectors of the virtual size.
    const uint64_t virtual_size = h.size & ~uint64_t{511};
    ArenaBuffer window(*req.allocator, QCOW2_READ_WINDOW);
    if (!window.ok())
        return Status::NoMemory;
    MetadataReader reader(dev, window.data(), window.size());
    st = qcow2_bitmaps_check(h, p.ext, virtual_size, reader);
    if (st != Status::Ok)
        return st;

    sink.format("qcow2");
    sink.virtual_size(virtual_size);
    sink.cluster_size(h.cluster_size());
    sink.encrypted(h.crypt_method != QCOW_CRYPT_NONE);
    sink.dirty((h.incompatible_features & QCOW2_INCOMPAT_DIRTY) != 0);
    if (p.backing_len > 0) {
        // SAFETY: bytes of the header cluster viewed as chars; same size and alignment.
        sink.file_reference(guest::FileRole::Backing, reinterpret_cast<const char*>(p.backing), p.backing_len);
        if (p.ext.backing_format_len > 0)
            sink.backing_format(p.ext.backing_format, p.ext.backing_format_len);
    }
    if ((h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE) && p.ext.data_file_len > 0)
        sink.file_reference(guest::FileRole::DataFile, p.ext.data_file, p.ext.data_file_len);

    st = qcow2_snapshots_report(h, reader, *req.allocator, sink);
    if (st != Status::Ok)
        return st;

    report_specific(p, req.qemu_version, sink);
    if (p.ext.nb_bitmaps > 0) {
        sink.begin_list("bitmaps");
        st = qcow2_bitmaps_report(h, p.ext, virtual_size, reader, sink);
        if (st != Status::Ok)
            return st;
        sink.end_list();
    }
    const char* compression = h.compression_type == QCOW2_COMPRESSION_TYPE_ZSTD ? "zstd" : "zlib";
    sink.put_string("compression-type", compression, 4);
    return Status::Ok;
}

} // namespace instar::qcow2
