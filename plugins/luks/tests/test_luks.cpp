// LUKS unit tests: nettle's PBKDF2 through luks_pbkdf2 (RFC 6070 / RFC 7914 vectors), the header
// parser on qemu-made headers and hostile variants, open's refusals, and the write side: the
// anti-forensic split against the merge, images created then unlocked and read back, and resize's
// arithmetic and refusals.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "hosted_create.h"
#include "hosted_support.h"
#include "luks_create.h"
#include "luks_crypto.h"
#include "luks_edit.h"
#include "luks_format.h"
#include "luks_header.h"
#include "luks2_builder.h"
#include "luks2_format.h"
#include "luks2_header.h"
#include "luks2_json.h"

#include <instar/guest/edit_resize.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

using instar::guest::Status;

namespace {

std::string hex(const std::uint8_t* p, std::size_t n) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        s += d[p[i] >> 4];
        s += d[p[i] & 15];
    }
    return s;
}

std::vector<std::uint8_t> corpus(const char* name) {
    std::ifstream in(std::string(LUKS_CORPUS_DIR) + "/" + name, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("pbkdf2 known answers") {
    const auto* pw = reinterpret_cast<const std::uint8_t*>("password");
    const auto* salt = reinterpret_cast<const std::uint8_t*>("salt");
    std::uint8_t out[32];
    REQUIRE(instar::luks::luks_pbkdf2("sha1", pw, 8, salt, 4, 2, out, 20));
    CHECK(hex(out, 20) == "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
    REQUIRE(instar::luks::luks_pbkdf2("sha256", pw, 8, salt, 4, 1, out, 32));
    CHECK(hex(out, 32) == "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b");
    // PBKDF2-HMAC-MD5 and -RIPEMD160 (qemu's nettle PBKDF2 has both; python3 hashlib.pbkdf2_hmac).
    REQUIRE(instar::luks::luks_pbkdf2("md5", pw, 8, salt, 4, 1, out, 16));
    CHECK(hex(out, 16) == "f31afb6d931392daa5e3130f47f9a9b6");
    REQUIRE(instar::luks::luks_pbkdf2("ripemd160", pw, 8, salt, 4, 2, out, 20));
    CHECK(hex(out, 20) == "768dcc27b7bfdef794a1ff9d935090fcf598555e");
    CHECK_FALSE(instar::luks::luks_pbkdf2("sha3-256", pw, 8, salt, 4, 1, out, 16));
    // PBKDF2-HMAC-SHA224, "password"/"salt", 1 iteration (python3 hashlib.pbkdf2_hmac).
    REQUIRE(instar::luks::luks_pbkdf2("sha224", pw, 8, salt, 4, 1, out, 28));
    CHECK(hex(out, 28) == "3c198cbdb9464b7857966bd05b7bc92bc1cc4e6e63155d4e490557fd");
}

TEST_CASE("pbkdf2 ripemd160: qemu's test-crypto-pbkdf vector") {
    const std::string key(129, 'X');
    const char* salt = "pass phrase exceeds block size";
    std::uint8_t out[32];
    REQUIRE(instar::luks::luks_pbkdf2("ripemd160", reinterpret_cast<const std::uint8_t*>(key.data()), key.size(),
                                      reinterpret_cast<const std::uint8_t*>(salt), 30, 1200, out, 32));
    CHECK(hex(out, 32) == "d6cbd8a7db0ca22a235e47afdbdaa8efe4010d6fb533c8bdcebf91148b5c4841");
}

TEST_CASE("hash known answers") {
    const auto* abc = reinterpret_cast<const std::uint8_t*>("abc");
    const std::pair<const char*, const char*> vectors[] = {
        {"md5", "900150983cd24fb0d6963f7d28e17f72"},
        {"sha1", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"sha224", "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"},
        {"sha256", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"ripemd160", "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"},
        // GB/T 32905-2016 example 1
        {"sm3", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"},
    };
    for (const auto& [name, digest] : vectors) {
        std::uint8_t out[64];
        REQUIRE(instar::luks::luks_hash(name, abc, 3, out));
        CHECK(hex(out, instar::luks::luks_digest_len(name)) == digest);
    }
    CHECK(instar::luks::luks_digest_len("sha384") == 48);
    CHECK(instar::luks::luks_digest_len("sha512") == 64);
    CHECK(instar::luks::luks_digest_len("sm3") == 32);
    CHECK(instar::luks::luks_digest_len("sha3-256") == 0);
}

namespace {

std::vector<std::uint8_t> unhex(const char* s) {
    std::vector<std::uint8_t> v;
    for (; s[0] && s[1]; s += 2) v.push_back(static_cast<std::uint8_t>(std::stoi(std::string(s, 2), nullptr, 16)));
    return v;
}

} // namespace

// One block through SectorCipher in ecb mode, both ways: qemu's tests/unit/test-crypto-cipher.c
// vectors (libgcrypt's serpent, the Twofish paper's, RFC 2144's cast5).
TEST_CASE("block cipher known answers") {
    struct Kat {
        const char* name;
        const char* key;
        const char* plain;
        const char* cipher;
    };
    const Kat kats[] = {
        {"cast5", "0123456712345678234567893456789a", "0123456789abcdef", "238b4fe5847e44b2"},
        {"serpent", "00000000000000000000000000000000", "d29d576fcea3a3a7ed9099f29273d78e",
         "b2288b968ae8b08648d1ce9606fd992d"},
        {"serpent", "000000000000000000000000000000000000000000000000", "d29d576fceaba3a7ed9899f2927bd78e",
         "130e353e1037c22405e8faefb2c3c3e9"},
        {"serpent", "0000000000000000000000000000000000000000000000000000000000000000",
         "00000000010000000200000003000000", "2061a42782bd52ec691ec383b03ba77c"},
        {"twofish", "d491db16e7b1c39e86cb086b789f5419", "019f9809de1711858faac3a3ba20fbc3",
         "6363977de839486297e661c6c9d668eb"},
        {"twofish", "88b2b2706b105e36b446bb6d731a1e88efa71f788965bd44", "39da69d6ba4997d585b6dc073ca341b2",
         "182b02d81497ea45f9daacdc29193a65"},
        {"twofish", "d43bb7556ea32e46f2a282b7d45b4e0d57ff739d4dc92c1bd7fc01700cc8216f",
         "90afe91bb288544f2c32dc239b2635e6", "6cb4561c40bf0a9705931cb6d408e7fa"},
    };
    for (const Kat& k : kats) {
        CAPTURE(k.name);
        CAPTURE(k.key);
        const auto key = unhex(k.key);
        const auto plain = unhex(k.plain);
        instar::luks::LuksHeader h;
        h.cipher_name = k.name;
        h.cipher_mode = "ecb";
        h.ivgen_alg = "plain64";
        auto enc = std::make_unique<instar::luks::SectorCipher>();
        REQUIRE(enc->init(h, key.data(), key.size(), true) == Status::Ok);
        auto buf = plain;
        enc->encrypt(0, buf.data(), buf.size());
        CHECK(hex(buf.data(), buf.size()) == k.cipher);
        auto dec = std::make_unique<instar::luks::SectorCipher>();
        REQUIRE(dec->init(h, key.data(), key.size()) == Status::Ok);
        dec->decrypt(7, buf.data(), buf.size());
        CHECK(buf == plain);
    }
    // qemu has no xts over 8-byte blocks, nor a cipher at a key size outside its map.
    instar::luks::LuksHeader h;
    h.cipher_name = "cast5";
    h.cipher_mode = "xts";
    h.ivgen_alg = "plain64";
    std::uint8_t key[32] = {};
    auto c = std::make_unique<instar::luks::SectorCipher>();
    CHECK(c->init(h, key, 32) == Status::Unsupported);
    h.cipher_name = "serpent";
    h.cipher_mode = "cbc";
    CHECK(c->init(h, key, 20) == Status::Unsupported);
    h.cipher_name = "sm4";
    CHECK(c->init(h, key, 16) == Status::Unsupported);
}

TEST_CASE("qemu-made headers parse") {
    const std::pair<const char*, const char*> headers[] = {{"header-xts.bin", "aes-256"},
                                                           {"header-cbc-essiv.bin", "aes-128"},
                                                           {"header-cast5-ctr-md5.bin", "cast5-128"},
                                                           {"header-twofish-essiv-ripemd160.bin", "twofish-256"}};
    for (const auto& [name, alg] : headers) {
        CAPTURE(name);
        auto bytes = corpus(name);
        REQUIRE(bytes.size() == 4096);
        instar::luks::LuksHeader h;
        CHECK(instar::luks::luks_header_parse(bytes.data(), bytes.size(), &h) == Status::Ok);
        CHECK(std::strcmp(h.cipher_alg, alg) == 0);
        CHECK(h.slots[0].active);
    }
}

TEST_CASE("sm3 headers are refused under profiles before qemu 9.0") {
    auto bytes = corpus("header-xts.bin");
    instar::luks::LuksHeader h;
    REQUIRE(instar::luks::luks_header_parse(bytes.data(), bytes.size(), &h) == Status::Ok);
    CHECK(instar::luks::luks_header_profile_refusal(h, 70200) == nullptr);
    std::memcpy(bytes.data() + 72, "sm3\0\0\0", 6); // hash_spec
    REQUIRE(instar::luks::luks_header_parse(bytes.data(), bytes.size(), &h) == Status::Ok);
    CHECK(std::strcmp(instar::luks::luks_header_profile_refusal(h, 70200), "Hash algorithm 'sm3' not supported") == 0);
    CHECK(instar::luks::luks_header_profile_refusal(h, 90000) == nullptr);
    CHECK(instar::luks::luks_header_profile_refusal(h, 100000) == nullptr);
    h.hash_alg = "sha256";
    h.ivgen_hash_alg = "sm3";
    CHECK(instar::luks::luks_header_profile_refusal(h, 70200) != nullptr);
}

TEST_CASE("hostile headers are refused") {
    auto bytes = corpus("header-xts.bin");
    instar::luks::LuksHeader h;
    auto bad = bytes;
    bad[4] = 0; // magic
    CHECK(instar::luks::luks_header_parse(bad.data(), bad.size(), &h) != Status::Ok);
    bad = bytes;
    std::memset(bad.data() + 8, 'a', 32); // cipher name not NUL-terminated
    CHECK(instar::luks::luks_header_parse(bad.data(), bad.size(), &h) != Status::Ok);
    bad = bytes;
    bad[108 + 3] = 200; // master key length 200: no such cipher
    CHECK(instar::luks::luks_header_parse(bad.data(), bad.size(), &h) != Status::Ok);
    CHECK(instar::luks::luks_header_parse(bytes.data(), 100, &h) != Status::Ok); // truncated
}

TEST_CASE("open without a secret, and with a wrong one") {
    auto bytes = corpus("header-xts.bin");
    bytes.resize(6 << 20); // key material (zeros here) and a payload
    instar::hosted::MemoryDevice dev(bytes);
    instar::hosted::BudgetAllocator alloc(16 << 20);
    struct Sink final : instar::guest::ReasonSink {
        std::string text;
        void reason(const char* t, std::size_t n) override { text.assign(t, n); }
    } sink;
    instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, &sink, nullptr, 100000};
    instar::guest::ImageReader* r = nullptr;
    CHECK(instar::luks::open(req, &r) == Status::Unsupported);
    CHECK(sink.text == "Parameter 'key-secret' is required for cipher");
    static const std::uint8_t PASS[] = {'n', 'o'};
    req.secret = PASS;
    req.secret_len = sizeof PASS;
    // The image's iteration counts are qemu's (iter-time=10): a second or so.
    CHECK(instar::luks::open(req, &r) == Status::Invalid);
    CHECK(sink.text == "Invalid password, cannot unlock any keyslot");
}

TEST_CASE("af_split and af_merge are inverses") {
    for (const char* hash : {"sha1", "sha256", "sha512"}) {
        std::uint8_t key[64], back[64];
        for (int i = 0; i < 64; ++i) key[i] = static_cast<std::uint8_t>(i * 7 + 1);
        std::vector<std::uint8_t> random(64 * 4000), split(64 * 4000);
        for (std::size_t i = 0; i < random.size(); ++i) random[i] = static_cast<std::uint8_t>(i * 31 + 5);
        REQUIRE(instar::luks::af_split(hash, 64, 4000, key, random.data(), split.data()));
        REQUIRE(instar::luks::af_merge(hash, 64, 4000, split.data(), back));
        CHECK(std::memcmp(key, back, 64) == 0);
    }
}

namespace {

struct Sink final : instar::guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override { text.assign(t, n); }
};

// create_writer with `opts`, the disk filled with a pattern, then the image unlocked and read back.
// `image_out`, when given, receives the image's bytes.
void round_trip(std::vector<std::pair<std::string, std::string>> opts, std::uint64_t size,
                std::uint32_t qemu_version = 70200, std::vector<std::uint8_t>* image_out = nullptr) {
    using namespace instar;
    hosted::MemoryTarget target;
    hosted::BudgetAllocator alloc(64 << 20);
    static const std::uint8_t PASS[] = {'s', 'e', 'c', 'r', 'e', 't'};
    opts.push_back({"key-secret", "sec0"});
    opts.push_back({"iter-time", "1"});
    std::vector<guest::CreateOption> o;
    for (const auto& [k, v] : opts) o.push_back({k.c_str(), v.c_str()});
    std::uint8_t random[32] = {9, 8, 7};
    guest::CreateRequest req{};
    req.size = size;
    req.options = o.data();
    req.option_count = static_cast<std::uint32_t>(o.size());
    req.file_name = "t.luks";
    req.random = random;
    req.qemu_version = qemu_version;
    req.allocator = &alloc;
    req.secret = PASS;
    req.secret_len = sizeof PASS;
    guest::ImageWriter* w = nullptr;
    REQUIRE(luks::create_writer(req, target, &w) == guest::Status::Ok);
    CHECK_FALSE(w->zero_init());
    std::vector<std::uint8_t> data(size);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 13 + i / 4096);
    REQUIRE(w->write(0, data.data(), 65536) == guest::Status::Ok);
    REQUIRE(w->write_zeroes(65536, 65536, true) == guest::Status::Ok);
    std::fill(data.begin() + 65536, data.begin() + 131072, 0);
    REQUIRE(w->write(131072, data.data() + 131072, size - 131072) == guest::Status::Ok);
    REQUIRE(w->finish() == guest::Status::Ok);
    w->close();
    auto bytes = target.image_output().bytes();
    if (image_out != nullptr) *image_out = bytes;
    hosted::MemoryDevice dev(bytes);
    Sink sink;
    guest::OpenRequest oreq{&dev, nullptr, 0, &alloc, nullptr, &sink, nullptr, qemu_version};
    oreq.secret = PASS;
    oreq.secret_len = sizeof PASS;
    guest::ImageReader* r = nullptr;
    REQUIRE(luks::luks_any_open(oreq, &r) == guest::Status::Ok);
    CHECK(r->virtual_size() == size);
    std::vector<std::uint8_t> back(size);
    REQUIRE(r->read(0, back.data(), back.size()) == guest::Status::Ok);
    CHECK(back == data);
    r->close();
    static const std::uint8_t WRONG[] = {'n', 'o'};
    oreq.secret = WRONG;
    oreq.secret_len = sizeof WRONG;
    CHECK(luks::luks_any_open(oreq, &r) == guest::Status::Invalid);
    CHECK(sink.text == "Invalid password, cannot unlock any keyslot");
    // qemu before 9.0 has no sm3: a header naming it (PBKDF2 or IV hash) does not open as 7.2.
    const bool sm3 = std::any_of(opts.begin(), opts.end(), [](const auto& kv) { return kv.second == "sm3"; });
    if (sm3) {
        oreq.secret = PASS;
        oreq.secret_len = sizeof PASS;
        oreq.qemu_version = 70200;
        CHECK(luks::open(oreq, &r) == guest::Status::Unsupported);
        CHECK(sink.text == "Hash algorithm 'sm3' not supported");
    }
}

} // namespace

TEST_CASE("created images unlock and read back") {
    round_trip({}, 1 << 20);
    round_trip({{"cipher-alg", "aes-128"}, {"cipher-mode", "cbc"}, {"ivgen-alg", "essiv"}}, 512 * 1000);
    round_trip({{"cipher-alg", "aes-256"}, {"cipher-mode", "cbc"}, {"hash-alg", "sha1"}}, 300 * 1024);
    round_trip({{"cipher-alg", "aes-128"}, {"hash-alg", "sha512"}, {"ivgen-alg", "plain"}}, 256 * 1024);
    round_trip({{"cipher-mode", "ecb"}, {"hash-alg", "sha384"}}, 200 * 1024);
    round_trip({{"hash-alg", "sha224"}}, 128 * 1024);
    // The other ciphers, modes and hashes: each at least once.
    round_trip({{"cipher-alg", "serpent-256"}, {"hash-alg", "ripemd160"}}, 128 * 1024);
    round_trip({{"cipher-alg", "twofish-128"}, {"cipher-mode", "cbc"}, {"ivgen-alg", "essiv"}}, 128 * 1024);
    round_trip({{"cipher-alg", "cast5-128"}, {"cipher-mode", "ctr"}, {"hash-alg", "md5"}}, 128 * 1024 + 512);
    round_trip({{"cipher-alg", "cast5-128"}, {"cipher-mode", "cbc"}, {"ivgen-alg", "essiv"},
                {"ivgen-hash-alg", "md5"}},
               160 * 1024);
    round_trip({{"cipher-alg", "serpent-192"}, {"cipher-mode", "xts"}, {"ivgen-alg", "plain"}}, 128 * 1024);
    round_trip({{"cipher-alg", "aes-192"}, {"cipher-mode", "xts"}}, 128 * 1024);
    round_trip({{"cipher-alg", "twofish-256"}, {"cipher-mode", "ecb"}}, 128 * 1024);
    round_trip({{"hash-alg", "sm3"}, {"cipher-mode", "cbc"}, {"ivgen-alg", "essiv"}, {"ivgen-hash-alg", "sm3"}},
               128 * 1024, 100002); // qemu 10.0
    round_trip({{"cipher-mode", "cbc"}, {"ivgen-alg", "essiv"}, {"ivgen-hash-alg", "sm3"}}, 128 * 1024, 100002);
    round_trip({{"cipher-alg", "aes-256"}, {"cipher-mode", "ctr"}, {"ivgen-alg", "essiv"},
                {"ivgen-hash-alg", "md5"}},
               128 * 1024);
}

TEST_CASE("luks-version=2 creates LUKS2 volumes as cryptsetup lays them out, which unlock and read back") {
    using namespace instar;
    struct Case {
        std::vector<std::pair<std::string, std::string>> opts;
        std::uint64_t size;
        const char* spec;
        std::uint32_t key_bytes;
    };
    const Case cases[] = {
        {{{"luks-version", "2"}}, 1 << 20, "aes-xts-plain64", 64},
        {{{"luks-version", "2"}, {"cipher-alg", "aes-128"}, {"cipher-mode", "cbc"}, {"ivgen-alg", "essiv"}},
         512 * 1000, "aes-cbc-essiv:sha256", 16},
        {{{"luks-version", "2"}, {"cipher-alg", "serpent-256"}, {"hash-alg", "sha512"}}, 256 * 1024,
         "serpent-xts-plain64", 64},
        {{{"luks-version", "2"}, {"cipher-alg", "twofish-128"}, {"cipher-mode", "ctr"}, {"hash-alg", "sha1"}},
         128 * 1024, "twofish-ctr-plain64", 16},
    };
    for (const Case& c : cases) {
        CAPTURE(c.spec);
        std::vector<std::uint8_t> img;
        round_trip(c.opts, c.size, 70200, &img);
        REQUIRE(img.size() == (16u << 20) + c.size);
        CHECK(std::memcmp(img.data(), "LUKS\xba\xbe\0\2", 8) == 0);
        CHECK(std::memcmp(img.data() + 16384, "SKUL\xba\xbe\0\2", 8) == 0);
        hosted::MemoryDevice dev(img);
        hosted::BudgetAllocator alloc(64 << 20);
        luks::Luks2Header h;
        luks::LuksWhy why;
        REQUIRE(luks::luks2_load(dev, alloc, &h, &why) == guest::Status::Ok);
        CHECK(h.hdr_size == 16384);
        CHECK(h.seqid == 1);
        CHECK(h.seg_offset == (16u << 20));
        CHECK(h.seg_dynamic);
        CHECK(h.sector_size == 512);
        CHECK(h.seg.key_bytes == c.key_bytes);
        CHECK(h.slots[0].present);
        CHECK(h.slots[0].kdf == luks::Luks2Kdf::Pbkdf2);
        CHECK(h.slots[0].area_offset == 32768);
        CHECK(h.slots[0].area_size == (c.key_bytes * 4000 + 4095) / 4096 * 4096);
        CHECK(h.digest_len == luks::luks_digest_len(h.digest_hash));
        for (std::uint32_t i = 1; i < luks::LUKS2_MAX_KEYSLOTS; ++i) CHECK_FALSE(h.slots[i].present);
        const std::string json(reinterpret_cast<const char*>(img.data()) + 4096);
        CHECK(json.find(std::string("\"encryption\":\"") + c.spec + "\"") != std::string::npos);
        // Both copies hold the same metadata; their salts differ.
        CHECK(std::memcmp(img.data() + 4096, img.data() + 16384 + 4096, 12288) == 0);
        CHECK(std::memcmp(img.data() + 104, img.data() + 16384 + 104, 64) != 0);
    }
    // A size that is not whole sectors is rounded up (the volume holds whole sectors).
    std::vector<std::uint8_t> img;
    hosted::MemoryTarget target;
    hosted::BudgetAllocator alloc(64 << 20);
    static const std::uint8_t PASS[] = {'p'};
    std::uint8_t random[32] = {1};
    guest::CreateOption v2[] = {{"key-secret", "s"}, {"iter-time", "1"}, {"luks-version", "2"}};
    guest::CreateRequest req{};
    req.size = 1000;
    req.options = v2;
    req.option_count = 3;
    req.file_name = "t.luks";
    req.random = random;
    req.qemu_version = 70200;
    req.allocator = &alloc;
    req.secret = PASS;
    req.secret_len = 1;
    REQUIRE(luks::create(req, target) == guest::Status::Ok);
    CHECK(target.image_output().bytes().size() == (16u << 20) + 1024);
}

TEST_CASE("create refusals") {
    using namespace instar;
    hosted::MemoryTarget target;
    hosted::BudgetAllocator alloc(64 << 20);
    std::uint8_t random[32] = {};
    guest::CreateOption bad[] = {{"key-secret", "s"}, {"cipher-alg", "foo"}};
    guest::CreateRequest req{};
    req.size = 1 << 20;
    req.options = bad;
    req.option_count = 2;
    req.file_name = "t.luks";
    req.random = random;
    req.qemu_version = 70200;
    req.allocator = &alloc;
    CHECK(luks::create(req, target) == guest::Status::Invalid);
    CHECK(target.reason_text() == "Parameter 'cipher-alg' does not accept value 'foo'");
    req.option_count = 1;
    CHECK(luks::create(req, target) == guest::Status::Invalid);
    CHECK(target.reason_text() == "Parameter 'key-secret' is required for cipher");
    static const std::uint8_t PASS[] = {'p'};
    req.secret = PASS;
    req.secret_len = 1;
    // qemu's messages for what its LUKS has no cipher for.
    const std::pair<std::vector<guest::CreateOption>, const char*> refused[] = {
        {{{"key-secret", "s"}, {"cipher-alg", "3des"}}, "Algorithm '3des' not supported"},
        {{{"key-secret", "s"}, {"cipher-alg", "cast5-128"}}, "Unsupported cipher mode xts"},
        {{{"key-secret", "s"}, {"cipher-alg", "cast5-128"}, {"cipher-mode", "cbc"}, {"ivgen-alg", "essiv"}},
         "Cipher cast5-128 not supported with essiv"},
        {{{"key-secret", "s"}, {"cipher-alg", "serpent-128"}, {"ivgen-alg", "essiv"}, {"ivgen-hash-alg", "sha1"}},
         "No Serpent cipher with key size 20 available"},
    };
    for (const auto& [opts, text] : refused) {
        req.options = opts.data();
        req.option_count = static_cast<std::uint32_t>(opts.size());
        CHECK(luks::create(req, target) == guest::Status::Unsupported);
        CHECK(target.reason_text() == text);
    }
    guest::CreateOption twofish192[] = {{"key-secret", "s"}, {"cipher-alg", "twofish-192"}, {"cipher-mode", "ctr"}};
    req.options = twofish192;
    req.option_count = 3;
    CHECK(luks::create(req, target) == guest::Status::Unsupported); // qemu-img aborts on these
    guest::CreateOption aes192[] = {{"key-secret", "s"}, {"cipher-alg", "aes-192"}, {"cipher-mode", "cbc"}};
    req.options = aes192;
    req.option_count = 3;
    CHECK(luks::create(req, target) == guest::Status::Unsupported); // qemu-img aborts on these
    req.option_count = 2;
    guest::CreateOption sm4[] = {{"key-secret", "s"}, {"cipher-alg", "sm4"}};
    req.options = sm4;
    CHECK(luks::create(req, target) == guest::Status::Invalid); // not in 7.2's enum
    // luks-version, instar's extension: 1 or 2; LUKS2 refuses ecb (dm-crypt's takes no IV).
    guest::CreateOption v3[] = {{"key-secret", "s"}, {"luks-version", "3"}};
    req.options = v3;
    CHECK(luks::create(req, target) == guest::Status::Invalid);
    CHECK(target.reason_text() == "Parameter 'luks-version' does not accept value '3'");
    guest::CreateOption ecb[] = {{"key-secret", "s"}, {"luks-version", "2"}, {"cipher-mode", "ecb"}};
    req.options = ecb;
    req.option_count = 3;
    CHECK(luks::create(req, target) == guest::Status::Unsupported);
    CHECK(target.reason_text() == "instar does not create LUKS2 volumes in ecb mode: dm-crypt's ecb takes no IV generator");
}

namespace {

// The edit host of the resize cases: records the reason and the length asked for.
struct ResizeHost final : instar::guest::EditHost {
    std::string why;
    std::uint64_t length = 0;
    Status set_length(instar::guest::BlockDevice&, std::uint64_t n, instar::guest::Prealloc) override {
        length = n;
        return Status::Ok;
    }
    Status flush(instar::guest::BlockDevice&) override { return Status::Ok; }
    Status add_file(const char*, instar::guest::BlockDevice**) override { return Status::Unsupported; }
    Status out(const char*, std::size_t) override { return Status::Ok; }
    Status err(const char*, std::size_t) override { return Status::Ok; }
    void reason(const char* t, std::size_t n) override { why.assign(t, n); }
    Status data(std::uint32_t, const void*, std::size_t) override { return Status::Ok; }
    void progress(std::uint64_t, std::uint64_t) override {}
};

Status resize_image(std::vector<std::uint8_t> bytes, std::uint64_t size, instar::guest::Prealloc mode,
                    ResizeHost& host) {
    instar::guest::ResizeArgs a{};
    a.new_size = size;
    a.prealloc = static_cast<std::uint32_t>(mode);
    // An output device: its size() is the host's limit, not the file's length.
    struct Output final : instar::guest::BlockDevice {
        instar::hosted::MemoryDevice file;
        explicit Output(std::vector<std::uint8_t> b) : file(std::move(b)) {}
        std::uint64_t size() const override { return std::uint64_t{1} << 57; }
        Status read(std::uint64_t offset, void* buf, std::size_t len) override { return file.read(offset, buf, len); }
        Status write(std::uint64_t, const void*, std::size_t) override { return Status::IoError; }
    } dev(std::move(bytes));
    instar::hosted::BudgetAllocator alloc(1 << 20);
    instar::guest::EditRequest req{};
    req.command = instar::guest::EditCommand::Resize;
    req.image = &dev;
    req.image_length = dev.file.size();
    req.writable = true;
    req.args = reinterpret_cast<const std::uint8_t*>(&a);
    req.args_len = sizeof a;
    req.allocator = &alloc;
    return instar::luks::edit(req, host);
}

} // namespace

TEST_CASE("resize: the payload offset plus the new size, and refusals") {
    auto bytes = corpus("header-xts.bin");
    instar::luks::LuksHeader h;
    REQUIRE(instar::luks::luks_header_parse(bytes.data(), bytes.size(), &h) == Status::Ok);
    bytes.resize(h.payload_offset + 4096);
    using instar::guest::Prealloc;
    ResizeHost host;
    CHECK(resize_image(bytes, 1000, Prealloc::Full, host) == Status::Ok);
    CHECK(host.length == h.payload_offset + 1000);
    host = {};
    CHECK(resize_image(bytes, 4096, Prealloc::Off, host) == Status::Ok);
    CHECK(host.length == 0); // the same length: nothing to do
    host = {};
    CHECK(resize_image(bytes, 1 << 20, Prealloc::Metadata, host) != Status::Ok);
    CHECK(host.why == "Unsupported preallocation mode: metadata");
    CHECK(host.length == 0);
    host = {};
    CHECK(resize_image(bytes, 9223372035781033984ull, Prealloc::Off, host) == Status::TooLarge);
    CHECK(host.why == "offset(" + std::to_string(9223372035781033984ull + h.payload_offset) +
                          ") exceeds maximum(9223372035781033984)");
    host = {};
    CHECK(resize_image(bytes, 1ull << 58, Prealloc::Metadata, host) != Status::Ok); // the mode first, as qemu
    CHECK(host.why == "Unsupported preallocation mode: metadata");
    host = {};
    CHECK(resize_image(bytes, 1ull << 58, Prealloc::Off, host) == Status::TooLarge);
    CHECK(host.why == "Could not resize file: File too large");
    // Hostile headers: refused with the reason, the file left alone.
    auto bad = bytes;
    bad[4] = 0; // magic
    host = {};
    CHECK(resize_image(bad, 1 << 20, Prealloc::Off, host) != Status::Ok);
    CHECK(host.why == "Volume is not in LUKS format");
    CHECK(host.length == 0);
    bad = bytes;
    bad.resize(100); // shorter than the header: the rest reads as zeros, as through qemu's block layer
    host = {};
    CHECK(resize_image(bad, 1 << 20, Prealloc::Off, host) != Status::Ok);
    CHECK(host.why == "LUKS payload is overlapping with the header");
    CHECK(host.length == 0);
}

// ---- LUKS2 (docs/formats/luks.md, "LUKS2") ----

namespace {

using instar::luks::Json;
using instar::luks::JsonError;
using instar::luks::JsonToken;

struct Reasons final : instar::guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override { text.assign(t, n); }
};

// Json keeps pointers into the text: it lives in `kept` until the next call.
bool tokenize(const std::string& text, Json& j, std::vector<JsonToken>& tok, JsonError* err = nullptr,
              std::uint32_t cap = instar::luks::LUKS2_JSON_MAX_TOKENS) {
    static std::string kept;
    kept = text;
    tok.assign(cap, JsonToken{});
    JsonError e;
    return j.parse(kept.data(), kept.size(), tok.data(), cap, err ? err : &e);
}

std::vector<std::uint8_t> pattern(std::size_t n) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>((i * 2654435761u) >> 13);
    return v;
}

