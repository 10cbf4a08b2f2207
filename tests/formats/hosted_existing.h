// An existing image file for hosted tests of convert -n writers: a growable in-memory output whose
// size is its length, as op_convert presents the target (reads past the end fail).
#pragma once

#include "hosted_create.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace instar::hosted {

class ExistingFile final : public guest::BlockDevice {
public:
    // Fails (returns false from ok()) only when the bytes do not fit `budget`.
    ExistingFile(const std::uint8_t* data, std::size_t size, std::size_t budget = std::size_t{64} << 20)
        : out_(budget), ok_(size == 0 || out_.write(0, data, size) == guest::Status::Ok) {}
    explicit ExistingFile(const std::vector<std::uint8_t>& bytes) : ExistingFile(bytes.data(), bytes.size()) {}

    bool ok() const { return ok_; }
    std::uint64_t size() const override { return out_.length(); }
    guest::Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        if (offset > size() || len > size() - offset)
            return guest::Status::IoError;
        return out_.read(offset, buf, len);
    }
    guest::Status write(std::uint64_t offset, const void* buf, std::size_t len) override {
        return out_.write(offset, buf, len);
    }
    std::vector<std::uint8_t> bytes() const { return out_.bytes(); }

private:
    MemoryOutput out_;
    bool ok_;
};

} // namespace instar::hosted
