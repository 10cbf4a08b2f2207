// Builds LUKS2 volumes in memory for the unit tests and the fuzz seeds: cryptsetup's layout (16 KiB
// header copies, one key slot area, one crypt segment), with a chosen key derivation, sector size,
// iv_tweak and JSON, so hostile variants can be made and re-checksummed. Uses the luks plugin's own
// encrypting primitives (af_split, SectorCipher, luks_pbkdf2) and the host's libargon2; the python
// differential checks the reader against cryptsetup-made volumes.
#pragma once

#include "luks_crypto.h"

#include <argon2.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace luks2_test {

inline constexpr std::uint64_t HDR = 16384;
inline constexpr std::uint64_t AREA_OFFSET = 2 * HDR;
inline constexpr std::uint64_t AREA_SIZE = 258048; // 64 x 4000 bytes, rounded up to 4 KiB
inline constexpr std::uint64_t SEG_OFFSET = AREA_OFFSET + AREA_SIZE;

inline std::string b64(const std::uint8_t* p, std::size_t n) {
    static const char* A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string s;
    for (std::size_t i = 0; i < n; i += 3) {
        std::uint32_t v = std::uint32_t{p[i]} << 16;
        if (i + 1 < n) v |= std::uint32_t{p[i + 1]} << 8;
        if (i + 2 < n) v |= p[i + 2];
        s += A[(v >> 18) & 63];
        s += A[(v >> 12) & 63];
        s += i + 1 < n ? A[(v >> 6) & 63] : '=';
        s += i + 2 < n ? A[v & 63] : '=';
    }
    return s;
}

struct Options {
    std::string kdf = "pbkdf2"; // or argon2i, argon2id
    std::uint32_t sector = 512;
    std::uint64_t iv_tweak = 0;
    std::uint32_t pbkdf2_iterations = 1000;
    std::uint32_t argon2_time = 2, argon2_memory = 1024, argon2_cpus = 2;
};

inline void put_be(std::uint8_t* p, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * (bytes - 1 - i)));
}

// Writes both header copies of `img` around `json` (checksums included); `seqid2` for the secondary.
inline void write_headers(std::vector<std::uint8_t>& img, const std::string& json, std::uint64_t seqid = 1,
                          std::uint64_t seqid2 = 1) {
    for (int copy = 0; copy < 2; ++copy) {
        std::uint8_t* h = img.data() + copy * HDR;
        std::memset(h, 0, HDR);
        std::memcpy(h, copy == 0 ? "LUKS\xba\xbe" : "SKUL\xba\xbe", 6);
        put_be(h + 6, 2, 2);
        put_be(h + 8, HDR, 8);
        put_be(h + 16, copy == 0 ? seqid : seqid2, 8);
        std::memcpy(h + 72, "sha256", 6);
        std::memcpy(h + 168, "5d8e1c7a-1111-4222-8333-944455556666", 36);
        put_be(h + 256, copy * HDR, 8);
        std::memcpy(h + 4096, json.data(), json.size() < HDR - 4096 ? json.size() : HDR - 4096);
        std::uint8_t sum[64];
        instar::luks::luks_hash("sha256", h, HDR, sum);
        std::memcpy(h + 448, sum, 32);
    }
}

