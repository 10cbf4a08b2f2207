// Parsing of qcow2 header extensions, with qemu's checks for each known type.
#include "qcow2_extensions.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"

namespace instar::qcow2 {

namespace {

Status parse_bitmaps(const Qcow2Header& h, const uint8_t* data, uint32_t len, Qcow2Extensions* out) {
    if (len != sizeof(Qcow2BitmapsExtensionDisk))
        return Status::Corrupt;
    // Without the autoclear bit a program unaware of bitmaps wrote the image: qemu ignores them.
    if (!(h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS))
        return Status::Ok;
    Qcow2BitmapsExtensionDisk d;
    __builtin_memcpy(&d, data, sizeof d);
    if (load_be32(d.reserved32) != 0)
        return Status::Corrupt;
    const uint32_t nb = load_be32(d.nb_bitmaps);
    const uint64_t dir_size = load_be64(d.bitmap_directory_size);
    const uint64_t dir_offset = load_be64(d.bitmap_directory_offset);
    if (nb > QCOW2_MAX_BITMAPS || dir_size > QCOW2_MAX_BITMAP_DIRECTORY_SIZE)
        return Status::TooLarge;
    if (nb == 0 || (dir_offset & (h.cluster_size() - 1)) != 0)
        return Status::Corrupt;
    out->nb_bitmaps = nb;
    out->bitmap_directory_size = dir_size;
    out->bitmap_directory_offset = dir_offset;
    return Status::Ok;
}

Status parse_crypto(const Qcow2Header& h, const uint8_t* data, uint32_t len, Qcow2Extensions* out) {
    if (h.crypt_method != QCOW_CRYPT_LUKS || len != sizeof(Qcow2CryptoHeaderExtensionDisk))
        return Status::Corrupt;
    Qcow2CryptoHeaderExtensionDisk d;
    __builtin_memcpy(&d, data, sizeof d);
    out->crypto_header_offset = load_be64(d.offset);
    out->crypto_header_length = load_be64(d.length);
    if ((out->crypto_header_offset & (h.cluster_size() - 1)) != 0)
        return Status::Corrupt;
    out->has_crypto_header = true;
    return Status::Ok;
}

} // namespace

Status qcow2_extensions_parse(const Qcow2Header& h, const uint8_t* cluster, uint64_t start, uint64_t end,
                              Qcow2Extensions* out) {
    Qcow2Extensions ext;
    uint64_t offset = start;
    uint32_t count = 0;
    while (offset < end) {
        if (++count > QCOW2_MAX_HEADER_EXTENSIONS)
            return Status::TooLarge;
        if (end - offset < sizeof(Qcow2ExtensionDisk))
            return Status::Corrupt; // qemu: "Header extension too large"
        Qcow2ExtensionDisk e;
        __builtin_memcpy(&e, cluster + offset, sizeof e);
        offset += sizeof e;
        const uint32_t magic = load_be32(e.magic);
        const uint32_t len = load_be32(e.len);
        if (len > end - offset)
            return Status::Corrupt;
        const uint8_t* data = cluster + offset;
        Status st = Status::Ok;
        switch (magic) {
        case QCOW2_EXT_MAGIC_END:
            *out = ext;
            return Status::Ok;
        case QCOW2_EXT_MAGIC_BACKING_FORMAT:
            if (len > QCOW2_MAX_BACKING_FORMAT)
                return Status::Corrupt;
            ext.backing_format = reinterpret_cast<const char*>(data);
            ext.backing_format_len = bounded_strlen(data, len);
            break;
        case QCOW2_EXT_MAGIC_DATA_FILE:
            if (len > QCOW2_MAX_DATA_FILE_NAME)
                return Status::TooLarge;
            ext.has_data_file = true;
            ext.data_file = reinterpret_cast<const char*>(data);
            ext.data_file_len = bounded_strlen(data, len);
            break;
        case QCOW2_EXT_MAGIC_BITMAPS:
            st = parse_bitmaps(h, data, len, &ext);
            break;
        case QCOW2_EXT_MAGIC_CRYPTO_HEADER:
            st = parse_crypto(h, data, len, &ext);
            break;
        default: // the feature name table only matters for error messages; unknown ones are ignored
            break;
        }
        if (st != Status::Ok)
            return st;
        offset = round_up8(offset + len); // cannot overflow: offset + len <= end <= 2 MiB
    }
    *out = ext;
    return Status::Ok;
}

Status qcow2_header_cluster_read(guest::BlockDevice& dev, uint64_t file_len, const Qcow2Header& h, uint8_t* cluster,
                                 Qcow2Extensions* ext) {
    const uint64_t cs = h.cluster_size();
    __builtin_memset(cluster, 0, static_cast<size_t>(cs));
    const uint64_t have = file_len < cs ? file_len : cs;
    if (const Status st = dev.read(0, cluster, static_cast<size_t>(have)); st != Status::Ok)
        return st;
    *ext = Qcow2Extensions{};
    if (h.version < 3)
        return Status::Ok;
    return qcow2_extensions_parse(h, cluster, h.header_length, h.extensions_end(), ext);
}

} // namespace instar::qcow2
