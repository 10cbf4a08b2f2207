// Test support for vmdk create: re-reads a MemoryTarget's files with the plugin's own info(),
// both passes, without materialising the (possibly huge, sparse) files.
#pragma once

#include "hosted_create.h"
#include "hosted_support.h"
#include "vmdk_format.h"

#include <cstdint>
#include <vector>

namespace vmdk_create_test {

// A read-only view of a MemoryOutput at its logical length (unwritten bytes read as zero).
class OutputView final : public instar::guest::BlockDevice {
public:
    explicit OutputView(instar::hosted::MemoryOutput& o) : o_(o) {}
    std::uint64_t size() const override { return o_.length(); }
    instar::guest::Status read(std::uint64_t offset, void* buf, std::size_t len) override {
        return o_.read(offset, buf, len);
    }
    instar::guest::Status write(std::uint64_t, const void*, std::size_t) override {
        return instar::guest::Status::IoError;
    }

private:
    instar::hosted::MemoryOutput& o_;
};

// info() on the created image; a descriptor naming extents gets the added files, in order.
inline instar::hosted::HostedInfo reparse(instar::hosted::MemoryTarget& t, std::size_t budget = 16u << 20) {
    OutputView image(t.image_output());
    auto r = instar::hosted::run_info(&instar::vmdk::info, image, {}, budget);
    if (r.status != instar::guest::Status::NeedFiles)
        return r;
    std::vector<OutputView> views;
    views.reserve(t.files().size());
    for (const auto& f : t.files())
        views.emplace_back(*f.second);
    std::vector<instar::guest::BlockDevice*> ptrs;
    for (auto& v : views)
        ptrs.push_back(&v);
    if (ptrs.size() != r.info.files.size())
        ptrs.resize(r.info.files.size(), &image); // a mismatch makes info() fail, as it should
    return instar::hosted::run_info(&instar::vmdk::info, image, ptrs, budget);
}

} // namespace vmdk_create_test
