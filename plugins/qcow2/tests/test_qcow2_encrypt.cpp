// Writing encrypted qcow2 (encrypt.format=luks and legacy aes): create_writer's images unlock and
// read back through the reader with the secret (and not without it), the header carries
// crypt_method and the crypto header extension, the existing writer (convert -n) encrypts too, and
// qemu's option errors. The images against qemu-img: tests/crypto qcow2_encrypt_differential.
#include <doctest/doctest.h>

#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_existing.h"
#include "hosted_support.h"
#include "qcow2_bytes.h"
#include "qcow2_existing_write.h"
#include "qcow2_read.h"
#include "qcow2_write.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

using namespace instar;
using instar::guest::Status;

namespace {

const std::uint8_t PASS[] = {'p', 'a', 's', 's', 'w', 'o', 'r', 'd'};
using Opts = std::vector<std::pair<std::string, std::string>>;

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t len) override { text.assign(t, len); }
};

using hosted::ExistingFile;

struct Made {
    Status status;
    std::string reason;
    std::vector<std::uint8_t> bytes;
};

// create_writer with `opts` (and the secret unless `no_secret`); `fill` writes the disk.
template <typename Fill>
Made make(std::uint64_t size, const Opts& opts, Fill fill, bool no_secret = false) {
    hosted::MemoryTarget target;
    hosted::BudgetAllocator alloc(64u << 20);
    std::vector<guest::CreateOption> o;
    for (const auto& [k, v] : opts)
        o.push_back({k.c_str(), v.c_str()});
    std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {7, 7, 7};
    guest::CreateRequest req{};
    req.size = size;
    req.options = o.data();
    req.option_count = static_cast<std::uint32_t>(o.size());
    req.file_name = "t.qcow2";
    req.random = random;
    req.qemu_version = 70200;
    req.allocator = &alloc;
    req.codecs = &hosted::host_codecs();
    if (!no_secret) {
        req.secret = PASS;
        req.secret_len = sizeof PASS;
    }
    guest::ImageWriter* w = nullptr;
    Made m;
    m.status = qcow2::create_writer(req, target, &w);
    m.reason = target.reason_text();
    if (m.status != Status::Ok)
        return m;
    fill(*w);
    REQUIRE(w->finish() == Status::Ok);
    w->close();
    m.bytes = target.image_output().bytes();
    return m;
}

Status read_disk(const std::vector<std::uint8_t>& img, const std::uint8_t* secret, std::size_t len,
                 std::vector<std::uint8_t>* out, std::string* reason = nullptr) {
    hosted::MemoryDevice dev(img);
    hosted::BudgetAllocator alloc(64u << 20);
    Reasons reasons;
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, &hosted::host_codecs(), &reasons, nullptr, 70200};
    req.secret = secret;
    req.secret_len = len;
    guest::ImageReader* r = nullptr;
    const Status st = qcow2::open(req, &r);
    if (reason != nullptr)
        *reason = reasons.text;
    if (st != Status::Ok)
        return st;
    out->assign(r->virtual_size(), 0);
    const Status rd = r->read(0, out->data(), out->size());
    r->close();
    return rd;
}

std::vector<std::uint8_t> pattern(std::size_t n, unsigned seed) {
    std::vector<std::uint8_t> d(n);
    for (std::size_t i = 0; i < n; ++i)
        d[i] = static_cast<std::uint8_t>(i * 13 + i / 4096 + seed);
    return d;
}