// Opens `img` with `pass` and reads all of it; the reason of a refusal in *why.
Status read_all(const std::vector<std::uint8_t>& img, const std::string& pass, std::vector<std::uint8_t>* out,
                std::string* why = nullptr, std::size_t budget = 64u << 20) {
    instar::hosted::MemoryDevice dev(img);
    instar::hosted::BudgetAllocator alloc(budget);
    Reasons sink;
    instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, &sink, nullptr, 100000,
                                   reinterpret_cast<const std::uint8_t*>(pass.data()), pass.size()};
    instar::guest::ImageReader* r = nullptr;
    const Status st = instar::luks::luks_any_open(req, &r);
    if (why) *why = sink.text;
    if (st != Status::Ok) return st;
    out->assign(r->virtual_size(), 0);
    // Odd offsets and lengths, across sector boundaries.
    std::size_t at = 0, step = 1000;
    Status rs = Status::Ok;
    while (at < out->size() && rs == Status::Ok) {
        const std::size_t n = std::min(step, out->size() - at);
        rs = r->read(at, out->data() + at, n);
        at += n;
        step = step * 3 + 7;
    }
    r->close();
    return rs;
}

// The volume with its metadata replaced by `json` (both copies re-checksummed).
std::vector<std::uint8_t> with_json(std::vector<std::uint8_t> img, const std::string& json) {
    luks2_test::write_headers(img, json);
    return img;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
    const auto at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
}

} // namespace

