// The existing-image writer's unit tests' helpers (test_qcow2_existing_write.cpp,
// test_qcow2_existing_bitmaps.cpp): an image made by instar's create writer, the writer opened over
// a copy of one, and big-endian fields.
#pragma once

#include "hosted_create.h"
#include "hosted_existing.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_bytes.h"
#include "qcow2_existing_write.h"
#include "qcow2_read.h"
#include "qcow2_write.h"

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

namespace instar::qcow2::test {

struct Reasons final : guest::ReasonSink {
    std::string text;
    void reason(const char* t, std::size_t len) override { text.assign(t, len); }
};

// A fresh image made by instar's create writer with `opts`, its data written by `fill`.
inline std::vector<std::uint8_t> made_image_with(std::uint64_t size, const std::vector<guest::CreateOption>& opts,
                                                 const std::function<void(guest::ImageWriter&)>& fill) {
    hosted::MemoryTarget target;
    hosted::BudgetAllocator alloc(16u << 20);
    std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {};
    guest::CreateRequest req{};
    req.size = size;
    req.options = opts.data();
    req.option_count = static_cast<std::uint32_t>(opts.size());
    req.file_name = "t.qcow2";
    req.random = random;
    req.qemu_version = 100000;
    req.allocator = &alloc;
    req.codecs = &hosted::host_codecs();
    guest::ImageWriter* w = nullptr;
    REQUIRE(qcow2::create_writer(req, target, &w) == guest::Status::Ok);
    fill(*w);
    REQUIRE(w->finish() == guest::Status::Ok);
    w->close();
    return target.image_output().bytes();
}
// ... with a cluster size (nullptr: the default).
inline std::vector<std::uint8_t> made_image(std::uint64_t size, const char* cluster_size,
                                            const std::function<void(guest::ImageWriter&)>& fill) {
    std::vector<guest::CreateOption> opts;
    if (cluster_size != nullptr)
        opts.push_back(guest::CreateOption{"cluster_size", cluster_size});
    return made_image_with(size, opts, fill);
}

inline std::uint64_t be64(const std::vector<std::uint8_t>& b, std::uint64_t off) {
    return qcow2::load_be64(b.data() + off);
}
inline void put64(std::vector<std::uint8_t>& b, std::uint64_t off, std::uint64_t v) {
    qcow2::store_be64(b.data() + off, v);
}

// The disk `img` holds, as instar's qcow2 reader reads it.
inline std::vector<std::uint8_t> read_disk(const std::vector<std::uint8_t>& img) {
    hosted::MemoryDevice dev(img);
    hosted::BudgetAllocator alloc(16u << 20);
    guest::OpenRequest req{&dev, nullptr, 0, &alloc, &hosted::host_codecs(), nullptr, nullptr, 100000};
    guest::ImageReader* r = nullptr;
    REQUIRE(qcow2::open(req, &r) == guest::Status::Ok);
    std::vector<std::uint8_t> disk(r->virtual_size());
    REQUIRE(r->read(0, disk.data(), disk.size()) == guest::Status::Ok);
    r->close();
    return disk;
}

// The writer opened over a copy of `img` (status: open_writer's).
struct Opened {
    hosted::ExistingFile file;
    hosted::BudgetAllocator alloc{16u << 20};
    Reasons reasons;
    guest::ImageWriter* w = nullptr;
    guest::Status status;
    explicit Opened(const std::vector<std::uint8_t>& img) : file(img) {
        REQUIRE(file.ok());
        guest::OpenRequest req{&file, nullptr, 0, &alloc, &hosted::host_codecs(), &reasons, nullptr, 100000};
        status = qcow2::open_writer(req, &w);
    }
    ~Opened() {
        if (w != nullptr)
            w->close();
    }
    // The file as the writer leaves it once finished (its metadata may wait until then:
    // qcow2_deferred_meta.h); the writer stays usable.
    std::vector<std::uint8_t> bytes() {
        if (w != nullptr)
            REQUIRE(w->finish() == guest::Status::Ok);
        return file.bytes();
    }
};

} // namespace instar::qcow2::test