// The disk a round trip writes: data, a zeroed range, a partial cluster, the tail.
void round_trip(const Opts& opts, std::uint64_t size) {
    const auto data = pattern(size, 1);
    std::vector<std::uint8_t> expect(size, 0);
    const auto m = make(size, opts, [&](guest::ImageWriter& w) {
        CHECK(w.zero_init());
        REQUIRE(w.write(0, data.data(), 70000 / 512 * 512) == Status::Ok);
        REQUIRE(w.write_zeroes(131072, 65536, true) == Status::Ok);
        REQUIRE(w.write(200704, data.data() + 200704, 1536) == Status::Ok); // partial: COW around it
        REQUIRE(w.write(size - 8192, data.data() + size - 8192, 8192) == Status::Ok);
    });
    REQUIRE_MESSAGE(m.status == Status::Ok, m.reason);
    std::copy(data.begin(), data.begin() + 70000 / 512 * 512, expect.begin());
    std::copy(data.begin() + 200704, data.begin() + 200704 + 1536, expect.begin() + 200704);
    std::copy(data.end() - 8192, data.end(), expect.end() - 8192);
    std::vector<std::uint8_t> back;
    REQUIRE(read_disk(m.bytes, PASS, sizeof PASS, &back) == Status::Ok);
    CHECK(back == expect);
    // The ciphertext is not the plaintext.
    CHECK(std::search(m.bytes.begin(), m.bytes.end(), data.begin() + 512, data.begin() + 1024) == m.bytes.end());
    std::string why;
    CHECK(read_disk(m.bytes, nullptr, 0, &back, &why) == Status::Unsupported);
    CHECK(why == "Parameter 'encrypt.key-secret' is required for cipher");
}

Opts luks(Opts more = {}) {
    Opts o{{"encrypt.format", "luks"}, {"encrypt.key-secret", "s0"}, {"encrypt.iter-time", "1"}};
    o.insert(o.end(), more.begin(), more.end());
    return o;
}

std::string refusal(const Opts& opts, bool no_secret = false) {
    const auto m = make(1u << 20, opts, [](guest::ImageWriter&) {}, no_secret);
    CHECK(m.status != Status::Ok);
    return m.reason;
}

} // namespace

TEST_CASE("qcow2 encrypted create: LUKS and AES images read back with the secret") {
    round_trip(luks(), 1u << 20);
    round_trip(luks({{"cluster_size", "4096"}, {"encrypt.cipher-alg", "aes-128"}, {"encrypt.cipher-mode", "cbc"},
                     {"encrypt.ivgen-alg", "essiv"}}),
               3u << 20);
    round_trip(luks({{"cluster_size", "512"}, {"compat", "0.10"}}), 1u << 20);
    round_trip({{"encrypt.format", "aes"}, {"encrypt.key-secret", "s0"}}, 1u << 20);
    round_trip({{"encryption", "on"}, {"encrypt.key-secret", "s0"}, {"cluster_size", "4096"}}, 1u << 20);
}

TEST_CASE("qcow2 encrypted create: header fields and the crypto header extension") {
    const auto m = make(1u << 20, luks(), [](guest::ImageWriter&) {});
    REQUIRE(m.status == Status::Ok);
    CHECK(qcow2::load_be32(m.bytes.data() + 32) == 2); // crypt_method LUKS
    // The extension after the 104-byte v3 header (compression type padded to 112).
    std::size_t at = 112;
    bool found = false;
    while (at + 8 <= 65536) {
        const std::uint32_t magic = qcow2::load_be32(m.bytes.data() + at);
        const std::uint32_t len = qcow2::load_be32(m.bytes.data() + at + 4);
        if (magic == 0)
            break;
        if (magic == 0x0537be77) {
            found = true;
            CHECK(len == 16);
            const std::uint64_t off = qcow2::load_be64(m.bytes.data() + at + 8);
            CHECK(qcow2::load_be64(m.bytes.data() + at + 16) == 2068480); // aes-256-xts: qemu's payload offset
            CHECK(off == 4 * 65536); // after header, refcount table and block, L1 (qemu-img's layout)
            CHECK(std::equal(m.bytes.begin() + off, m.bytes.begin() + off + 4, "LUKS"));
        }
        at += 8 + (len + 7) / 8 * 8;
    }
    CHECK(found);
    const auto a = make(1u << 20, {{"encrypt.format", "aes"}, {"encrypt.key-secret", "s0"}}, [](guest::ImageWriter&) {});
    REQUIRE(a.status == Status::Ok);
    CHECK(qcow2::load_be32(a.bytes.data() + 32) == 1); // crypt_method AES, no extension
}

