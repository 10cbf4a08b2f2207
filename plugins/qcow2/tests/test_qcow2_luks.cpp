// Unit tests for the LUKS1 header inside encrypted qcow2 images (parsed by plugins/luks/guest/luks_header.cpp).
#include <doctest/doctest.h>

#include "luks_header.h"
#include "qcow2_test_image.h"

#include <string>

using namespace instar::qcow2;
using namespace instar::luks;
using instar::guest::Status;
using test::put_be;

TEST_CASE("qemu's default: aes-256 xts-plain64 sha256") {
    auto b = test::luks_header();
    LuksHeader h;
    REQUIRE(luks_header_parse(b.data(), b.size(), &h) == Status::Ok);
    CHECK(std::string(h.cipher_alg) == "aes-256");
    CHECK(std::string(h.cipher_mode) == "xts");
    CHECK(std::string(h.ivgen_alg) == "plain64");
    CHECK(h.ivgen_hash_alg == nullptr);
    CHECK(std::string(h.hash_alg) == "sha256");
    CHECK(h.payload_offset == 2068480);
    CHECK(h.master_key_iterations == 1538);
    CHECK(std::string(h.uuid, h.uuid_len) == "141d80a3-f8ac-4172-b864-55637b48cb20");
    CHECK(h.slots[0].active);
    CHECK(h.slots[0].iterations == 8036);
    CHECK(h.slots[0].stripes == 4000);
    CHECK(h.slots[0].key_offset == 4096);
    CHECK_FALSE(h.slots[1].active);
    CHECK(h.slots[1].key_offset == 262144);
    CHECK(h.slots[7].key_offset == 1810432);
}

TEST_CASE("cbc-essiv:sha256 and other ciphers") {
    auto b = test::luks_header("aes", "cbc-essiv:sha256", "sha1", 32);
    LuksHeader h;
    REQUIRE(luks_header_parse(b.data(), b.size(), &h) == Status::Ok);
    CHECK(std::string(h.cipher_alg) == "aes-256");
    CHECK(std::string(h.cipher_mode) == "cbc");
    CHECK(std::string(h.ivgen_alg) == "essiv");
    CHECK(std::string(h.ivgen_hash_alg) == "sha256");
    CHECK(std::string(h.hash_alg) == "sha1");
    b = test::luks_header("twofish", "xts-plain", "sha512", 32);
    REQUIRE(luks_header_parse(b.data(), b.size(), &h) == Status::Ok);
    CHECK(std::string(h.cipher_alg) == "twofish-128");
    CHECK(std::string(h.ivgen_alg) == "plain");
    b = test::luks_header("cast5", "cbc-plain64", "sha256", 16);
    REQUIRE(luks_header_parse(b.data(), b.size(), &h) == Status::Ok);
    CHECK(std::string(h.cipher_alg) == "cast5-128");
}

TEST_CASE("headers qemu refuses") {
    LuksHeader h;
    auto check = [&](std::vector<std::uint8_t> b) { return luks_header_parse(b.data(), b.size(), &h); };
    auto b = test::luks_header();
    b[0] = 'X';
    CHECK(check(b) == Status::Corrupt);
    b = test::luks_header();
    put_be(b, 6, 2, 2);
    CHECK(check(b) == Status::Unsupported); // LUKS2
    CHECK(check(test::luks_header("aes", "xts-plain64", "sha256", 20)) == Status::Unsupported); // key size
    CHECK(check(test::luks_header("blowfish")) == Status::Unsupported);
    CHECK(check(test::luks_header("aes", "xts")) == Status::Corrupt);           // no ivgen
    CHECK(check(test::luks_header("aes", "xts-essiv", "sha256", 64)) == Status::Corrupt); // essiv w/o hash
    CHECK(check(test::luks_header("aes", "gcm-plain64")) == Status::Unsupported);
    CHECK(check(test::luks_header("aes", "xts-plain64", "sha3")) == Status::Unsupported);
    CHECK(check(test::luks_header("aes", "cbc-essiv:md5", "sha256", 32)) == Status::Ok); // aes-128 for essiv
    CHECK(check(test::luks_header("cast5", "cbc-essiv:sha256", "sha256", 16)) == Status::Unsupported);
    b = test::luks_header(std::string(32, 'a'));
    CHECK(check(b) == Status::Corrupt); // not NUL terminated
    b = test::luks_header();
    put_be(b, 208 + 44, 3999, 4);
    CHECK(check(b) == Status::Corrupt); // stripes
    b = test::luks_header();
    put_be(b, 208 + 48, 1, 4);
    CHECK(check(b) == Status::Corrupt); // slot state
    b = test::luks_header();
    put_be(b, 208 + 4, 0, 4);
    CHECK(check(b) == Status::Corrupt); // active slot without iterations
    b = test::luks_header();
    put_be(b, 208 + 40, 1, 4);
    CHECK(check(b) == Status::Corrupt); // key material over the header
    b = test::luks_header();
    put_be(b, 208 + 48 + 40, 8, 4);
    CHECK(check(b) == Status::Corrupt); // slots 0 and 1 overlap
    b = test::luks_header();
    put_be(b, 104, 4000, 4);
    CHECK(check(b) == Status::Corrupt); // payload over key material
    b = test::luks_header();
    put_be(b, 164, 0, 4);
    CHECK(check(b) == Status::Corrupt);
    b = test::luks_header();
    put_be(b, 208 + 40, 0xffffffff, 4);
    CHECK(check(b) == Status::Corrupt); // no 32-bit wrap-around
    CHECK(luks_header_parse(b.data(), 591, &h) == Status::Corrupt);
}
