// LUKS unit tests: nettle's PBKDF2 through luks_pbkdf2 (RFC 6070 / RFC 7914 vectors), the header
// parser on qemu-made headers and hostile variants, open's refusals, and the write side: the
// anti-forensic split against the merge, images created then unlocked and read back.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "hosted_create.h"
#include "hosted_support.h"
#include "luks_create.h"
#include "luks_crypto.h"
#include "luks_format.h"
#include "luks_header.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
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
    CHECK_FALSE(instar::luks::luks_pbkdf2("md5", pw, 8, salt, 4, 1, out, 16));
    // PBKDF2-HMAC-SHA224, "password"/"salt", 1 iteration (python3 hashlib.pbkdf2_hmac).
    REQUIRE(instar::luks::luks_pbkdf2("sha224", pw, 8, salt, 4, 1, out, 28));
    CHECK(hex(out, 28) == "3c198cbdb9464b7857966bd05b7bc92bc1cc4e6e63155d4e490557fd");
}

TEST_CASE("qemu-made headers parse") {
    for (const char* name : {"header-xts.bin", "header-cbc-essiv.bin"}) {
        auto bytes = corpus(name);
        REQUIRE(bytes.size() == 4096);
        instar::luks::LuksHeader h;
        CHECK(instar::luks::luks_header_parse(bytes.data(), bytes.size(), &h) == Status::Ok);
        CHECK(std::strcmp(h.cipher_name, "aes") == 0);
        CHECK(h.slots[0].active);
    }
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
void round_trip(std::vector<std::pair<std::string, std::string>> opts, std::uint64_t size) {
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
    req.qemu_version = 70200;
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
    hosted::MemoryDevice dev(bytes);
    Sink sink;
    guest::OpenRequest oreq{&dev, nullptr, 0, &alloc, nullptr, &sink, nullptr, 70200};
    oreq.secret = PASS;
    oreq.secret_len = sizeof PASS;
    guest::ImageReader* r = nullptr;
    REQUIRE(luks::open(oreq, &r) == guest::Status::Ok);
    CHECK(r->virtual_size() == size);
    std::vector<std::uint8_t> back(size);
    REQUIRE(r->read(0, back.data(), back.size()) == guest::Status::Ok);
    CHECK(back == data);
    r->close();
    static const std::uint8_t WRONG[] = {'n', 'o'};
    oreq.secret = WRONG;
    oreq.secret_len = sizeof WRONG;
    CHECK(luks::open(oreq, &r) == guest::Status::Invalid);
    CHECK(sink.text == "Invalid password, cannot unlock any keyslot");
}

} // namespace

TEST_CASE("created images unlock and read back") {
    round_trip({}, 1 << 20);
    round_trip({{"cipher-alg", "aes-128"}, {"cipher-mode", "cbc"}, {"ivgen-alg", "essiv"}}, 512 * 1000);
    round_trip({{"cipher-alg", "aes-256"}, {"cipher-mode", "cbc"}, {"hash-alg", "sha1"}}, 300 * 1024);
    round_trip({{"cipher-alg", "aes-128"}, {"hash-alg", "sha512"}, {"ivgen-alg", "plain"}}, 256 * 1024);
    round_trip({{"cipher-mode", "ecb"}, {"hash-alg", "sha384"}}, 200 * 1024);
    round_trip({{"hash-alg", "sha224"}}, 128 * 1024);
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
    guest::CreateOption twofish[] = {{"key-secret", "s"}, {"cipher-alg", "twofish-128"}};
    req.options = twofish;
    req.option_count = 2;
    CHECK(luks::create(req, target) == guest::Status::Unsupported);
    guest::CreateOption aes192[] = {{"key-secret", "s"}, {"cipher-alg", "aes-192"}, {"cipher-mode", "cbc"}};
    req.options = aes192;
    req.option_count = 3;
    CHECK(luks::create(req, target) == guest::Status::Unsupported); // qemu-img aborts on these
    req.option_count = 2;
    guest::CreateOption sm4[] = {{"key-secret", "s"}, {"cipher-alg", "sm4"}};
    req.options = sm4;
    CHECK(luks::create(req, target) == guest::Status::Invalid); // not in 7.2's enum
}