TEST_CASE("luks2 json: values, members, numbers and base64") {
    Json j;
    std::vector<JsonToken> tok;
    REQUIRE(tokenize(R"( {"a": [1, "x", true, null, {"b": -1.5e3}], "n": "18446744073709551615", "s": "QUJD", "e": {}} )",
                     j, tok));
    const auto a = j.member(j.root(), "a");
    REQUIRE(a != Json::NONE);
    CHECK(j.at(a).type == instar::luks::JsonType::Array);
    CHECK(j.at(a).children == 5);
    std::uint64_t v = 0;
    CHECK(j.as_u64(j.first_element(a), 10, &v));
    CHECK(v == 1);
    CHECK(j.as_u64(j.member(j.root(), "n"), UINT64_MAX, &v));
    CHECK(v == UINT64_MAX);
    CHECK_FALSE(j.as_u64(j.member(j.root(), "n"), UINT64_MAX - 1, &v)); // above the bound
    CHECK_FALSE(j.as_u64(j.first_element(a), 0, &v));                    // a digit above a small bound
    std::uint8_t out[8];
    std::size_t n = 0;
    CHECK(j.as_base64(j.member(j.root(), "s"), out, sizeof out, &n));
    CHECK(n == 3);
    CHECK(std::memcmp(out, "ABC", 3) == 0);
    CHECK(j.first_member(j.member(j.root(), "e")) == Json::NONE);
    CHECK(j.member(j.root(), "missing") == Json::NONE);
    // Members after a nested value are found (next skips the subtree).
    CHECK(j.member(j.root(), "e") != Json::NONE);
    // Integers: bounds, and what is not one.
    REQUIRE(tokenize("[3, 20, 21, \"\", \"1x\", -1, 1.0]", j, tok));
    std::uint32_t el = j.first_element(j.root());
    CHECK_FALSE(j.as_u64(el, 2, &v));
    el = j.next_element(j.root(), el);
    CHECK(j.as_u64(el, 20, &v));
    CHECK(v == 20);
    el = j.next_element(j.root(), el);
    CHECK_FALSE(j.as_u64(el, 20, &v));
    for (el = j.next_element(j.root(), el); el != Json::NONE; el = j.next_element(j.root(), el))
        CHECK_FALSE(j.as_u64(el, UINT64_MAX, &v));
}

