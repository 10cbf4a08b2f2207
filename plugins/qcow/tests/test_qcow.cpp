// Tests of the qcow guest half on images built by its own create and writer (hosted) and patched by
// hand: the bytes qemu's create writes, qemu's open refusals, the reader's answers (plain,
// compressed, AES-encrypted clusters), hostile tables.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow_create.h"
#include "qcow_format.h"
#include "qcow_read.h"

#include <doctest/doctest.h>
#include <nettle/aes.h>
#include <nettle/cbc.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using guest::Allocation;
using guest::Status;
using Bytes = std::vector<std::uint8_t>;

namespace {

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t n) override { text.assign(t, n); }
};

Bytes make(std::uint64_t size, std::string backing = {}) {
    hosted::MemoryTarget target;
    hosted::CreateParams p;
    p.size = size;
    p.backing_file = std::move(backing);
    REQUIRE(hosted::run_create(qcow::create, p, target) == Status::Ok);
    return target.image_output().bytes();
}

std::uint64_t get64(const Bytes& b, std::uint64_t off) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = v << 8 | b[off + i];
    return v;
}
void put64(Bytes& b, std::uint64_t off, std::uint64_t v) {
    if (b.size() < off + 8)
        b.resize(off + 8);
    for (int i = 0; i < 8; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
}
void put32(Bytes& b, std::uint64_t off, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        b[off + i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

std::string load_error(const Bytes& b) {
    hosted::MemoryDevice dev(b);
    qcow::QcowImage img;
    const char* why = nullptr;
    if (qcow::qcow_load(dev, &img, &why) == Status::Ok)
        return "ok";
    return why ? why : "?";
}

// A writable memory device that grows (a host file).
class FileDevice final : public guest::BlockDevice {
public:
    explicit FileDevice(Bytes b = {}) : bytes(std::move(b)) {}
    std::uint64_t size() const override { return bytes.size(); }
    Status read(std::uint64_t off, void* buf, std::size_t len) override {
        if (off > bytes.size() || len > bytes.size() - off)
            return Status::IoError;
        std::memcpy(buf, bytes.data() + off, len);
        return Status::Ok;
    }
    Status write(std::uint64_t off, const void* buf, std::size_t len) override {
        if (off + len > bytes.size())
            bytes.resize(off + len);
        std::memcpy(bytes.data() + off, buf, len);
        return Status::Ok;
    }
    Bytes bytes;
};

struct Opened {
    hosted::BudgetAllocator alloc{64u << 20};
    hosted::MemoryDevice dev;
    Reasons reasons;
    guest::ImageReader* r = nullptr;
    Status st;
    explicit Opened(const Bytes& b, const char* secret = nullptr, std::uint32_t version = 100000) : dev(b) {
        guest::OpenRequest req{&dev, nullptr, 0, &alloc, &hosted::host_codecs(), &reasons, nullptr, version};
        if (secret != nullptr) {
            req.secret = reinterpret_cast<const std::uint8_t*>(secret);
            req.secret_len = std::strlen(secret);
        }
        st = qcow::open(req, &r);
    }
    ~Opened() {
        if (r)
            r->close();
    }
    Bytes read(std::uint64_t off, std::size_t n) {
        Bytes out(n);
        REQUIRE(r->read(off, out.data(), n) == Status::Ok);
        return out;
    }
};

// An image written through create_writer: `fill` gets the writer.
template <typename Fill>
Bytes written(std::uint64_t size, Fill fill, std::string backing = {}) {
    hosted::MemoryTarget target;
    hosted::CreateParams p;
    p.size = size;
    p.backing_file = std::move(backing);
    hosted::BudgetAllocator alloc(64u << 20);
    guest::CreateOption opts[1];
    const guest::CreateRequest req{size, opts, 0, "t.qcow", p.backing_file.empty() ? nullptr : p.backing_file.c_str(),
                                   nullptr, nullptr, 0, 0, p.random, 100000, &alloc, &hosted::host_codecs()};
    guest::ImageWriter* w = nullptr;
    REQUIRE(qcow::create_writer(req, target, &w) == Status::Ok);
    fill(*w);
    REQUIRE(w->finish() == Status::Ok);
    w->close();
    return target.image_output().bytes();
}

} // namespace

TEST_CASE("create lays down qemu's header and L1 sectors") {
    const Bytes a = make(10 << 20);
    CHECK(a.size() == 560); // 48-byte header, 5 L1 entries in one zeroed sector
    CHECK((get64(a, 0) >> 32) == 0x514649fbu);
    CHECK(a[32] == 12);
    CHECK(a[33] == 9);
    CHECK(get64(a, 40) == 48);
    CHECK(get64(a, 24) == 10 << 20);
    const Bytes b = make(10 << 20, "a.qcow");
    CHECK(b.size() == 568); // the name ends at 54, the L1 at 56 (8-aligned)
    CHECK(b[32] == 9);
    CHECK(b[33] == 12);
    CHECK(get64(b, 8) == 48);
    CHECK(std::string(b.begin() + 48, b.begin() + 54) == "a.qcow");
    CHECK(get64(b, 40) == 56);
    const Bytes c = make(1000001); // rounded up to a sector
    CHECK(get64(c, 24) == 1000448);
    const Bytes big = make(uint64_t{5} << 30); // 2560 L1 entries: 40 sectors
    CHECK(big.size() == 48 + 2560 * 8);
}

TEST_CASE("create refuses qemu's way") {
    hosted::MemoryTarget target;
    hosted::CreateParams p;
    p.size = 0;
    CHECK(hosted::run_create(qcow::create, p, target) == Status::Invalid);
    CHECK(target.reason_text() == "Image size is too small, cannot be zero length");
    hosted::MemoryTarget t2;
    p.size = 1 << 20;
    p.options = {{"encryption", "on"}};
    CHECK(hosted::run_create(qcow::create, p, t2) != Status::Ok);
}

TEST_CASE("open refusals in qemu's words and order") {
    const Bytes good = make(10 << 20);
    CHECK(load_error(good) == "ok");
    Bytes b = good;
    b[0] = 'X';
    CHECK(load_error(b) == "Image not in qcow format");
    b = good;
    put32(b, 4, 2);
    CHECK(load_error(b) == "qcow (v1) does not support qcow version 2\nTry the 'qcow2' driver instead.");
    put32(b, 4, 9);
    CHECK(load_error(b) == "qcow (v1) does not support qcow version 9");
    b = good;
    put64(b, 24, 1);
    CHECK(load_error(b) == "Image size is too small (must be at least 2 bytes)");
    b = good;
    b[32] = 8;
    CHECK(load_error(b) == "Cluster size must be between 512 and 64k");
    b[32] = 17;
    CHECK(load_error(b) == "Cluster size must be between 512 and 64k");
    b = good;
    b[33] = 5;
    CHECK(load_error(b) == "L2 table size must be between 512 and 64k");
    b[33] = 14;
    CHECK(load_error(b) == "L2 table size must be between 512 and 64k");
    b = good;
    put32(b, 36, 2);
    CHECK(load_error(b) == "invalid encryption method in qcow header");
    b = good;
    put64(b, 24, ~uint64_t{0} - 100);
    CHECK(load_error(b) == "Image too large");
    b = good;
    put64(b, 24, uint64_t{1} << 50); // 2^29 L1 entries at 2 MiB each: over INT_MAX / 8
    CHECK(load_error(b) == "Image too large");
    b = good;
    put64(b, 8, 48);
    put32(b, 16, 1024);
    CHECK(load_error(b) == "Backing file name too long");
    put32(b, 16, 1023); // past the end of the file: zeros, so no backing file
    CHECK(load_error(b) == "ok");
    b = good;
    put64(b, 40, ~uint64_t{0} - 7);
    CHECK(load_error(b) == "Could not open '{image}': Input/output error");
    put64(b, 40, (uint64_t{1} << 63) - (uint64_t{1} << 30) - 48); // the L1 ends at qemu's BDRV_MAX_LENGTH: zeros
    CHECK(load_error(b) == "ok");
    b = good;
    put64(b, 8, uint64_t{1} << 63);
    put32(b, 16, 10);
    CHECK(load_error(b) == "Could not open '{image}': Input/output error");
}

TEST_CASE("writer and reader agree; layout as qemu allocates") {
    Bytes data(8192, 0x5a);
    const Bytes img = written(10 << 20, [&](guest::ImageWriter& w) {
        CHECK(w.cluster_size() == 4096);
        CHECK(w.zero_init());
        REQUIRE(w.write(4096, data.data(), data.size()) == Status::Ok);
        REQUIRE(w.write(5u << 20, data.data(), 512) == Status::Ok); // a partial cluster in the 3rd L2
    });
    // L2 for [0, 2M) at 4096 (560 rounded up), clusters at 8192 and 12288; the second L2 at 16384,
    // its cluster at 20480, the file truncated to the cluster's end.
    CHECK(get64(img, 48) == 4096);
    CHECK(get64(img, 48 + 16) == 16384);
    CHECK(get64(img, 4096 + 8) == 8192);
    CHECK(get64(img, 4096 + 16) == 12288);
    CHECK(get64(img, 16384 + 8 * 256) == 20480);
    CHECK(img.size() == 24576);
    Opened o(img);
    REQUIRE(o.st == Status::Ok);
    CHECK(o.r->virtual_size() == 10u << 20);
    CHECK(o.read(4096, 8192) == data);
    CHECK(o.read(0, 4096) == Bytes(4096, 0));
    guest::Extent e;
    REQUIRE(o.r->status(0, 4u << 20, &e) == Status::Ok);
    CHECK(e.allocation == Allocation::Unallocated);
    CHECK(e.length == 4096);
    REQUIRE(o.r->status(4096, 4u << 20, &e) == Status::Ok);
    CHECK(e.allocation == Allocation::Data);
    CHECK(e.length == 8192); // contiguous clusters merge
    CHECK(e.offset == 8192);
}

TEST_CASE("compressed clusters: written packed, read back, reported per qemu version") {
    Bytes data(4096);
    for (std::size_t i = 0; i < data.size(); ++i)
        data[i] = static_cast<std::uint8_t>(i / 64);
    Bytes noise(4096);
    std::uint32_t x = 1;
    for (auto& c : noise)
        c = static_cast<std::uint8_t>((x = x * 1103515245 + 12345) >> 16);
    const Bytes img = written(3 * 4096 + 1024, [&](guest::ImageWriter& w) {
        REQUIRE(w.write_compressed(0, data.data(), 4096) == Status::Ok);
        REQUIRE(w.write_compressed(4096, noise.data(), 4096) == Status::Ok); // stored plain
        REQUIRE(w.write_compressed(12288, data.data(), 1024) == Status::Ok); // the short last cluster
    });
    const std::uint64_t e0 = get64(img, 4096);
    CHECK((e0 >> 63) == 1);
    CHECK((e0 & ((uint64_t{1} << 51) - 1)) == 8192); // at the file's length after the L2 table
    CHECK((get64(img, 4096 + 24) & ((uint64_t{1} << 51) - 1)) % 512 == 0); // sector-aligned, as bdrv_getlength
    CHECK(get64(img, 4096 + 8) % 4096 == 0);
    for (std::uint32_t v : {70200u, 100000u}) {
        Opened o(img, nullptr, v);
        REQUIRE(o.st == Status::Ok);
        CHECK(o.read(0, 4096) == data);
        CHECK(o.read(4096, 4096) == noise);
        CHECK(o.read(12288, 1024) == Bytes(data.begin(), data.begin() + 1024));
        guest::Extent e;
        REQUIRE(o.r->status(0, 4096, &e) == Status::Ok);
        CHECK(e.allocation == Allocation::Data);
        CHECK(e.flags == (v >= 100000 ? guest::EXTENT_COMPRESSED : 0u));
    }
    // A corrupt compressed cluster is an I/O error, as qemu's decompress_cluster.
    Bytes bad = img;
    bad[e0 & 0xffff] ^= 0xff;
    bad[(e0 & 0xffff) + 1] ^= 0xff;
    Opened o(bad);
    Bytes out(4096);
    CHECK(o.r->read(0, out.data(), out.size()) != Status::Ok);
}

TEST_CASE("hostile tables fail the request, never the process") {
    Bytes img = written(10 << 20, [&](guest::ImageWriter& w) {
        Bytes d(4096, 1);
        REQUIRE(w.write(0, d.data(), d.size()) == Status::Ok);
    });
    Bytes b = img;
    put64(b, 4096, 8192 + 100); // a data cluster off a sector boundary
    {
        Opened o(b);
        Bytes out(512);
        CHECK(o.r->read(0, out.data(), 512) == Status::IoError);
    }
    b = img;
    put64(b, 48, ~uint64_t{0} - 4095); // an L2 table past what the block layer reads
    {
        Opened o(b);
        guest::Extent e;
        CHECK(o.r->status(0, 4096, &e) == Status::IoError);
    }
    b = img;
    put64(b, 48, uint64_t{1} << 40); // an L2 table past the end of the file reads as zeros
    {
        Opened o(b);
        guest::Extent e;
        REQUIRE(o.r->status(0, 4096, &e) == Status::Ok);
        CHECK(e.allocation == Allocation::Unallocated);
    }
    b = img;
    put64(b, 4096, (uint64_t{1} << 63) | (uint64_t{4095} << 51) | 100); // compressed, size 4095, garbage
    {
        Opened o(b);
        Bytes out(512);
        CHECK(o.r->read(0, out.data(), 512) == Status::IoError);
    }
}

TEST_CASE("AES-encrypted images: key from the secret, CBC with plain64 guest-sector IVs") {
    Bytes plain(1024);
    for (std::size_t i = 0; i < plain.size(); ++i)
        plain[i] = static_cast<std::uint8_t>(i * 7);
    Bytes img = written(1 << 20, [&](guest::ImageWriter& w) { REQUIRE(w.write(8192, plain.data(), 1024) == Status::Ok); });
    put32(img, 36, 1);
    const std::uint64_t host = get64(img, 4096 + 16);
    REQUIRE(host != 0);
    // Encrypt as qemu's crypto/block-qcow.c: key "secret" zero-padded to 16 bytes.
    std::uint8_t key[16] = {'s', 'e', 'c', 'r', 'e', 't'};
    aes128_ctx ctx;
    aes128_set_encrypt_key(&ctx, key);
    for (std::uint64_t s = 0; s < 2; ++s) {
        std::uint8_t iv[16] = {};
        const std::uint64_t sector = 8192 / 512 + s;
        for (int i = 0; i < 8; ++i)
            iv[i] = static_cast<std::uint8_t>(sector >> (8 * i));
        cbc_encrypt(&ctx, reinterpret_cast<nettle_cipher_func*>(aes128_encrypt), 16, iv, 512,
                    img.data() + host + 512 * s, plain.data() + 512 * s);
    }
    {
        Opened o(img);
        CHECK(o.st == Status::Unsupported);
        CHECK(o.reasons.text == "Parameter 'encrypt.key-secret' is required for cipher");
    }
    Opened o(img, "secret");
    REQUIRE(o.st == Status::Ok);
    CHECK(o.read(8192, 1024) == plain);
    CHECK(o.read(8192 + 100, 600) == Bytes(plain.begin() + 100, plain.begin() + 700));
    guest::Extent e;
    REQUIRE(o.r->status(8192, 1024, &e) == Status::Ok);
    CHECK(e.flags == guest::EXTENT_ENCRYPTED);
}

TEST_CASE("convert -n writes into an existing image in place") {
    Bytes img = written(10 << 20, [&](guest::ImageWriter& w) {
        Bytes d(4096, 1);
        REQUIRE(w.write(0, d.data(), d.size()) == Status::Ok);
    });
    FileDevice dev(img);
    hosted::BudgetAllocator alloc(64u << 20);
    const guest::OpenRequest req{&dev, nullptr, 0, &alloc, &hosted::host_codecs(), nullptr, nullptr, 100000};
    guest::ImageWriter* w = nullptr;
    REQUIRE(qcow::open_writer(req, &w) == Status::Ok);
    CHECK(!w->zero_init());
    Bytes d(512, 2);
    REQUIRE(w->write(512, d.data(), d.size()) == Status::Ok);   // in place
    REQUIRE(w->write(8192, d.data(), d.size()) == Status::Ok);  // a new cluster at the end
    REQUIRE(w->finish() == Status::Ok);
    w->close();
    CHECK(dev.bytes.size() == img.size() + 4096);
    Opened o(dev.bytes);
    CHECK(o.read(512, 512) == d);
    CHECK(o.read(0, 512) == Bytes(512, 1));
    CHECK(o.read(8192, 512) == d);
}
