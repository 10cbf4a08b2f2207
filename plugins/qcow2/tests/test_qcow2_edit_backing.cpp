// rebase's backing-file switch (qcow2_edit_backing.cpp, docs/rebase.md): the header cluster laid
// out again as qemu's qcow2_update_header, qemu's ENOSPC and EINVAL, and hostile headers refused
// before anything is written. Byte equality with qemu-img is checked by tests/rebase.
#include <doctest/doctest.h>

#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_bytes.h"
#include "qcow2_edit.h"
#include "qcow2_write.h"

#include <instar/guest/edit_backing.h>

#include <cstring>
#include <string>
#include <vector>

using namespace instar;
using instar::guest::Status;

namespace {

// The image as an edit sees it: a writable memory file.
class File final : public guest::BlockDevice {
public:
    explicit File(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
    std::uint64_t size() const override { return bytes_.size(); }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        if (offset > bytes_.size() || len > bytes_.size() - offset)
            return Status::IoError;
        std::memcpy(buf, bytes_.data() + offset, len);
        return Status::Ok;
    }
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        if (offset + len > bytes_.size())
            bytes_.resize(offset + len);
        std::memcpy(bytes_.data() + offset, buf, len);
        ++writes;
        return Status::Ok;
    }
    std::vector<std::uint8_t> bytes_;
    int writes = 0;
};

struct Host final : guest::EditHost {
    std::string why;
    int flushes = 0;
    Status set_length(guest::BlockDevice&, std::uint64_t, guest::Prealloc) override { return Status::Unsupported; }
    Status flush(guest::BlockDevice&) override {
        ++flushes;
        return Status::Ok;
    }
    Status add_file(const char*, guest::BlockDevice**) override { return Status::Unsupported; }
    Status out(const char*, std::size_t) override { return Status::Ok; }
    Status err(const char*, std::size_t) override { return Status::Ok; }
    void reason(const char* text, std::size_t len) override { why.assign(text, len); }
    Status data(std::uint32_t, const void*, std::size_t) override { return Status::Ok; }
    void progress(std::uint64_t, std::uint64_t) override {}
};

std::vector<std::uint8_t> new_image(const char* cluster_size = nullptr) {
    hosted::MemoryTarget target;
    hosted::BudgetAllocator alloc(16u << 20);
    std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {};
    guest::CreateRequest req{};
    req.size = 1u << 20;
    const guest::CreateOption opt{"cluster_size", cluster_size};
    if (cluster_size != nullptr) {
        req.options = &opt;
        req.option_count = 1;
    }
    req.file_name = "t.qcow2";
    req.random = random;
    req.qemu_version = 100000;
    req.allocator = &alloc;
    req.codecs = &hosted::host_codecs();
    guest::ImageWriter* w = nullptr;
    REQUIRE(qcow2::create_writer(req, target, &w) == Status::Ok);
    REQUIRE(w->finish() == Status::Ok);
    w->close();
    return target.image_output().bytes();
}

std::vector<std::uint8_t> args(const std::string& name, const std::string& fmt, bool detach = false) {
    guest::SetBackingArgs a{};
    a.flags = detach ? guest::SET_BACKING_DETACH : 0u;
    a.name_len = static_cast<std::uint32_t>(name.size());
    a.format_len = static_cast<std::uint32_t>(fmt.size());
    std::vector<std::uint8_t> out(sizeof a);
    std::memcpy(out.data(), &a, sizeof a);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), fmt.begin(), fmt.end());
    return out;
}

Status run(File& f, Host& host, const std::vector<std::uint8_t>& a) {
    hosted::BudgetAllocator alloc(16u << 20);
    std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {};
    guest::EditRequest req{};
    req.command = guest::EditCommand::SetBacking;
    req.image = &f;
    req.image_length = f.size();
    req.writable = true;
    req.args = a.data();
    req.args_len = a.size();
    req.random = random;
    req.qemu_version = 100000;
    req.allocator = &alloc;
    req.codecs = &hosted::host_codecs();
    return qcow2::edit(req, host);
}

std::string backing_name(const std::vector<std::uint8_t>& img) {
    const std::uint64_t off = qcow2::load_be64(img.data() + 8);
    const std::uint32_t len = qcow2::load_be32(img.data() + 16);
    return off == 0 ? std::string() : std::string(reinterpret_cast<const char*>(img.data() + off), len);
}

} // namespace

TEST_CASE("qcow2 set backing: name and format written, a longer name relocated, detach") {
    File f(new_image());
    Host host;
    REQUIRE(run(f, host, args("b.qcow2", "qcow2")) == Status::Ok);
    CHECK(backing_name(f.bytes_) == "b.qcow2");
    CHECK(f.writes == 1);
    CHECK(host.flushes == 1);
    // The backing format extension comes first after the 112-byte header.
    CHECK(qcow2::load_be32(f.bytes_.data() + 112) == 0xe2792aca);
    const std::string longer(700, 'x');
    REQUIRE(run(f, host, args(longer, "raw")) == Status::Ok);
    CHECK(backing_name(f.bytes_) == longer);
    REQUIRE(run(f, host, args("", "", true)) == Status::Ok);
    CHECK(backing_name(f.bytes_).empty());
    CHECK(qcow2::load_be32(f.bytes_.data() + 112) != 0xe2792aca); // no format extension left
}

TEST_CASE("qcow2 set backing: qemu's ENOSPC and EINVAL, nothing written") {
    File small(new_image("512"));
    const auto before = small.bytes_;
    Host host;
    CHECK(run(small, host, args(std::string(600, 'n'), "qcow2")) == Status::TooLarge);
    CHECK(host.why == "No space left in the file header");
    CHECK(small.bytes_ == before);
    File f(new_image());
    CHECK(run(f, host, args(std::string(1024, 'n'), "qcow2")) == Status::Invalid);
    CHECK(host.why == "Invalid argument");
    CHECK(run(f, host, args(std::string("a\0b", 3), "qcow2")) == Status::Invalid);
    std::vector<std::uint8_t> cut = args("b.qcow2", "qcow2");
    cut.resize(cut.size() - 3);
    CHECK(run(f, host, cut) == Status::Invalid);
    CHECK(f.writes == 0);
}

TEST_CASE("qcow2 set backing: hostile headers are refused before anything is written") {
    Host host;
    {
        auto img = new_image();
        qcow2::store_be32(img.data() + 100, 1u << 20); // header_length past the cluster
        File f(img);
        CHECK(run(f, host, args("b", "raw")) != Status::Ok);
        CHECK(f.writes == 0);
    }
    {
        auto img = new_image();
        qcow2::store_be32(img.data() + 112 + 4, 0x7fffffff); // an extension longer than cluster 0
        File f(img);
        CHECK(run(f, host, args("b", "raw")) != Status::Ok);
        CHECK(f.writes == 0);
    }
    {
        auto img = new_image();
        qcow2::store_be64(img.data() + 8, 1u << 30); // backing name offset past the cluster
        qcow2::store_be32(img.data() + 16, 4);
        File f(img);
        CHECK(run(f, host, args("b", "raw")) != Status::Ok);
        CHECK(f.writes == 0);
    }
    {
        auto img = new_image();
        img[72 + 7] |= 2; // the corrupt bit
        File f(img);
        CHECK(run(f, host, args("b", "raw")) == Status::Corrupt);
        CHECK(f.writes == 0);
    }
}
