// Fuzz target: `snapshot -c`, `-a` and `-d` (qcow2_edit_snapshot.cpp over qcow2_inplace.h) on a
// hostile image, then commit's emptying of it (qcow2_edit_empty.cpp; with the snapshot the first
// step made, persistent bitmaps or an external data file the header names,
// qcow2_edit_empty_discard.cpp: the emptying is given a data file of DATA_FILE_BYTES to discard in). The input is the image; the actions run one after the
// other on it, the snapshot ones with names derived from the input. They must never crash, loop, outgrow the arena budget or
// the file's growth budget, whatever the header, refcount tables, L1/L2 tables and snapshot
// table say.
#include "fuzz_edit_host.h"
#include "hosted_create.h"
#include "hosted_read.h"
#include "hosted_support.h"
#include "qcow2_edit.h"

#include <instar/guest/edit_snapshot.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

using instar::guest::Status;

constexpr std::uint64_t OUTPUT_BUDGET = 64u << 20; // the image may grow by this much at most
constexpr std::size_t MEMORY_BUDGET = 16u << 20;   // the guest arena stand-in
constexpr std::uint64_t DATA_FILE_BYTES = 1u << 20; // the data file handed to the emptying

class Host final : public instar::hosted::FuzzEditHost {
public:
    using FuzzEditHost::FuzzEditHost;
    Status data(std::uint32_t kind, const void*, std::size_t len) override {
        if (kind != instar::guest::SNAPSHOT_REC_RESULT || len != sizeof(instar::guest::SnapshotResult))
            std::abort();
        return Status::Ok;
    }
};

void run(instar::hosted::MemoryOutput& file, std::uint32_t action, const char* id, const char* name,
         instar::guest::EditCommand command = instar::guest::EditCommand::Snapshot,
         instar::hosted::MemoryOutput* data_file = nullptr, const std::uint64_t* backing_size = nullptr) {
    instar::hosted::BudgetAllocator alloc(MEMORY_BUDGET);
    Host host(file);
    instar::guest::SnapshotArgs a{};
    a.action = action;
    a.id_len = static_cast<std::uint32_t>(std::strlen(id));
    a.name_len = static_cast<std::uint32_t>(std::strlen(name));
    if (backing_size != nullptr) {
        a.flags = instar::guest::SNAPSHOT_HAS_BACKING;
        a.backing_size = *backing_size;
    }
    std::vector<std::uint8_t> args(sizeof a);
    std::memcpy(args.data(), &a, sizeof a);
    args.insert(args.end(), id, id + a.id_len);
    args.insert(args.end(), name, name + a.name_len);
    instar::guest::EditRequest req = instar::hosted::fuzz_edit_request(command, file, alloc);
    instar::guest::BlockDevice* files[1] = {data_file};
    const std::uint64_t lengths[1] = {data_file != nullptr ? data_file->length() : 0};
    if (data_file != nullptr) {
        req.files = files;
        req.file_lengths = lengths;
        req.file_count = 1;
    }
    req.args = args.data();
    req.args_len = args.size();
    (void)instar::qcow2::edit(req, host);
    if (alloc.peak() > MEMORY_BUDGET)
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    instar::hosted::MemoryOutput file(OUTPUT_BUDGET);
    if (size > 0 && file.write(0, data, size) != Status::Ok)
        return 0;
    const char* key = size > 0 && (data[size - 1] & 1) ? "1" : "s";
    run(file, instar::guest::SNAPSHOT_ACTION_CREATE, "", "s");
    run(file, instar::guest::SNAPSHOT_ACTION_APPLY, "", key);
    // -a told the backing image's size (an overlay's disk grown to a larger snapshot's is zeroed
    // where the backing reaches): a size from the input's first bytes.
    std::uint64_t backing = 0;
    for (std::size_t i = 0; i < 8 && i < size; ++i)
        backing = backing << 8 | data[i];
    backing &= (std::uint64_t{1} << 40) - 1;
    run(file, instar::guest::SNAPSHOT_ACTION_APPLY, "", key, instar::guest::EditCommand::Snapshot, nullptr, &backing);
    run(file, instar::guest::SNAPSHOT_ACTION_DELETE, "1", "s");
    run(file, instar::guest::SNAPSHOT_ACTION_CREATE, "", "e");
    instar::hosted::MemoryOutput data_file(DATA_FILE_BYTES);
    std::vector<std::uint8_t> pattern(DATA_FILE_BYTES, 0x5a);
    if (data_file.write(0, pattern.data(), pattern.size()) != Status::Ok)
        std::abort();
    run(file, 0, "", "", instar::guest::EditCommand::MakeEmpty, &data_file);
    return 0;
}