TEST_CASE("luks2 json: malformed and over-bound text is refused") {
    Json j;
    std::vector<JsonToken> tok;
    for (const char* bad : {"", "{", "{\"a\"}", "{\"a\":1,}", "[1 2]", "{\"a\":tru}", "\"\\x\"", "\"abc", "01",
                            "{} {}", "{\"a\":\"\x01\"}", "[1,]", "-", "1.", "1e", "{1:2}", "]"}) {
        JsonError e;
        CHECK_MESSAGE(!tokenize(bad, j, tok, &e), bad);
        CHECK(e.what != nullptr);
    }
    // Nesting: LUKS2_JSON_MAX_DEPTH opens pass, one more is refused.
    const std::string deep(instar::luks::LUKS2_JSON_MAX_DEPTH, '[');
    CHECK(tokenize(deep + std::string(instar::luks::LUKS2_JSON_MAX_DEPTH, ']'), j, tok));
    JsonError e;
    CHECK_FALSE(tokenize(deep + "[" + std::string(instar::luks::LUKS2_JSON_MAX_DEPTH + 1, ']'), j, tok, &e));
    CHECK(std::string(e.what) == "nesting too deep");
    // Values: the token array's bound.
    std::string many = "[";
    for (int i = 0; i < 20; ++i) many += "1,";
    many += "1]";
    CHECK_FALSE(tokenize(many, j, tok, &e, 10));
    CHECK(std::string(e.what) == "too many values");
    // base64 with bad characters, bad padding or too long for its buffer.
    REQUIRE(tokenize(R"(["QU*D", "QUJ", "QUJDRA==", "QQ=A", "QUJD\/w=="])", j, tok));
    std::uint8_t out[4];
    std::size_t n = 0;
    std::uint32_t el = j.first_element(j.root());
    CHECK_FALSE(j.as_base64(el, out, 4, &n));
    el = j.next_element(j.root(), el);
    CHECK_FALSE(j.as_base64(el, out, 4, &n));
    el = j.next_element(j.root(), el);
    CHECK(j.as_base64(el, out, 4, &n));
    CHECK_FALSE(j.as_base64(el, out, 3, &n));
    el = j.next_element(j.root(), el);
    CHECK_FALSE(j.as_base64(el, out, 4, &n));
    el = j.next_element(j.root(), el);
    CHECK(j.as_base64(el, out, 4, &n)); // json-c's "\/"
    CHECK(n == 4);
    CHECK(out[3] == 0xff);
}

