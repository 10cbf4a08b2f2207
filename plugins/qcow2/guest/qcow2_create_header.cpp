// Serialises the qcow2 header cluster exactly as qemu's qcow2_update_header does.
#include "qcow2_create_header.h"

#include "qcow2_bytes.h"
#include "qcow2_extensions.h"
#include "qcow2_header.h"

namespace instar::qcow2 {

namespace {

inline constexpr uint8_t QCOW2_FEAT_TYPE_INCOMPATIBLE = 0;
inline constexpr uint8_t QCOW2_FEAT_TYPE_COMPATIBLE = 1;
inline constexpr uint8_t QCOW2_FEAT_TYPE_AUTOCLEAR = 2;

struct FeatureName {
    uint8_t type;
    uint8_t bit;
    const char* name;
};

// qemu's table, in its order (identical in 7.2 and 10.0).
constexpr FeatureName FEATURES[QCOW2_FEATURE_COUNT] = {
    {QCOW2_FEAT_TYPE_INCOMPATIBLE, 0, "dirty bit"},
    {QCOW2_FEAT_TYPE_INCOMPATIBLE, 1, "corrupt bit"},
    {QCOW2_FEAT_TYPE_INCOMPATIBLE, 2, "external data file"},
    {QCOW2_FEAT_TYPE_INCOMPATIBLE, 3, "compression type"},
    {QCOW2_FEAT_TYPE_INCOMPATIBLE, 4, "extended L2 entries"},
    {QCOW2_FEAT_TYPE_COMPATIBLE, 0, "lazy refcounts"},
    {QCOW2_FEAT_TYPE_AUTOCLEAR, 0, "bitmaps"},
    {QCOW2_FEAT_TYPE_AUTOCLEAR, 1, "raw external data"},
};

size_t str_len(const char* s) {
    size_t n = 0;
    while (s[n] != 0)
        ++n;
    return n;
}

// qemu's header_ext_add: the 8-byte framing, the data, zero padding to 8. False without room.
bool add_extension(uint8_t* buf, size_t* pos, size_t end, uint32_t magic, const uint8_t* data, size_t len) {
    const size_t ext_len = sizeof(Qcow2ExtensionDisk) + round_up8(len);
    if (end - *pos < ext_len)
        return false;
    uint8_t* p = buf + *pos;
    store_be32(p, magic);
    store_be32(p + 4, static_cast<uint32_t>(len));
    for (size_t i = 0; i < len; ++i)
        p[8 + i] = data[i];
    *pos += ext_len;
    return true;
}

void fill_fixed_header(const Qcow2HeaderState& h, Qcow2HeaderDisk* d) {
    store_be32(d->magic, QCOW_MAGIC);
    store_be32(d->version, h.version);
    store_be32(d->cluster_bits, h.cluster_bits);
    store_be64(d->size, h.size);
    store_be32(d->crypt_method, h.crypt_method);
    store_be32(d->l1_size, h.l1_size);
    store_be64(d->l1_table_offset, h.l1_table_offset);
    store_be64(d->refcount_table_offset, h.refcount_table_offset);
    store_be32(d->refcount_table_clusters, h.refcount_table_clusters);
    store_be32(d->nb_snapshots, h.nb_snapshots);
    store_be64(d->snapshots_offset, h.snapshots_offset);
    if (h.version < 3)
        return; // qemu writes only the 72-byte v2 header; the rest of the cluster stays zero
    store_be64(d->incompatible_features, h.incompatible_features);
    store_be64(d->compatible_features, h.compatible_features);
    store_be64(d->autoclear_features, h.autoclear_features);
    store_be32(d->refcount_order, h.refcount_order);
    store_be32(d->header_length, static_cast<uint32_t>(sizeof(Qcow2HeaderDisk) + h.unknown_header_fields_len));
    d->compression_type[0] = h.compression_type;
}

} // namespace

bool qcow2_build_header_cluster(const Qcow2HeaderState& h, uint8_t* buf, size_t cluster_size) {
    for (size_t i = 0; i < cluster_size; ++i)
        buf[i] = 0;
    Qcow2HeaderDisk d{};
    fill_fixed_header(h, &d);
    __builtin_memcpy(buf, &d, sizeof d);
    size_t pos = h.version < 3 ? QCOW2_V2_HEADER_LENGTH : sizeof(Qcow2HeaderDisk);
    if (h.unknown_header_fields_len != 0) { // qemu keeps them even after a downgrade to v2
        if (cluster_size - pos < h.unknown_header_fields_len)
            return false;
        for (size_t i = 0; i < h.unknown_header_fields_len; ++i)
            buf[pos + i] = h.unknown_header_fields[i];
        pos += h.unknown_header_fields_len;
    }

    if (h.backing_fmt != nullptr &&
        !add_extension(buf, &pos, cluster_size, QCOW2_EXT_MAGIC_BACKING_FORMAT,
                       reinterpret_cast<const uint8_t*>(h.backing_fmt), str_len(h.backing_fmt)))
        return false;
    if (h.data_file != nullptr &&
        !add_extension(buf, &pos, cluster_size, QCOW2_EXT_MAGIC_DATA_FILE,
                       reinterpret_cast<const uint8_t*>(h.data_file), str_len(h.data_file)))
        return false;
    if (h.crypto_header_offset != 0) {
        uint8_t crypto[sizeof(Qcow2CryptoHeaderExtensionDisk)];
        store_be64(crypto, h.crypto_header_offset);
        store_be64(crypto + 8, h.crypto_header_length);
        if (!add_extension(buf, &pos, cluster_size, QCOW2_EXT_MAGIC_CRYPTO_HEADER, crypto, sizeof crypto))
            return false;
    }
    if (h.version >= 3 && cluster_size > QCOW2_FEATURE_TABLE_MIN_CLUSTER) {
        uint8_t table[QCOW2_FEATURE_COUNT * QCOW2_FEATURE_ENTRY_SIZE] = {};
        for (size_t i = 0; i < QCOW2_FEATURE_COUNT; ++i) {
            uint8_t* e = table + i * QCOW2_FEATURE_ENTRY_SIZE;
            e[0] = FEATURES[i].type;
            e[1] = FEATURES[i].bit;
            for (size_t j = 0; FEATURES[i].name[j] != 0; ++j)
                e[2 + j] = static_cast<uint8_t>(FEATURES[i].name[j]);
        }
        if (!add_extension(buf, &pos, cluster_size, QCOW2_EXT_MAGIC_FEATURE_TABLE, table, sizeof table))
            return false;
    }
    if (h.nb_bitmaps != 0) {
        uint8_t bitmaps[sizeof(Qcow2BitmapsExtensionDisk)] = {};
        store_be32(bitmaps, h.nb_bitmaps);
        store_be64(bitmaps + 8, h.bitmap_directory_size);
        store_be64(bitmaps + 16, h.bitmap_directory_offset);
        if (!add_extension(buf, &pos, cluster_size, QCOW2_EXT_MAGIC_BITMAPS, bitmaps, sizeof bitmaps))
            return false;
    }
    for (size_t i = 0; i < h.unknown_extension_count; ++i)
        if (!add_extension(buf, &pos, cluster_size, h.unknown_extensions[i].magic, h.unknown_extensions[i].data,
                           h.unknown_extensions[i].len))
            return false;
    if (!add_extension(buf, &pos, cluster_size, QCOW2_EXT_MAGIC_END, nullptr, 0))
        return false;
    if (h.backing_file != nullptr) {
        const size_t len = str_len(h.backing_file);
        if (cluster_size - pos < len)
            return false;
        for (size_t i = 0; i < len; ++i)
            buf[pos + i] = static_cast<uint8_t>(h.backing_file[i]);
        store_be64(buf + __builtin_offsetof(Qcow2HeaderDisk, backing_file_offset), pos);
        store_be32(buf + __builtin_offsetof(Qcow2HeaderDisk, backing_file_size), static_cast<uint32_t>(len));
    }
    return true;
}

} // namespace instar::qcow2
