// qcow2_unlock (qcow2_unlock.h): the data cipher of an encrypted image.
#include "qcow2_unlock.h"

#include "qcow2_bytes.h"
#include "qcow2_crypto_window.h"
#include "qcow2_extensions.h"
#include "qcow2_read_reason.h"
#include "qcow2_reader.h"

#include "luks_format.h"

#include <instar/guest/arena_new.h>

namespace instar::qcow2 {

using guest::Status;

Status qcow2_unlock(guest::BlockDevice& dev, const Qcow2Header& h, guest::Allocator& alloc, const uint8_t* secret,
                    size_t secret_len, guest::ReasonSink* reasons, uint32_t qemu_version, luks::SectorCipher** out,
                    luks::SectorCipher** decrypt, bool* physical) {
    auto* cipher = guest::arena_new<luks::SectorCipher>(alloc);
    if (cipher == nullptr)
        return Status::NoMemory;
    luks::SectorCipher* dcipher = nullptr;
    if (decrypt != nullptr) {
        dcipher = guest::arena_new<luks::SectorCipher>(alloc);
        if (dcipher == nullptr) {
            luks::delete_wiped(alloc, cipher);
            return Status::NoMemory;
        }
    }
    uint8_t key[luks::LUKS_MAX_KEY_BYTES] = {};
    size_t key_len = 16;
    luks::LuksHeader lh;
    Status st = Status::Ok;
    if (h.crypt_method == QCOW_CRYPT_LUKS) {
        Qcow2Extensions ext;
        const uint64_t ext_end = h.extensions_end() > sizeof(Qcow2HeaderDisk) ? h.extensions_end()
                                                                                : sizeof(Qcow2HeaderDisk);
        ArenaBuffer cluster(alloc, static_cast<size_t>(ext_end));
        if (!cluster.ok())
            st = Status::NoMemory;
        if (st == Status::Ok) {
            __builtin_memset(cluster.data(), 0, cluster.size());
            const uint64_t have = dev.size() < ext_end ? dev.size() : ext_end;
            st = dev.read(0, cluster.data(), static_cast<size_t>(have));
        }
        if (st == Status::Ok &&
            qcow2_extensions_parse(h, cluster.data(), h.header_length, h.extensions_end(), &ext) != Status::Ok)
        {
            ReasonText r;
            r.add("qcow2 header extensions are corrupt").send(reasons);
            st = Status::Unsupported;
        }
        if (st == Status::Ok && !ext.has_crypto_header) {
            ReasonText r;
            r.add("Could not read encryption header").send(reasons);
            st = Status::Corrupt;
        }
        if (st == Status::Ok)
            st = unlock_in_extension(dev, ext, alloc, secret, secret_len, &lh, cipher, reasons,
                                     key, qemu_version);
        key_len = lh.key_bytes;
        *physical = true;
    } else {
        for (size_t i = 0; i < 16 && i < secret_len && secret[i] != 0; ++i)
            key[i] = secret[i];
        lh.cipher_name = "aes";
        lh.cipher_mode = "cbc";
        lh.ivgen_alg = "plain64";
        *physical = false;
    }
    if (st == Status::Ok)
        st = cipher->init(lh, key, key_len, true);
    if (st == Status::Ok && dcipher != nullptr)
        st = dcipher->init(lh, key, key_len);
    __builtin_memset(key, 0, sizeof key);
    if (st != Status::Ok) {
        luks::delete_wiped(alloc, cipher);
        luks::delete_wiped(alloc, dcipher);
        return st;
    }
    *out = cipher;
    if (decrypt != nullptr)
        *decrypt = dcipher;
    return Status::Ok;
}


} // namespace instar::qcow2