TEST_CASE("luks2 volumes unlock and read back: pbkdf2, argon2i, argon2id, 512/4096 sectors, iv_tweak") {
    const auto plain = pattern(64 * 1024);
    struct Case {
        const char* name;
        luks2_test::Options o;
    };
    luks2_test::Options p4k;
    p4k.sector = 4096;
    luks2_test::Options tweak;
    tweak.iv_tweak = 12345;
    tweak.sector = 4096;
    luks2_test::Options a2i;
    a2i.kdf = "argon2i";
    luks2_test::Options a2id;
    a2id.kdf = "argon2id";
    a2id.argon2_cpus = 4;
    for (const Case& c : {Case{"pbkdf2", {}}, Case{"4096", p4k}, Case{"tweak", tweak}, Case{"argon2i", a2i},
                          Case{"argon2id", a2id}}) {
        CAPTURE(c.name);
        const auto img = luks2_test::make("secret", plain, c.o);
        std::vector<std::uint8_t> got;
        std::string why;
        REQUIRE(read_all(img, "secret", &got, &why) == Status::Ok);
        CHECK(got == plain);
        CHECK(read_all(img, "wrong", &got, &why) == Status::Invalid);
        CHECK(why == "Invalid password, cannot unlock any keyslot");
    }
}

TEST_CASE("luks2 probe and info") {
    const auto img = luks2_test::make("secret", pattern(8192));
    instar::hosted::MemoryDevice dev(img);
    bool match = false;
    REQUIRE(instar::luks::luks_any_probe(dev, &match) == Status::Ok);
    CHECK(match);
    const auto r = instar::hosted::run_info(&instar::luks::luks_any_info, dev);
    REQUIRE(r.status == Status::Ok);
    CHECK(r.info.format == "luks");
    CHECK(r.info.virtual_size == 8192);
    const auto& d = r.info.specific;
    CHECK(d.at("cipher-alg").as_string() == "aes-256");
    CHECK(d.at("cipher-mode").as_string() == "xts");
    CHECK(d.at("ivgen-alg").as_string() == "plain64");
    CHECK(d.at("hash-alg").as_string() == "sha256");
    CHECK(d.at("payload-offset").as_int64() == static_cast<std::int64_t>(luks2_test::SEG_OFFSET));
    CHECK(d.at("master-key-iters").as_int64() == 1000);
    CHECK(d.at("uuid").as_string() == "5d8e1c7a-1111-4222-8333-944455556666");
    CHECK(d.at("slots").as_array().size() == 8);
    CHECK(d.at("slots").as_array()[0].as_object().at("active").as_bool());
}

