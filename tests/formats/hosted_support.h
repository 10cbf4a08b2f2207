// Test support: run a format's guest-half code hosted (outside the VM) on files or buffers, for unit
// tests, differential checks and fuzz targets. Never used by the instar binary itself.
#pragma once

#include "info/image_info.h"
#include "util/expected.h"

#include "instar/guest/info_sink.h"

#include <boost/json/value.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace instar::hosted {

using guest::Allocator;
using guest::BlockDevice;
using guest::Status;

// A read-only device over an in-memory image.
class MemoryDevice final : public BlockDevice {
public:
    explicit MemoryDevice(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
    std::uint64_t size() const override { return bytes_.size(); }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override;
    Status write(std::uint64_t, const void*, std::size_t) override { return Status::IoError; }
    std::uint64_t reads() const { return reads_; }

private:
    std::vector<std::uint8_t> bytes_;
    std::uint64_t reads_ = 0;
};

// A read-only device over a file (pread).
class FileDevice final : public BlockDevice {
public:
    explicit FileDevice(const std::string& path);
    ~FileDevice();
    bool ok() const { return fd_ >= 0; }
    std::uint64_t size() const override { return size_; }
    Status read(std::uint64_t offset, void* buf, std::size_t len) override;
    Status write(std::uint64_t, const void*, std::size_t) override { return Status::IoError; }
    // SEEK_DATA/SEEK_HOLE, as the host serves it to the guest.
    Status allocation(std::uint64_t offset, bool* data, std::uint64_t* length) override;

private:
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

// malloc with a byte budget, like the guest arena (returns nullptr once the budget is spent). What
// is still allocated when it goes is freed then, as the guest's arena goes with its operation (some
// format code allocates per operation and never frees; LeakSanitizer would call that a leak).
class BudgetAllocator final : public Allocator {
public:
    explicit BudgetAllocator(std::size_t budget) : left_(budget) {}
    ~BudgetAllocator();
    BudgetAllocator(const BudgetAllocator&) = delete;
    BudgetAllocator& operator=(const BudgetAllocator&) = delete;
    void* allocate(std::size_t size, std::size_t align) override;
    void deallocate(void* p, std::size_t size) override;
    std::size_t peak() const { return peak_; }

private:
    std::unordered_set<void*> live_;
    std::size_t left_;
    std::size_t used_ = 0;
    std::size_t peak_ = 0;
};

using ProbeFn = Status (*)(BlockDevice&, bool*);
using InfoFn = Status (*)(const guest::InfoRequest&, guest::InfoSink&);

struct HostedInfo {
    Status status = Status::Ok;
    ImageInfo info; // decoded (only when the token stream decoded)
    std::string decode_error;
};

// Runs `info` the way the guest would: through an InfoEncoder with record-sized flushes, then the
// host decoder. `files` are the second-pass devices (may be empty).
HostedInfo run_info(InfoFn info, BlockDevice& image, const std::vector<BlockDevice*>& files = {},
                    std::size_t memory_budget = 64u << 20, std::uint32_t qemu_version = 100000);

// A plain JSON view of an ImageInfo for tests (not qemu's layout): format, virtual-size,
// cluster-size, encrypted, dirty-flag, backing-filename-format, files [{role, name}], snapshots,
// format-specific {type, data}, reason (when the format code gave one).
boost::json::value debug_json(const ImageInfo& info);

// main() for a per-format hosted tool: `TOOL FILE [REFERENCED_FILE...]` prints
// {"probe": bool, "status": N, "info": debug_json} (or "decode-error").
int hosted_info_main(int argc, char** argv, ProbeFn probe, InfoFn info);

} // namespace instar::hosted
