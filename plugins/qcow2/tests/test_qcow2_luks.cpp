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
    // qemu adds a slot's start and length as unsigned ints: the sum wraps and the slot passes (qemu
    // 7.2 and 10.0 open it; its key material lies past the end of any file).
    CHECK(check(b) == Status::Ok);
    CHECK(luks_header_parse(b.data(), 591, &h) == Status::Corrupt);
}

TEST_CASE("refusals in qemu's words and order") {
    LuksHeader h;
    auto why = [&](std::vector<std::uint8_t> b, bool detached = false) {
        LuksWhy w;
        const Status st = luks_header_parse(b.data(), b.size(), &h, detached, &w);
        return st == Status::Ok ? std::string("ok") : std::string(w.text);
    };
    auto with = [](std::size_t at, std::uint64_t v, int n, std::vector<std::uint8_t> b = test::luks_header()) {
        put_be(b, at, v, n);
        return b;
    };
    auto b = test::luks_header();
    b[0] = 'X';
    CHECK(why(b) == "Volume is not in LUKS format");
    CHECK(why(with(6, 2, 2)) == "LUKS version 2 is not supported");
    CHECK(why(test::luks_header(std::string(32, 'a'))) == "LUKS header cipher name is not NUL terminated");
    CHECK(why(test::luks_header("aes", std::string(32, 'b'))) == "LUKS header cipher mode is not NUL terminated");
    CHECK(why(test::luks_header("aes", "xts-plain64", std::string(32, 'c'))) ==
          "LUKS header hash spec is not NUL terminated");
    CHECK(why(with(104, 1, 4)) == "LUKS payload is overlapping with the header");
    CHECK(why(with(104, 0, 4)) == "LUKS payload is overlapping with the header");
    CHECK(why(with(104, 0, 4), true) == "ok"); // a detached header has no payload after it
    CHECK(why(with(164, 0, 4)) == "LUKS key iteration count is zero");
    CHECK(why(with(208 + 3 * 48 + 44, 5, 4)) == "Keyslot 3 is corrupted (stripes 5 != 4000)");
    CHECK(why(with(208 + 3 * 48 + 44, 0xfffffffe, 4)) == "Keyslot 3 is corrupted (stripes -2 != 4000)");
    CHECK(why(with(208 + 2 * 48, 1, 4)) == "Keyslot 2 state (active/disable) is corrupted");
    CHECK(why(with(208 + 4, 0, 4)) == "Keyslot 0 iteration count is zero");
    CHECK(why(with(208 + 40, 1, 4)) == "Keyslot 0 is overlapping with the LUKS header");
    CHECK(why(with(208 + 7 * 48 + 40, 4000, 4)) == "Keyslot 7 is overlapping with the encrypted payload");
    CHECK(why(with(208 + 7 * 48 + 40, 4000, 4), true) == "ok");
    auto overlap = test::luks_header();
    put_be(overlap, 208 + 5 * 48 + 40, 8 + 504 * 4, 4); // slot 4's start
    CHECK(why(overlap) == "Keyslots 4 and 5 are overlapping in the header");
    // master_key_len * stripes is a 32-bit product in qemu: 2 MiB keys wrap to an overlap, 2^31 to 0.
    CHECK(why(with(108, 0x00200000, 4)) == "Keyslot 0 is overlapping with the encrypted payload");
    CHECK(why(with(108, 0x80000000, 4)) == "Algorithm 'aes' with key size 1073741824 bytes not supported");
    CHECK(why(test::luks_header("aes", "cbc-plain64", "sha256", 0x80000000u)) ==
          "Algorithm 'aes' with key size -2147483648 bytes not supported"); // printf's %d
    CHECK(why(test::luks_header("foo")) == "Algorithm 'foo' with key size 32 bytes not supported");
    CHECK(why(test::luks_header("aes", "xtsplain64")) == "Unexpected cipher mode string format 'xtsplain64'");
    CHECK(why(test::luks_header("aes", "foo-plain64")) == "Cipher mode 'foo' not supported");
    CHECK(why(test::luks_header("aes", "xts-foo")) == "IV generator 'foo' not supported");
    CHECK(why(test::luks_header("aes", "foo-plain64:md7")) == "Hash algorithm 'md7' not supported"); // IV hash first
    CHECK(why(test::luks_header("aes", "xts-plain64", "sha2566")) == "Hash algorithm 'sha2566' not supported");
    CHECK(why(test::luks_header("aes", "xts-plain64", "")) == "Hash algorithm '' not supported");
    CHECK(why(test::luks_header("aes", "cbc-essiv", "sha256", 32)) == "Missing IV generator hash specification");
    CHECK(why(test::luks_header("aes", "cbc-essiv:sha1", "sha256", 32)) == "No AES cipher with key size 20 available");
    CHECK(why(test::luks_header("cast5", "cbc-essiv:sha256", "sha256", 16)) ==
          "Cipher cast5-128 not supported with essiv");
}