TEST_CASE("luks2 header copies: checksums and seqid") {
    std::string json;
    const auto plain = pattern(4096);
    auto img = luks2_test::make("secret", plain, {}, &json);
    std::vector<std::uint8_t> got;
    std::string why;
    // A damaged primary: the secondary is used.
    auto bad = img;
    bad[4096 + 10] ^= 1;
    CHECK(read_all(bad, "secret", &got, &why) == Status::Ok);
    CHECK(why == "");
    // A primary whose header size is not one: the secondary is found at one of its offsets.
    bad = img;
    bad[15] ^= 1;
    CHECK(read_all(bad, "secret", &got, &why) == Status::Ok);
    // A primary without its magic is not LUKS2 to the luks module (it dispatches on the primary's
    // magic and version): LUKS1's words.
    bad = img;
    bad[0] = 'X';
    CHECK(read_all(bad, "secret", &got, &why) == Status::Corrupt);
    CHECK(why == "Volume is not in LUKS format");
    // Both damaged.
    bad = img;
    bad[4096 + 10] ^= 1;
    bad[luks2_test::HDR + 4096 + 10] ^= 1;
    CHECK(read_all(bad, "secret", &got, &why) == Status::Corrupt);
    CHECK(why == "LUKS2 header checksum is wrong in both copies (or a copy is cut short)");
    // The valid copy with the higher seqid wins: a secondary naming another digest iteration count.
    bad = img;
    luks2_test::write_headers(bad, json, 5, 4);
    auto other = bad;
    luks2_test::write_headers(other, replace(json, "\"iterations\":1000,\"salt\":\"AAEC", "\"iterations\":999,\"salt\":\"AAEC"), 5, 6);
    std::memcpy(bad.data() + luks2_test::HDR, other.data() + luks2_test::HDR, luks2_test::HDR);
    CHECK(read_all(bad, "secret", &got, &why) == Status::Invalid); // the secondary's digest is wrong
    // A LUKS1 header claiming version 2 is not LUKS2: qemu's words.
    auto v1 = corpus("header-xts.bin");
    v1.resize(4 << 20);
    v1[7] = 2;
    CHECK(read_all(v1, "secret", &got, &why) == Status::Unsupported);
    CHECK(why == "LUKS version 2 is not supported");
}