TEST_CASE("qcow2 encrypted create: qemu's option errors") {
    CHECK(refusal({{"encrypt.format", "luks"}}, true) == "Parameter 'encrypt.key-secret' is required for cipher");
    CHECK(refusal({{"encryption", "on"}}, true) == "Parameter 'encrypt.key-secret' is required for cipher");
    CHECK(refusal({{"encrypt.key-secret", "s0"}}) == "Parameter 'encrypt.format' is missing");
    CHECK(refusal({{"encrypt.format", "bogus"}, {"encrypt.key-secret", "s0"}}) ==
          "Parameter 'format' does not accept value 'bogus'");
    CHECK(refusal({{"encryption", "on"}, {"encrypt.format", "luks"}, {"encrypt.key-secret", "s0"}}) ==
          "'encrypt.format' and its alias 'encryption' can't be used at the same time");
    CHECK(refusal({{"encrypt.format", "aes"}, {"encrypt.key-secret", "s0"}, {"encrypt.hash-alg", "sha1"}}) ==
          "Parameter 'encrypt.hash-alg' is unexpected");
    CHECK(refusal(luks({{"encrypt.cipher-alg", "foo"}})) == "Parameter 'cipher-alg' does not accept value 'foo'");
    CHECK(refusal({{"encrypt.format", "luks"}, {"encrypt.key-secret", "s0"}, {"encrypt.iter-time", "x"}}) ==
          "Parameter 'encrypt.iter-time' expects a number");
    // encryption=off is dropped: a plain image.
    const auto m = make(1u << 20, {{"encryption", "off"}}, [](guest::ImageWriter&) {}, true);
    REQUIRE(m.status == Status::Ok);
    CHECK(qcow2::load_be32(m.bytes.data() + 32) == 0);
}

TEST_CASE("qcow2 encrypted convert -n: the existing writer unlocks and encrypts") {
    for (const Opts& opts : {luks({{"cluster_size", "4096"}}), Opts{{"encrypt.format", "aes"}, {"encrypt.key-secret", "s0"}}}) {
        const std::uint64_t size = 1u << 20;
        const auto first = pattern(size, 3);
        const auto m = make(size, opts, [&](guest::ImageWriter& w) {
            REQUIRE(w.write(0, first.data(), 65536) == Status::Ok);
        });
        REQUIRE(m.status == Status::Ok);
        ExistingFile file(m.bytes);
        REQUIRE(file.ok());
        hosted::BudgetAllocator alloc(64u << 20);
        Reasons reasons;
        guest::OpenRequest req{&file, nullptr, 0, &alloc, &hosted::host_codecs(), &reasons, nullptr, 70200};
        guest::ImageWriter* w = nullptr;
        CHECK(qcow2::open_writer(req, &w) == Status::Unsupported);
        CHECK(reasons.text == "Parameter 'encrypt.key-secret' is required for cipher");
        req.secret = PASS;
        req.secret_len = sizeof PASS;
        REQUIRE(qcow2::open_writer(req, &w) == Status::Ok);
        const auto second = pattern(size, 9);
        REQUIRE(w->write(4096, second.data() + 4096, 8192) == Status::Ok);      // in place
        REQUIRE(w->write(300000 / 512 * 512, second.data(), 2048) == Status::Ok); // new, partial cluster
        REQUIRE(w->write(512 * 1024, second.data(), 256 * 1024) == Status::Ok);   // new clusters
        CHECK(w->write_compressed(0, second.data(), 4096) == Status::Unsupported);
        REQUIRE(w->finish() == Status::Ok);
        w->close();
        std::vector<std::uint8_t> expect(size, 0);
        std::copy(first.begin(), first.begin() + 65536, expect.begin());
        std::copy(second.begin() + 4096, second.begin() + 4096 + 8192, expect.begin() + 4096);
        std::copy(second.begin(), second.begin() + 2048, expect.begin() + 300000 / 512 * 512);
        std::copy(second.begin(), second.begin() + 256 * 1024, expect.begin() + 512 * 1024);
        std::vector<std::uint8_t> back;
        REQUIRE(read_disk(file.bytes(), PASS, sizeof PASS, &back) == Status::Ok);
        CHECK(back == expect);
        if (opts[0].second == "luks") {
            static const std::uint8_t WRONG[] = {'n', 'o'};
            guest::OpenRequest bad = req;
            bad.secret = WRONG;
            bad.secret_len = sizeof WRONG;
            CHECK(qcow2::open_writer(bad, &w) == Status::Invalid);
            CHECK(reasons.text == "Invalid password, cannot unlock any keyslot");
        }
    }
}
