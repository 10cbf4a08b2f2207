// The EditHost of fuzz targets that run an in-place edit (EditCommand) over a MemoryOutput: lengths
// past the host's output bound refused, flushes and text accepted, no further files, a reason longer
// than a line's bound aborts. A target checks its command's data records by overriding data().
#pragma once

#include "hosted_create.h"
#include "hosted_read.h"

#include <instar/guest/create_api.h>
#include <instar/guest/edit_api.h>
#include <instar/guest_abi.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace instar::hosted {

class FuzzEditHost : public guest::EditHost {
public:
    static constexpr std::size_t REASON_MAX = 4096; // far above any refusal text a module words

    explicit FuzzEditHost(MemoryOutput& out) : out_(out) {}
    guest::Status set_length(guest::BlockDevice&, std::uint64_t n, guest::Prealloc) override {
        if (n > INSTAR_MAX_OUTPUT_SIZE) // the real host's bound on an output
            return guest::Status::Invalid;
        out_.set_length(n);
        return guest::Status::Ok;
    }
    guest::Status flush(guest::BlockDevice&) override { return guest::Status::Ok; }
    guest::Status add_file(const char*, guest::BlockDevice**) override { return guest::Status::Unsupported; }
    guest::Status out(const char*, std::size_t) override { return guest::Status::Ok; }
    guest::Status err(const char*, std::size_t) override { return guest::Status::Ok; }
    void reason(const char*, std::size_t len) override {
        if (len > REASON_MAX)
            std::abort();
    }
    guest::Status data(std::uint32_t, const void*, std::size_t) override { return guest::Status::Ok; }
    void progress(std::uint64_t, std::uint64_t) override {}

protected:
    ~FuzzEditHost() = default;

private:
    MemoryOutput& out_;
};

// The request an in-place fuzz target sends over `file`: writable, a fixed time and randomness, the
// 10.0 profile, the host's codecs; the caller adds its arguments and any further files.
inline guest::EditRequest fuzz_edit_request(guest::EditCommand command, MemoryOutput& file, guest::Allocator& alloc) {
    static const std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {};
    guest::EditRequest req{};
    req.command = command;
    req.image = &file;
    req.image_length = file.length();
    req.writable = true;
    req.unix_time = 1700000000;
    req.random = random;
    req.qemu_version = 100002;
    req.allocator = &alloc;
    req.codecs = &host_codecs();
    return req;
}

} // namespace instar::hosted