// A volume holding `plain` (whole sectors) that `pass` opens; `json` receives its metadata.
inline std::vector<std::uint8_t> make(const std::string& pass, const std::vector<std::uint8_t>& plain,
                                      const Options& o = {}, std::string* json_out = nullptr) {
    std::uint8_t vkey[64], salt[32], dsalt[32], digest[32], akey[64];
    for (int i = 0; i < 64; ++i) vkey[i] = static_cast<std::uint8_t>(i * 7 + 3);
    for (int i = 0; i < 32; ++i) salt[i] = static_cast<std::uint8_t>(0xa0 + i), dsalt[i] = static_cast<std::uint8_t>(i);
    const auto* pw = reinterpret_cast<const std::uint8_t*>(pass.data());
    std::string kdf;
    if (o.kdf == "pbkdf2") {
        instar::luks::luks_pbkdf2("sha256", pw, pass.size(), salt, 32, o.pbkdf2_iterations, akey, 64);
        kdf = "{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":" + std::to_string(o.pbkdf2_iterations) +
              ",\"salt\":\"" + b64(salt, 32) + "\"}";
    } else {
        argon2_context c{};
        c.out = akey;
        c.outlen = 64;
        c.pwd = const_cast<std::uint8_t*>(pw);
        c.pwdlen = static_cast<std::uint32_t>(pass.size());
        c.salt = salt;
        c.saltlen = 32;
        c.t_cost = o.argon2_time;
        c.m_cost = o.argon2_memory;
        c.lanes = o.argon2_cpus;
        c.threads = 1;
        c.version = ARGON2_VERSION_13;
        argon2_ctx(&c, o.kdf == "argon2i" ? Argon2_i : Argon2_id);
        kdf = "{\"type\":\"" + o.kdf + "\",\"time\":" + std::to_string(o.argon2_time) +
              ",\"memory\":" + std::to_string(o.argon2_memory) + ",\"cpus\":" + std::to_string(o.argon2_cpus) +
              ",\"salt\":\"" + b64(salt, 32) + "\"}";
    }
    instar::luks::luks_pbkdf2("sha256", vkey, 64, dsalt, 32, 1000, digest, 32);
    std::vector<std::uint8_t> img(SEG_OFFSET + plain.size());
    // Key material: AF-split, encrypted with the slot key from sector 0 of the area.
    std::vector<std::uint8_t> rnd(64 * 4000), split(64 * 4000);
    for (std::size_t i = 0; i < rnd.size(); ++i) rnd[i] = static_cast<std::uint8_t>(i * 31 + 7);
    instar::luks::af_split("sha256", 64, 4000, vkey, rnd.data(), split.data());
    instar::luks::LuksHeader xts;
    xts.cipher_name = "aes";
    xts.cipher_mode = "xts";
    xts.ivgen_alg = "plain64";
    instar::luks::SectorCipher area;
    area.init(xts, akey, 64, true);
    area.encrypt(0, split.data(), split.size());
    std::memcpy(img.data() + AREA_OFFSET, split.data(), split.size());
    instar::luks::SectorCipher seg;
    seg.init(xts, vkey, 64, true);
    seg.set_sector_size(o.sector);
    std::memcpy(img.data() + SEG_OFFSET, plain.data(), plain.size());
    seg.encrypt(o.iv_tweak, img.data() + SEG_OFFSET, plain.size());
    const std::string json =
        "{\"keyslots\":{\"0\":{\"type\":\"luks2\",\"key_size\":64,\"af\":{\"type\":\"luks1\",\"stripes\":4000,"
        "\"hash\":\"sha256\"},\"area\":{\"type\":\"raw\",\"offset\":\"" + std::to_string(AREA_OFFSET) +
        "\",\"size\":\"" + std::to_string(AREA_SIZE) + "\",\"encryption\":\"aes-xts-plain64\",\"key_size\":64},"
        "\"kdf\":" + kdf + "}},\"tokens\":{},\"segments\":{\"0\":{\"type\":\"crypt\",\"offset\":\"" +
        std::to_string(SEG_OFFSET) + "\",\"size\":\"dynamic\",\"iv_tweak\":\"" + std::to_string(o.iv_tweak) +
        "\",\"encryption\":\"aes-xts-plain64\",\"sector_size\":" + std::to_string(o.sector) +
        "}},\"digests\":{\"0\":{\"type\":\"pbkdf2\",\"keyslots\":[\"0\"],\"segments\":[\"0\"],\"hash\":\"sha256\","
        "\"iterations\":1000,\"salt\":\"" + b64(dsalt, 32) + "\",\"digest\":\"" + b64(digest, 32) +
        "\"}},\"config\":{\"json_size\":\"12288\",\"keyslots_size\":\"" + std::to_string(AREA_SIZE) + "\"}}";
    write_headers(img, json);
    if (json_out) *json_out = json;
    return img;
}

} // namespace luks2_test
