// Test support for format emitters: run a format's create() hosted, into memory (unit tests, fuzz
// targets) or into real files (the hosted create tool the matrix checks use against qemu-img).
// Never used by the instar binary itself.
#pragma once

#include "hosted_support.h"

#include "instar/guest/create_api.h"
#include "instar/guest_abi.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace instar::hosted {

using guest::CreateFn;
using guest::CreateRequest;
using guest::CreateTarget;
using guest::Prealloc;

// A growable in-memory output. Holds the bytes written (up to a budget); the logical length may be
// far larger (set_length on a 1 TiB image costs nothing); unwritten bytes read as zero.
class MemoryOutput final : public BlockDevice {
public:
    explicit MemoryOutput(std::uint64_t budget) : budget_(budget) {}
    std::uint64_t size() const override { return INSTAR_MAX_OUTPUT_SIZE; }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override;
    Status write(std::uint64_t offset, const void* buf, std::size_t len) override;
    std::uint64_t length() const { return length_; }
    void set_length(std::uint64_t n);
    std::uint64_t bytes_written() const { return written_; }
    // The whole file as bytes (the logical length must fit in memory).
    std::vector<std::uint8_t> bytes() const;

private:
    std::uint64_t budget_;
    std::vector<std::uint8_t> data_; // [0, data_.size()) materialised
    std::uint64_t length_ = 0;
    std::uint64_t written_ = 0;
};

// A CreateTarget over MemoryOutputs.
class MemoryTarget final : public CreateTarget {
public:
    explicit MemoryTarget(std::uint64_t budget = 256u << 20) : budget_(budget), image_(budget), data_(budget) {}
    BlockDevice& image() override { return image_; }
    Status set_length(BlockDevice& file, std::uint64_t length, Prealloc mode) override;
    Status add_file(const char* name, BlockDevice** out) override;
    void reason(const char* text, std::size_t len) override { reason_.assign(text, len); }
    void resolved_unit_size(std::uint64_t bytes) override { unit_ = bytes; }

    MemoryOutput& image_output() { return image_; }
    // A qcow2 external data file the "host" made (CreateParams::data_file points here to use it).
    MemoryOutput& data_output() { return data_; }
    const std::vector<std::pair<std::string, std::unique_ptr<MemoryOutput>>>& files() const { return files_; }
    const std::string& reason_text() const { return reason_; }
    std::uint64_t unit() const { return unit_; }
    std::vector<Prealloc> fills; // the modes set_length was called with, in order

private:
    std::uint64_t budget_;
    MemoryOutput image_;
    MemoryOutput data_;
    std::vector<std::pair<std::string, std::unique_ptr<MemoryOutput>>> files_;
    std::string reason_;
    std::uint64_t unit_ = 0;
};

// The inputs of one hosted create, in test-friendly form.
struct CreateParams {
    std::uint64_t size = 0;
    std::vector<std::pair<std::string, std::string>> options; // normalised, as the host passes them
    std::string file_name = "test.img";
    std::string backing_file; // empty: none
    std::string backing_fmt;  // empty: none
    BlockDevice* backing = nullptr;
    std::uint64_t backing_size = 0;
    BlockDevice* data_file = nullptr; // the external data file device (CreateRequest::data_file)
    std::int64_t unix_time = 1700000000;
    std::uint8_t random[guest::CREATE_RANDOM_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                                       17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    std::uint32_t qemu_version = 100000;
    std::size_t memory_budget = 64u << 20; // the guest arena stand-in
};

// Runs `create` with `p` into `target`; returns its Status.
Status run_create(CreateFn create, const CreateParams& p, CreateTarget& target);

// main() for a per-format hosted create tool, used by the create matrix checks:
//   TOOL OUT_PATH SIZE [KEY=VALUE...] [--backing FILE] [--backing-fmt FMT] [--backing-size N]
// writes OUT_PATH (and any added files beside it) and prints
// {"status": N, "reason": "...", "unit": N, "files": [...]}.
int hosted_create_main(int argc, char** argv, CreateFn create);

} // namespace instar::hosted
