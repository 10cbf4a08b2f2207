// Fuzz target: the log replay qemu's read-write open does (EditCommand::ReplayLog: vhdx_log_search,
// then vhdx_log_replay) over a hostile VHDX held in memory. It must never crash, loop, or exceed its
// memory or output bounds (VHDX_LOG_SCAN_BUDGET, VHDX_LOG_REPLAY_ZERO_MAX); a replay that succeeded
// leaves nothing to replay (a second run reports no replay), as a later open of the file expects.
#include "fuzz_edit_host.h"
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "vhdx_edit.h"

#include <instar/guest/create_api.h>
#include <instar/guest/edit_api.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

using instar::guest::Status;

constexpr std::uint64_t OUTPUT_BUDGET = 64u << 20; // real bytes the image may hold at most
constexpr std::size_t MEMORY_BUDGET = 8u << 20;    // the guest arena stand-in

class Host final : public instar::hosted::FuzzEditHost {
public:
    using FuzzEditHost::FuzzEditHost;
    Status data(std::uint32_t kind, const void*, std::size_t len) override {
        if (kind != instar::guest::EDIT_DATA_REPLAYED || len != 0 || replayed)
            std::abort(); // one record, once
        replayed = true;
        return Status::Ok;
    }

    bool replayed = false;
};

Status replay(instar::hosted::MemoryOutput& file, Host& host) {
    instar::hosted::BudgetAllocator alloc(MEMORY_BUDGET);
    const instar::guest::EditRequest req =
        instar::hosted::fuzz_edit_request(instar::guest::EditCommand::ReplayLog, file, alloc);
    const Status st = instar::vhdx::edit(req, host);
    if (alloc.peak() > MEMORY_BUDGET)
        std::abort();
    return st;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > OUTPUT_BUDGET)
        return 0;
    instar::hosted::MemoryOutput file(OUTPUT_BUDGET);
    if (size > 0 && file.write(0, data, size) != Status::Ok)
        std::abort();
    Host first(file);
    if (replay(file, first) != Status::Ok || !first.replayed)
        return 0;
    // The log is replayed and its GUID cleared: the next open finds nothing to replay.
    Host second(file);
    if (replay(file, second) != Status::Ok || second.replayed)
        std::abort();
    return 0;
}