TEST_CASE("luks2 hostile metadata is refused with its reason") {
    std::string json;
    const auto img = luks2_test::make("secret", pattern(4096), {}, &json);
    struct Case {
        std::string from, to, why;
    };
    const Case cases[] = {
        {"{\"keyslots\"", "{\"keyslots\"}", "LUKS2 metadata is not valid JSON (expected ':' at byte 11)"},
        {"\"stripes\":4000", "\"stripes\":4001", "LUKS2 keyslot 0 anti-forensic split is not luks1 with 4000 stripes"},
        {"\"iterations\":1000,\"salt\":\"oK", "\"iterations\":4000000000,\"salt\":\"oK",
         "LUKS2 keyslot 0 asks for 4000000000 PBKDF2 iterations (at most 67108864)"},
        {"\"key_size\":64,\"af\"", "\"key_size\":65,\"af\"", "LUKS2 keyslot 0 key size is not 1 to 64 bytes"},
        {"\"offset\":\"32768\"", "\"offset\":\"16384\"", "LUKS2 keyslot 0 area overlaps the LUKS2 header"},
        {"\"size\":\"258048\"", "\"size\":\"4096\"", "LUKS2 keyslot 0 area is smaller than its key material"},
        {"\"offset\":\"290816\"", "\"offset\":\"99999744\"", "LUKS2 segment 0 starts past the end of the file"},
        {"\"size\":\"dynamic\"", "\"size\":\"1048576\"", "LUKS2 segment 0 ends past the end of the file"},
        {"\"offset\":\"290816\"", "\"offset\":\"286720\"", "LUKS2 segment 0 overlaps the LUKS2 header or keyslots area"},
        {"\"sector_size\":512", "\"sector_size\":8192", "LUKS2 segment 0 sector size 8192 is not 512 to 4096"},
        {"aes-xts-plain64\",\"sector", "des-xts-plain64\",\"sector",
         "LUKS2 segment 0 encryption 'des-xts-plain64': Algorithm 'des' with key size 32 bytes not supported"},
        {"\"json_size\":\"12288\"", "\"json_size\":\"4096\"", "LUKS2 config json_size or keyslots_size is wrong"},
        {"\"keyslots\":[\"0\"]", "\"keyslots\":[\"7\"]", "LUKS2 digest of segment 0 names a keyslot that does not exist"},
        {"\"keyslots\":{\"0\"", "\"keyslots\":{\"32\"", "LUKS2 keyslot id '32' is not 0 to 31 or repeats"},
        {"\"type\":\"crypt\"", "\"type\":\"linear\"", "LUKS2 segment 0 is not of type crypt"},
        {"\"config\":{", "\"config\":{\"requirements\":{\"mandatory\":[\"online-reencrypt-v2\"]},",
         "LUKS2 volume requires 'online-reencrypt-v2' (not supported)"},
        {"\"segments\":[\"0\"]", "\"segments\":[]", "LUKS2 segment 0 has no digest"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.to);
        std::vector<std::uint8_t> got;
        std::string why;
        CHECK(read_all(with_json(img, replace(json, c.from, c.to)), "secret", &got, &why) != Status::Ok);
        CHECK(why == c.why);
    }
    // Two key slots whose areas overlap.
    const auto ks = json.substr(json.find("\"0\":{\"type\":\"luks2\""), json.find(",\"tokens\"") - 1 - json.find("\"0\":{\"type\":\"luks2\""));
    std::string two = replace(json, ks, ks + "," + replace(replace(ks, "\"0\":", "\"1\":"), "\"offset\":\"32768\"", "\"offset\":\"36864\""));
    two = replace(two, "\"keyslots_size\":\"258048\"", "\"keyslots_size\":\"262144\"");
    two = replace(two, "\"offset\":\"290816\"", "\"offset\":\"299008\"");
    std::vector<std::uint8_t> got;
    std::string why;
    auto big = img;
    big.resize(big.size() + 8192);
    CHECK(read_all(with_json(big, two), "secret", &got, &why) == Status::Corrupt);
    CHECK(why == "LUKS2 keyslots 0 and 1 have overlapping areas");
}

TEST_CASE("luks2 argon2 costs: bounds, and memory above the arena names --max-guest-memory") {
    std::string json;
    luks2_test::Options a;
    a.kdf = "argon2id";
    const auto img = luks2_test::make("secret", pattern(4096), a, &json);
    std::vector<std::uint8_t> got;
    std::string why;
    // 1 MiB of argon2 memory does not fit a 1 MiB arena (the header scratch is freed first).
    CHECK(read_all(img, "secret", &got, &why, 3u << 20) == Status::Ok);
    CHECK(read_all(img, "secret", &got, &why, 1u << 20) == Status::NoMemory);
    CHECK(why == "LUKS2 keyslot 0's argon2id needs 1 MiB of guest memory, more than the sandbox has: raise "
                 "--max-guest-memory (at most 3G)");
    CHECK(read_all(with_json(img, replace(json, "\"memory\":1024", "\"memory\":4194305")), "secret", &got, &why) ==
          Status::Corrupt);
    CHECK(why == "LUKS2 keyslot 0 asks for 4194305 KiB of argon2 memory (8 x lanes to 4194304)");
    CHECK(read_all(with_json(img, replace(json, "\"time\":2", "\"time\":100000")), "secret", &got, &why) == Status::Corrupt);
    CHECK(why == "LUKS2 keyslot 0 asks for 100000 argon2 passes over 1024 KiB (at most 67108864 KiB in all)");
    CHECK(read_all(with_json(img, replace(json, "\"cpus\":2", "\"cpus\":1000")), "secret", &got, &why) == Status::Corrupt);
    CHECK(why == "LUKS2 keyslot 0 asks for 1000 argon2 lanes (at most 16)");
}

