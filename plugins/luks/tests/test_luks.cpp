// LUKS unit tests: nettle's PBKDF2 through luks_pbkdf2 (RFC 6070 / RFC 7914 vectors), the header
// parser on qemu-made headers and hostile variants, and open's refusals.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "hosted_support.h"
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