// A writable image in memory whose size is its bytes' (the LUKS2 writer sizes a dynamic segment by it).
class RwMemory final : public instar::guest::BlockDevice {
public:
    explicit RwMemory(std::vector<std::uint8_t> b) : bytes(std::move(b)) {}
    std::uint64_t size() const override { return bytes.size(); }
    Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > bytes.size() || len > bytes.size() - off) return Status::IoError;
        std::memcpy(buf, bytes.data() + off, len);
        return Status::Ok;
    }
    Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (off > bytes.size() || len > bytes.size() - off) return Status::IoError;
        std::memcpy(bytes.data() + off, buf, len);
        return Status::Ok;
    }
    std::vector<std::uint8_t> bytes;
};

TEST_CASE("a luks2 volume's writer writes its segment, merging the units a write covers in part") {
    static const std::uint8_t PASS[] = {'s', 'e', 'c', 'r', 'e', 't'};
    for (std::uint32_t sector : {512u, 4096u}) {
        CAPTURE(sector);
        luks2_test::Options o;
        o.sector = sector;
        o.iv_tweak = 24; // IVs counted from the segment's tweak, as the reader (checked against cryptsetup) counts them
        const auto plain = pattern(16384);
        const auto img = luks2_test::make("secret", plain, o);
        RwMemory dev(img);
        instar::hosted::BudgetAllocator alloc(64u << 20);
        Reasons sink;
        instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, &sink, nullptr, 100000, PASS, sizeof PASS};
        instar::guest::ImageWriter* w = nullptr;
        REQUIRE(instar::luks::luks_any_open_writer(req, &w) == Status::Ok);
        std::vector<std::uint8_t> data(3000);
        for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 13 + 5);
        CHECK(w->write(1536, data.data(), data.size()) == Status::Ok); // inside one 4 KiB unit and across the next
        CHECK(w->write_zeroes(8704, 1024, false) == Status::Ok);
        CHECK(w->write(16384 - 512, data.data(), 512) == Status::Ok); // the last sector
        CHECK(w->write(16384, data.data(), 512) == Status::Invalid);  // past the segment
        CHECK(w->finish() == Status::Ok);
        w->close();
        auto want = plain;
        std::memcpy(want.data() + 1536, data.data(), data.size());
        std::memset(want.data() + 8704, 0, 1024);
        std::memcpy(want.data() + 16384 - 512, data.data(), 512);
        std::vector<std::uint8_t> got;
        std::string why;
        REQUIRE(read_all(dev.bytes, "secret", &got, &why) == Status::Ok);
        CHECK(got == want);
        CHECK(std::equal(img.begin(), img.begin() + luks2_test::SEG_OFFSET, dev.bytes.begin())); // header, key slots
        CHECK(dev.bytes.size() == img.size());
    }
    // A wrong passphrase is refused as the reader refuses it, and nothing is written.
    const auto img = luks2_test::make("secret", pattern(4096));
    RwMemory dev(img);
    instar::hosted::BudgetAllocator alloc(64u << 20);
    Reasons sink;
    static const std::uint8_t WRONG[] = {'n', 'o', 'p', 'e'};
    instar::guest::OpenRequest req{&dev, nullptr, 0, &alloc, nullptr, &sink, nullptr, 100000, WRONG, sizeof WRONG};
    instar::guest::ImageWriter* w = nullptr;
    CHECK(instar::luks::luks_any_open_writer(req, &w) == Status::Invalid);
    CHECK(sink.text == "Invalid password, cannot unlock any keyslot");
    CHECK(dev.bytes == img);
}

TEST_CASE("luks2 key slot ids past 7, priorities, and info's slot list") {
    std::string json;
    const auto plain = pattern(8192);
    const auto img = luks2_test::make("secret", plain, {}, &json);
    // Slot 12 instead of 0: info lists 13 slots, only the 13th active; it unlocks.
    const auto moved = with_json(img, replace(replace(json, "\"keyslots\":{\"0\"", "\"keyslots\":{\"12\""),
                                              "\"keyslots\":[\"0\"]", "\"keyslots\":[\"12\"]"));
    instar::hosted::MemoryDevice dev(moved);
    const auto r = instar::hosted::run_info(&instar::luks::luks_any_info, dev);
    REQUIRE(r.status == Status::Ok);
    const auto& slots = r.info.specific.at("slots").as_array();
    REQUIRE(slots.size() == 13);
    CHECK_FALSE(slots[0].as_object().at("active").as_bool());
    CHECK(slots[12].as_object().at("active").as_bool());
    CHECK(slots[12].as_object().at("key-offset").as_int64() == static_cast<std::int64_t>(luks2_test::AREA_OFFSET));
    std::vector<std::uint8_t> got;
    std::string why;
    CHECK(read_all(moved, "secret", &got, &why) == Status::Ok);
    CHECK(got == plain);
    // Priority 0 ("ignore") is never tried without a named slot, as cryptsetup: the passphrase fails.
    const auto ignored = with_json(img, replace(json, "\"key_size\":64,\"af\"", "\"key_size\":64,\"priority\":0,\"af\""));
    CHECK(read_all(ignored, "secret", &got, &why) == Status::Invalid);
    CHECK(read_all(with_json(img, replace(json, "\"key_size\":64,\"af\"", "\"key_size\":64,\"priority\":2,\"af\"")),
                   "secret", &got, &why) == Status::Ok);
    CHECK(read_all(with_json(img, replace(json, "\"key_size\":64,\"af\"", "\"key_size\":64,\"priority\":3,\"af\"")),
                   "secret", &got, &why) == Status::Corrupt);
    CHECK(why == "LUKS2 keyslot 0 priority is not 0, 1 or 2");
    // A fixed segment size: the virtual size, whole sectors.
    CHECK(read_all(with_json(img, replace(json, "\"size\":\"dynamic\"", "\"size\":\"4096\"")), "secret", &got, &why) ==
          Status::Ok);
    CHECK(got.size() == 4096);
    CHECK(std::equal(got.begin(), got.end(), plain.begin()));
    // Metadata nested past LUKS2_JSON_MAX_DEPTH, inside a valid header pair.
    CHECK(read_all(with_json(img, replace(json, "\"tokens\":{}", "\"tokens\":" + std::string(30, '[') + std::string(30, ']'))),
                   "secret", &got, &why) == Status::Corrupt);
    CHECK(why.rfind("LUKS2 metadata is not valid JSON (nesting too deep at byte ", 0) == 0);
}
