// The sandbox end to end: a no-op boot, and hostile guests proving each limit ends the run cleanly
// while the host keeps working.
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "hostile_attacks.h"
#include "vmm_test_support.h"

using namespace instar::vmm;
using vmm_test::pattern;
using vmm_test::TempFile;

namespace {

Outcome<RunResult> attack(Attack a, std::span<const Device> devices, SandboxConfig config = {},
                          std::vector<std::uint8_t> extra = {}) {
    std::vector<std::uint8_t> arg{static_cast<std::uint8_t>(a)};
    arg.insert(arg.end(), extra.begin(), extra.end());
    const std::string modules[] = {vmm_test::hostile_module()};
    return run(config, devices, modules, INSTAR_OP_MODULE_RUN, arg);
}

// Runs an attack on read-only device `f` with the host's reader thread asked for.
Outcome<RunResult> read_ahead_attack(Attack a, const TempFile& f, std::uint64_t size) {
    const Device dev{f.fd(), size, false};
    SandboxConfig config;
    config.read_ahead = true;
    return attack(a, {&dev, 1}, config);
}

// Runs an attack on a 1 MiB read-only device; expects an error of `kind` whose message contains
// `text`; then proves the host is unharmed: the file is unchanged and a fresh guest still runs.
void expect_failure(Attack a, ErrorKind kind, const std::string& text) {
    const auto data = pattern(1 << 20);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    auto r = attack(a, {&dev, 1});
    REQUIRE_FALSE(r.ok());
    INFO("message: ", r.error().message);
    CHECK(r.error().kind == kind);
    CHECK(r.error().message.find(text) != std::string::npos);
    CHECK(f.contents() == data);
    auto again = run(SandboxConfig{}, {&dev, 1}, {}, INSTAR_OP_NOP, {});
    REQUIRE(again.ok());
    CHECK(again.value().exit_status == 0);
}

// Runs an attack on a 1 MiB read-only device holding `data`; expects it to run to exit status 0.
RunResult expect_success(Attack a, const std::vector<unsigned char>& data) {
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    auto r = attack(a, {&dev, 1});
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    CHECK(r.value().exit_status == 0);
    return std::move(r.value());
}

} // namespace

TEST_SUITE("sandbox") {

// The rule for a read-only run that ran out of guest RAM (no KVM needed): the cap, then 3 GiB when
// the user named no cap, each with huge pages; then nothing.
TEST_CASE("roomier: the cap, then the largest guest unless a cap was given") {
    SandboxConfig small;
    small.guest_memory = 16ull << 20;
    small.huge_pages = false;
    auto cap = roomier(small);
    REQUIRE(cap.has_value());
    CHECK(cap->guest_memory == 0);
    CHECK(cap->huge_pages);
    CHECK(guest_ram(*cap) == DEFAULT_GUEST_MEMORY);
    auto largest = roomier(*cap);
    REQUIRE(largest.has_value());
    CHECK(guest_ram(*largest) == INSTAR_MAX_GUEST_MEMORY);
    CHECK_FALSE(roomier(*largest).has_value());
    SandboxConfig given = small;
    given.max_guest_memory = 64ull << 20;
    given.max_guest_memory_given = true;
    auto at_cap = roomier(given);
    REQUIRE(at_cap.has_value());
    CHECK(guest_ram(*at_cap) == (64ull << 20));
    CHECK_FALSE(roomier(*at_cap).has_value()); // the user's cap is the last word
}

TEST_CASE("a no-op guest boots and exits 0") {
    if (!vmm_test::need_kvm()) return;
    auto r = run(SandboxConfig{}, {}, {}, INSTAR_OP_NOP, {});
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    CHECK(r.value().exit_status == 0);
    CHECK(r.value().records.empty());
}

TEST_CASE("bad configurations are refused before anything boots") {
    if (!vmm_test::need_kvm()) return;
    SandboxConfig small;
    small.max_guest_memory = 8ull << 20;
    auto r = run(small, {}, {}, INSTAR_OP_NOP, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::Config);
    const Device two[] = {{0, 1, true}, {1, 1, true}};
    r = run(SandboxConfig{}, two, {}, INSTAR_OP_NOP, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("at most one device may be writable") != std::string::npos);
    SandboxConfig missing;
    missing.runtime_path = "/nonexistent/runtime.elf";
    r = run(missing, {}, {}, INSTAR_OP_NOP, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::GuestImage);
}

TEST_CASE("added files need a plain name, and the operation decides what is created") {
    if (!vmm_test::need_kvm()) return;
    struct Recorder final : OutputFiles {
        std::vector<std::string> names;
        std::optional<Device> add(const std::string& name, std::string&) override {
            names.push_back(name);
            return std::nullopt;
        }
    } recorder;
    const auto data = pattern(4096);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    SandboxConfig config;
    config.outputs = &recorder;
    auto r = attack(Attack::AddFileWithSlash, {&dev, 1}, config);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("not a plain file name") != std::string::npos);
    CHECK(recorder.names.empty()); // refused before the operation was asked
}

TEST_CASE("a backing file asked for mid-run: only where allowed, only read-only") {
    if (!vmm_test::need_kvm()) return;
    // The operation's side: answers every request with a writable device over the same file, which
    // the server must hand the guest read-only.
    struct Chain final : OutputFiles {
        int fd = -1;
        std::uint64_t size = 0;
        std::vector<std::uint32_t> asked;
        std::optional<Device> add(const std::string&, std::string&) override { return std::nullopt; }
        std::optional<NextImage> next_image(const std::vector<Record>&, std::uint32_t image) override {
            asked.push_back(image);
            return NextImage{Device{fd, size, true}, 0, 0};
        }
    } chain;
    const auto data = pattern(4096);
    TempFile f(data);
    chain.fd = f.fd();
    chain.size = data.size();
    const Device dev{f.fd(), data.size(), false};
    expect_failure(Attack::NextImageNotAllowed, ErrorKind::GuestBadRequest,
                   "open a backing file, which this operation does not allow");
    SandboxConfig config;
    config.outputs = &chain;
    auto bad = attack(Attack::NextImageBadImage, {&dev, 1}, config);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message.find("open the backing file of image 7") != std::string::npos);
    CHECK(chain.asked.empty()); // refused before the operation was asked
    auto write = attack(Attack::NextImageThenWrite, {&dev, 1}, config);
    REQUIRE_FALSE(write.ok());
    CHECK(write.error().message.find("write to read-only device 1") != std::string::npos);
    CHECK(chain.asked == std::vector<std::uint32_t>{0});
}

// Runs an attack that never ends by itself on a 300 ms budget: the watchdog must stop it, on time.
void expect_stopped_near_budget(Attack a, const char* what) {
    const auto data = pattern(4096);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    SandboxConfig cfg;
    cfg.timeout = std::chrono::milliseconds(300);
    const auto start = std::chrono::steady_clock::now();
    auto r = attack(a, {&dev, 1}, cfg);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::GuestTimeout);
    CHECK(ms >= 300);
    CHECK(ms < 800);
    MESSAGE(std::string(what), " stopped after ", ms, " ms (budget 300 ms)");
}

TEST_CASE("an endless loop is stopped near its budget") {
    if (!vmm_test::need_kvm()) return;
    expect_stopped_near_budget(Attack::EndlessLoop, "endless loop");
    CHECK(run(SandboxConfig{}, {}, {}, INSTAR_OP_NOP, {}).ok());
}

TEST_CASE("an endless stream of hypercalls is stopped near its budget") {
    if (!vmm_test::need_kvm()) return;
    expect_stopped_near_budget(Attack::HypercallLoop, "hypercall loop");
}

TEST_CASE("bad requests end the guest with a clear error") {
    if (!vmm_test::need_kvm()) return;
    expect_failure(Attack::ReadPastEnd, ErrorKind::GuestBadRequest, "read past the end of device 0");
    expect_failure(Attack::WriteReadOnly, ErrorKind::GuestBadRequest, "write to read-only device 0");
    expect_failure(Attack::BufferOutsideRam, ErrorKind::GuestBadRequest, "outside guest RAM");
    expect_failure(Attack::BufferWrapsAround, ErrorKind::GuestBadRequest, "read past the end of device 0");
    expect_failure(Attack::NoSuchDevice, ErrorKind::GuestBadRequest, "device 7, which does not exist");
    expect_failure(Attack::UnknownHypercall, ErrorKind::GuestBadRequest, "unknown hypercall 99");
    expect_failure(Attack::SetLengthNotOutput, ErrorKind::GuestBadRequest, "which is not an output");
    expect_failure(Attack::AddFileNotAllowed, ErrorKind::GuestBadRequest, "which this operation does not allow");
    expect_failure(Attack::ForeignPort, ErrorKind::GuestFault, "#GP general protection"); // no ports at CPL 3
    expect_failure(Attack::Halt, ErrorKind::GuestFault, "#GP general protection"); // hlt is privileged
}

TEST_CASE("oversized records and log lines stop the guest and discard its output") {
    if (!vmm_test::need_kvm()) return;
    expect_failure(Attack::OversizedRecord, ErrorKind::GuestBadRecord, "oversized record (65537 bytes");
    expect_failure(Attack::OversizedLogLine, ErrorKind::GuestBadRecord, "log line of 4096 bytes");
}

TEST_CASE("a log flood is bounded and sanitised") {
    if (!vmm_test::need_kvm()) return;
    const Device dev{0, 0, false};
    auto r = attack(Attack::LogFlood, {&dev, 1});
    REQUIRE(r.ok());
    CHECK(r.value().log.size() == INSTAR_MAX_LOG_LINES);
    CHECK(r.value().dropped_log_lines == 1000 - INSTAR_MAX_LOG_LINES);
    CHECK(r.value().log[0] == "flood?[31m");
}

TEST_CASE("CPU faults are reported with vector and address") {
    if (!vmm_test::need_kvm()) return;
    expect_failure(Attack::DivideByZero, ErrorKind::GuestFault, "#DE divide error at rip 0x");
    expect_failure(Attack::NullPointer, ErrorKind::GuestFault, "#PF page fault at rip 0x");
    expect_failure(Attack::NullPointer, ErrorKind::GuestFault, "(address 0x8,");
    expect_failure(Attack::PointerPastRam, ErrorKind::GuestFault, "(address 0x1000000000,");
    // The guard page: 0xF000 in the VM, INSTAR_PROC_STACK_GUARD in the process sandbox.
    expect_failure(Attack::StackOverflow, ErrorKind::GuestFault, vmm_test::process_mode() ? "(address 0x13" : "(address 0xf");
}

TEST_CASE("a system call from guest code ends the guest and opens nothing") {
    if (!vmm_test::need_kvm()) return;
    const std::string path = "/tmp/instar-hostile-syscall-" + std::to_string(::getpid());
    ::unlink(path.c_str());
    std::vector<std::uint8_t> name(path.begin(), path.end());
    name.push_back(0);
    const auto data = pattern(4096);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    auto r = attack(Attack::RawSyscall, {&dev, 1}, {}, name);
    REQUIRE_FALSE(r.ok());
    INFO("message: ", r.error().message);
    CHECK(r.error().kind == ErrorKind::GuestFault);
    // KVM: syscall jumps to the unset LSTAR (0), which faults; the process: seccomp kills it.
    CHECK(r.error().message.find(vmm_test::process_mode() ? "forbids (seccomp strict)" : "guest CPU exception") !=
          std::string::npos);
    CHECK(::access(path.c_str(), F_OK) != 0);
    ::unlink(path.c_str());
}

TEST_CASE("a malformed channel message ends a process-sandbox guest") {
    if (!vmm_test::process_mode()) return; // the VM has no channel
    expect_failure(Attack::ShortMessage, ErrorKind::GuestBadRequest, "a hypercall message of 7 bytes");
}

TEST_CASE("a process-sandbox guest that does not spin still gets every answer") {
    if (!vmm_test::process_mode()) return; // the VM answers by resuming the vCPU
    const auto data = pattern(1 << 20);
    const RunResult r = expect_success(Attack::SleepForAnswers, data);
    REQUIRE(r.records.size() == 1);
    std::uint64_t want = 0;
    for (int i = 0; i < 64; ++i) {
        for (std::size_t w = 0; w < 4096 / 8; ++w) {
            std::uint64_t v;
            std::memcpy(&v, data.data() + w * 8, 8);
            want ^= v + static_cast<std::uint64_t>(i);
        }
    }
    std::uint64_t got = 0;
    REQUIRE(r.records[0].data.size() == sizeof got);
    std::memcpy(&got, r.records[0].data.data(), sizeof got);
    CHECK(got == want);
}

TEST_CASE("a process-sandbox guest that never reads its answers cannot block the host") {
    if (!vmm_test::process_mode()) return;
    // Before, the host's blocking send would have waited for ever (the watchdog runs between calls).
    expect_failure(Attack::UnreadAnswers, ErrorKind::GuestBadRequest, "it does not read its answers");
}

TEST_CASE("reads ahead: answered at once where the host can, complete when settled") {
    if (!vmm_test::need_kvm()) return;
    const auto data = pattern(1 << 20);
    const RunResult r = expect_success(Attack::ReadAhead, data);
    REQUIRE(r.records.size() == 2);
    std::int64_t out[2];
    REQUIRE(r.records[0].data.size() == sizeof out);
    std::memcpy(out, r.records[0].data.data(), sizeof out);
    // The process sandbox answers each at once and reads it before it takes the next call; the
    // VM's vCPU thread is the server, so it always reads at once.
    CHECK(out[0] == (vmm_test::process_mode() ? 70 : 0));
    CHECK(out[1] == 0);
    CHECK(r.records[1].data == std::vector<std::uint8_t>(data.begin(), data.begin() + 70 * 64));
}

TEST_CASE("reads ahead on a host reader thread when asked (both sandboxes), complete when settled") {
    if (!vmm_test::need_kvm()) return;
    const auto data = pattern(1 << 20);
    TempFile f(data);
    auto run = read_ahead_attack(Attack::ReadAhead, f, data.size());
    REQUIRE_MESSAGE(run.ok(), (run.ok() ? "" : run.error().message));
    const RunResult& r = run.value();
    REQUIRE(r.records.size() == 2);
    std::int64_t out[2];
    REQUIRE(r.records[0].data.size() == sizeof out);
    std::memcpy(out, r.records[0].data.data(), sizeof out);
    // The reader thread takes at most READ_AHEAD_MAX_JOBS unsettled reads (64 of the 70, more if it
    // finished some before the last were asked); the rest are read at once.
    CHECK(out[0] >= 64);
    CHECK(out[0] <= 70);
    CHECK(out[1] == 0);
    CHECK(r.records[1].data == std::vector<std::uint8_t>(data.begin(), data.begin() + 70 * 64));
}

TEST_CASE("a guest that exits with reads ahead unsettled ends its run cleanly") {
    if (!vmm_test::need_kvm()) return;
    const auto data = pattern(1 << 20);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    for (int i = 0; i < 20; ++i) { // the reads race the exit: some runs drop queued ones, some not
        auto r = read_ahead_attack(Attack::ReadAheadUnsettled, f, data.size());
        REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
        CHECK(r.value().exit_status == 0);
    }
    CHECK(f.contents() == data);
    auto again = run(SandboxConfig{}, {&dev, 1}, {}, INSTAR_OP_NOP, {});
    REQUIRE(again.ok());
    CHECK(again.value().exit_status == 0);
}

TEST_CASE("allocation runs: one call answers the runs of a sparse file that follow") {
    if (!vmm_test::need_kvm()) return;
    // 4 KiB data, then every other 64 KiB block data from 64 KiB on: holes punched into a file
    // written whole, so the runs are the file system's (SEEK_DATA/SEEK_HOLE), as for a raw image.
    auto data = pattern(1 << 20);
    TempFile f(data);
    REQUIRE(::fallocate(f.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 61440) == 0);
    for (off_t at = 128 << 10; at < (1 << 20); at += 128 << 10)
        REQUIRE(::fallocate(f.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, 64 << 10) == 0);
    const Device dev{f.fd(), data.size(), false};
    auto run = attack(Attack::AllocationRuns, {&dev, 1});
    REQUIRE_MESSAGE(run.ok(), (run.ok() ? "" : run.error().message));
    CHECK(run.value().device_changes == 0); // reads alone
    REQUIRE(run.value().records.size() == 1);
    const auto& rec = run.value().records[0].data;
    std::uint64_t head[3];
    instar_allocation_run runs[8];
    REQUIRE(rec.size() == sizeof head + sizeof runs);
    std::memcpy(head, rec.data(), sizeof head);
    std::memcpy(runs, rec.data() + sizeof head, sizeof runs);
    // The truth, from the file system: the runs from 4096 on (a file system may keep a punched
    // range's edges allocated, so the test asks it instead of assuming the layout above).
    std::vector<instar_allocation_run> want;
    for (std::uint64_t at = 4096; at < data.size() && want.size() < 8;) {
        const off_t d = ::lseek(f.fd(), static_cast<off_t>(at), SEEK_DATA);
        if (d < 0 || static_cast<std::uint64_t>(d) > at) {
            const std::uint64_t end = d < 0 ? data.size() : static_cast<std::uint64_t>(d);
            want.push_back({end - at, 0});
            at = end;
        } else {
            const std::uint64_t end = std::min<std::uint64_t>(static_cast<std::uint64_t>(::lseek(f.fd(), static_cast<off_t>(at), SEEK_HOLE)), data.size());
            want.push_back({end - at, INSTAR_ALLOCATION_DATA});
            at = end;
        }
    }
    REQUIRE(head[0] == want.size());
    CHECK(head[1] == want[0].flags);
    CHECK(head[2] == want[0].length);
    for (std::size_t i = 0; i < want.size(); ++i) {
        CHECK(runs[i].length == want[i].length);
        CHECK(runs[i].flags == want[i].flags);
    }
    for (std::size_t i = want.size(); i < 8; ++i) CHECK(runs[i].length == 0xdead); // untouched
}

TEST_CASE("allocation runs into a buffer outside guest RAM end the guest") {
    if (!vmm_test::need_kvm()) return;
    const auto data = pattern(1 << 20);
    TempFile f(data);
    const Device dev{f.fd(), data.size(), false};
    auto r = attack(Attack::AllocationRunsOutsideRam, {&dev, 1});
    REQUIRE_FALSE(r.ok());
    INFO("message: ", r.error().message);
    CHECK(r.error().kind == ErrorKind::GuestBadRequest);
    CHECK(r.error().message.find("allocation runs buffer") != std::string::npos);
}

TEST_CASE("small reads come from the runtime's block until a device changes") {
    if (!vmm_test::need_kvm()) return;
    // Device 1 is the same file, writable: after its write, device 0's reads must see the new
    // bytes, not the block fetched before (devices.cpp: two devices may be one file).
    const auto data = pattern(3 * 4096 + 77);
    TempFile f(data);
    const int rw = ::open(("/proc/self/fd/" + std::to_string(f.fd())).c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(rw >= 0);
    const Device devs[] = {{f.fd(), data.size(), false}, {rw, data.size(), true}};
    auto r = attack(Attack::SmallReads, devs);
    ::close(rw);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    REQUIRE(r.value().exit_status == 0);
    REQUIRE(r.value().records.size() == 1);
    std::vector<std::uint8_t> want;
    auto take = [&](std::size_t off, std::size_t len) { want.insert(want.end(), data.begin() + off, data.begin() + off + len); };
    take(0, 8);
    take(4090, 100);
    take(4101, 50);
    take(data.size() - 3, 3);
    take(0, 112); // block 0 again: held when device 1 writes
    for (unsigned i = 0; i < 8; ++i) want.push_back(static_cast<std::uint8_t>(i * 13));
    CHECK(r.value().records[0].data == want);
}

TEST_CASE("small reads of a writable device come from the own block, which follows the run's writes") {
    if (!vmm_test::need_kvm()) return;
    // Devices 1 and 2 are one writable file (as an edit's image, output devices): device 1's block
    // takes its own write in, and is dropped when device 2 writes (devices.cpp, the own block).
    const auto data = pattern(8192);
    TempFile in(pattern(100));
    TempFile f(data);
    const int rw = ::open(("/proc/self/fd/" + std::to_string(f.fd())).c_str(), O_RDWR | O_CLOEXEC);
    const int rw2 = ::open(("/proc/self/fd/" + std::to_string(f.fd())).c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(rw >= 0);
    REQUIRE(rw2 >= 0);
    const Device devs[] = {{in.fd(), 100, false}, output_device(rw), output_device(rw2)};
    auto r = attack(Attack::OwnReads, devs);
    ::close(rw);
    ::close(rw2);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    REQUIRE(r.value().exit_status == 0);
    REQUIRE(r.value().records.size() == 1);
    auto file = data;
    std::vector<std::uint8_t> want(file.begin(), file.begin() + 8);
    auto take = [&] { want.insert(want.end(), file.begin(), file.begin() + 112); };
    take();
    for (unsigned i = 0; i < 16; ++i) file[4 + i] = static_cast<std::uint8_t>(i * 13);
    take();
    for (unsigned i = 0; i < 8; ++i) file[100 + i] = static_cast<std::uint8_t>(i * 17);
    take();
    CHECK(r.value().records[0].data == want);
}

TEST_CASE("the process sandbox never runs arena bytes as code") {
    if (!vmm_test::process_mode()) return; // the VM maps all RAM executable
    expect_failure(Attack::RunArenaCode, ErrorKind::GuestFault, "#PF page fault at rip 0x");
}

TEST_CASE("the process sandbox maps code read+execute: a store to a code page faults (W^X)") {
    if (!vmm_test::process_mode()) return; // the VM maps all RAM writable
    // Error code 0x7: a user-mode write to a present page (the kernel's page-fault error code).
    expect_failure(Attack::WriteModuleCode, ErrorKind::GuestFault, "#PF page fault at rip 0x");
    expect_failure(Attack::WriteModuleCode, ErrorKind::GuestFault, "error code 0x7)");
    expect_failure(Attack::WriteRuntimeCode, ErrorKind::GuestFault, "(address 0x200000, error code 0x7)"); // INSTAR_GPA_RUNTIME
}

TEST_CASE("the result says which sandbox ran, and the process sandbox what confines it") {
    if (!vmm_test::need_kvm()) return;
    auto r = run(SandboxConfig{}, {}, {}, INSTAR_OP_NOP, {});
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    if (vmm_test::process_mode()) {
        CHECK(r.value().sandbox == SandboxKind::Process);
        MESSAGE("process sandbox confinement: ", r.value().confinement);
        CHECK(r.value().confinement.find("seccomp-strict") != std::string::npos);
        CHECK(r.value().confinement.find("no-new-privs") != std::string::npos);
        CHECK(r.value().confinement.find("only-channel-fd") != std::string::npos);
        CHECK(r.value().confinement.find("rlimits") != std::string::npos);
    } else {
        CHECK(r.value().sandbox == SandboxKind::Kvm);
    }
    // An explicit kind wins over $INSTAR_SANDBOX.
    SandboxConfig process;
    process.sandbox = SandboxKind::Process;
    auto p = run(process, {}, {}, INSTAR_OP_NOP, {});
    REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().message));
    CHECK(p.value().sandbox == SandboxKind::Process);
    CHECK(parse_sandbox_kind("kvm") == SandboxKind::Kvm);
    CHECK(parse_sandbox_kind("process") == SandboxKind::Process);
    CHECK(parse_sandbox_kind("auto") == SandboxKind::Auto);
    CHECK_FALSE(parse_sandbox_kind("vm").has_value());
}

TEST_CASE("allocator exhaustion is a clean NoMemory exit") {
    if (!vmm_test::need_kvm()) return;
    const Device dev{0, 0, false};
    SandboxConfig cfg;
    cfg.max_guest_memory = 32ull << 20;
    auto r = attack(Attack::ExhaustAllocator, {&dev, 1}, cfg);
    REQUIRE(r.ok());
    CHECK(r.value().exit_status == 5); // Status::NoMemory
    REQUIRE(r.value().records.size() == 1);
    std::uint64_t chunks = 0;
    std::memcpy(&chunks, r.value().records[0].data.data(), sizeof chunks);
    CHECK(chunks >= 25); // ~30 MiB of arena in 1 MiB (+ header) blocks
    CHECK(chunks < 32);
}

TEST_CASE("an operation's own RAM size is used, never more than the cap") {
    if (!vmm_test::need_kvm()) return;
    const Device dev{0, 0, false};
    auto chunks_with = [&](SandboxConfig cfg) {
        auto r = attack(Attack::ExhaustAllocator, {&dev, 1}, cfg);
        REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
        CHECK(r.value().exit_status == 5); // Status::NoMemory
        REQUIRE(r.value().records.size() == 1);
        std::uint64_t chunks = 0;
        std::memcpy(&chunks, r.value().records[0].data.data(), sizeof chunks);
        return chunks;
    };
    SandboxConfig small;
    small.guest_memory = 16ull << 20;
    small.huge_pages = false;
    CHECK(guest_ram(small) == (16ull << 20));
    const std::uint64_t in_16 = chunks_with(small);
    CHECK(in_16 >= 10); // ~14 MiB of arena in 1 MiB (+ header) blocks
    CHECK(in_16 < 16);
    SandboxConfig capped;
    capped.max_guest_memory = 32ull << 20;
    capped.guest_memory = 64ull << 20; // asks for more than the cap: gets the cap
    CHECK(guest_ram(capped) == (32ull << 20));
    const std::uint64_t in_32 = chunks_with(capped);
    CHECK(in_32 >= 25);
    CHECK(in_32 < 32);
    SandboxConfig bad;
    bad.guest_memory = 4ull << 20; // below the minimum
    auto r = run(bad, {}, {}, INSTAR_OP_NOP, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == ErrorKind::Config);
}

TEST_CASE("a guest that starts small grows to its RAM when its allocator runs out, never past it") {
    if (!vmm_test::need_kvm()) return;
    const Device dev{0, 0, false};
    SandboxConfig cfg;
    cfg.max_guest_memory = 64ull << 20;
    cfg.start_memory = 16ull << 20;
    cfg.huge_pages = false;
    CHECK(guest_ram(cfg) == (64ull << 20));
    CHECK(start_ram(cfg) == (16ull << 20));
    // Every page of every block is stored to: RAM past the first 16 MiB exists only once grown
    // (the process sandbox has all 64 MiB from the start).
    auto r = attack(Attack::TouchArena, {&dev, 1}, cfg);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    CHECK(r.value().exit_status == 5); // Status::NoMemory, at the limit
    REQUIRE(r.value().records.size() == 1);
    std::uint64_t chunks = 0;
    std::memcpy(&chunks, r.value().records[0].data.data(), sizeof chunks);
    CHECK(chunks >= 55); // ~61 MiB of arena in 1 MiB (+ header) blocks
    CHECK(chunks < 64);
    SandboxConfig whole = cfg; // a start at or above the RAM is the RAM
    whole.start_memory = 128ull << 20;
    CHECK(start_ram(whole) == (64ull << 20));
    SandboxConfig tiny = cfg; // below the minimum: the minimum
    tiny.start_memory = 2ull << 20;
    CHECK(start_ram(tiny) == INSTAR_MIN_GUEST_MEMORY);
}

TEST_CASE("zlib inflate runs in the guest and a bomb stops at its limit") {
    if (!vmm_test::need_kvm()) return;
    std::vector<std::uint8_t> plain;
    const std::string phrase = "every byte of an untrusted image is parsed in the guest; ";
    while (plain.size() < 60000) plain.insert(plain.end(), phrase.begin(), phrase.end());
    std::vector<std::uint8_t> packed(compressBound(plain.size()));
    uLongf packed_len = packed.size();
    REQUIRE(compress2(packed.data(), &packed_len, plain.data(), plain.size(), 9) == Z_OK);
    packed.resize(packed_len);
    REQUIRE(packed.size() < INSTAR_MAX_OP_ARG - 1);
    const Device dev{0, 0, false};
    auto r = attack(Attack::Inflate, {&dev, 1}, {}, packed);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    CHECK(r.value().exit_status == 0);
    REQUIRE(r.value().records.size() == 1);
    CHECK(r.value().records[0].data == plain);
    auto bomb = attack(Attack::InflateBomb, {&dev, 1}, {}, packed);
    REQUIRE(bomb.ok());
    CHECK(bomb.value().exit_status == 4); // Status::TooLarge: output capped at 1 KiB
    CHECK(bomb.value().records.empty());
}

TEST_CASE("SSE code runs in the guest") {
    if (!vmm_test::need_kvm()) return;
    const Device dev{0, 0, false};
    auto r = attack(Attack::SseMath, {&dev, 1});
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    REQUIRE(r.value().records.size() == 1);
    std::uint64_t bits = 0;
    std::memcpy(&bits, r.value().records[0].data.data(), sizeof bits);
    CHECK(bits == 9000);
}

TEST_CASE("a writable output device receives the guest's writes; the input stays untouched") {
    if (!vmm_test::need_kvm()) return;
    const auto data = pattern(8192);
    TempFile in(data);
    TempFile out(std::vector<unsigned char>(8192, 0));
    const Device devs[] = {{in.fd(), data.size(), false}, {out.fd(), 8192, true}};
    auto r = attack(Attack::WriteOutput, devs);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    CHECK(r.value().exit_status == 0);
    CHECK(r.value().device_changes > 0); // check -r's retry relies on it (docs/check.md)
    const auto written = out.contents();
    for (unsigned i = 0; i < 4096; ++i) REQUIRE(written[i] == static_cast<unsigned char>(i * 7));
    CHECK(written[4096] == 0);
    CHECK(in.contents() == data);
}

// Runs a table attack (WriteSegments, DiscardRanges) with `which` table on a read-only 1 MiB device 0
// and a writable 8 KiB device 1 holding a pattern without a zero byte; the run's outcome and device
// 1's bytes before and after it.
struct TableRun {
    Outcome<RunResult> run;
    std::vector<unsigned char> before, after;
};
TableRun table_attack(Attack a, TableCase which) {
    const auto data = pattern(1 << 20);
    TempFile in(data);
    auto before = pattern(8192);
    for (auto& b : before) b |= 1; // no zero byte: a discarded range shows
    TempFile out(before);
    const Device devs[] = {{in.fd(), data.size(), false}, {out.fd(), 8192, true}};
    auto r = attack(a, devs, {}, {static_cast<std::uint8_t>(which)});
    CHECK(in.contents() == data);
    return {std::move(r), before, out.contents()};
}

// The good table, run to exit status 0.
TableRun good_table(Attack a) {
    auto t = table_attack(a, TableCase::Good);
    REQUIRE_MESSAGE(t.run.ok(), (t.run.ok() ? "" : t.run.error().message));
    CHECK(t.run.value().exit_status == 0);
    return t;
}

// Each bad table ends the guest with a message containing `text` and leaves device 1 as it was.
struct Refusal {
    TableCase which;
    const char* text;
};
void expect_refusals(Attack a, std::initializer_list<Refusal> cases) {
    for (const auto& c : cases) {
        auto t = table_attack(a, c.which);
        REQUIRE_FALSE(t.run.ok());
        INFO("message: ", t.run.error().message);
        CHECK(t.run.error().kind == ErrorKind::GuestBadRequest);
        CHECK(t.run.error().message.find(c.text) != std::string::npos);
        CHECK(t.after == t.before);
    }
}

TEST_CASE("a segmented write lands every segment in table order") {
    if (!vmm_test::need_kvm()) return;
    const auto t = good_table(Attack::WriteSegments);
    auto want = t.before;
    for (unsigned i = 0; i < 512; ++i) want[4096 + i] = static_cast<unsigned char>(i * 3);
    for (unsigned i = 0; i < 256; ++i) want[i] = static_cast<unsigned char>(i * 5);
    for (unsigned i = 0; i < 128; ++i) want[4096 + 256 + i] = static_cast<unsigned char>(i * 9); // the later one wins
    CHECK(t.after == want);
}

TEST_CASE("a segmented write with one bad segment ends the guest and writes nothing") {
    if (!vmm_test::need_kvm()) return;
    expect_refusals(Attack::WriteSegments,
                    {{TableCase::PastEnd, "segmented write past the end of device 1: segment 1"},
                     {TableCase::BufferOutsideRam, "segmented write buffer 0x10000000000"},
                     {TableCase::TooMany, "segmented write of 65 segments"},
                     {TableCase::TableOutsideRam, "segment table 0x10000000000"},
                     {TableCase::ReadOnly, "segmented write to read-only device 0"}});
}

TEST_CASE("a discard of ranges makes each range read as zeros") {
    if (!vmm_test::need_kvm()) return;
    const auto t = good_table(Attack::DiscardRanges);
    CHECK(t.run.value().device_changes > 0);
    auto want = t.before;
    std::fill(want.begin(), want.begin() + 512, 0);
    std::fill(want.begin() + 4096, want.begin() + 5120, 0);
    CHECK(t.after == want);
}

TEST_CASE("a discard of ranges with one bad range ends the guest and changes nothing") {
    if (!vmm_test::need_kvm()) return;
    expect_refusals(Attack::DiscardRanges,
                    {{TableCase::PastEnd, "discard past the end of device 1: range 1"},
                     {TableCase::TooMany, "discard of 257 ranges"},
                     {TableCase::TableOutsideRam, "discard range table 0x10000000000"},
                     {TableCase::ReadOnly, "discard of ranges on device 0, which is not writable"}});
}

// Last in this file: from here on runs use spare VMs (later test files exercise that path).
TEST_CASE("after prewarm() runs use spare VMs and still start fresh") {
    if (!vmm_test::need_kvm()) return;
    prewarm(SandboxConfig{});
    const auto data = pattern(8192);
    TempFile in(data);
    TempFile out(std::vector<unsigned char>(8192, 0));
    const Device devs[] = {{in.fd(), data.size(), false}, {out.fd(), 8192, true}};
    for (int i = 0; i < 5; ++i) {
        auto r = attack(Attack::WriteOutput, devs);
        REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
        CHECK(r.value().exit_status == 0);
        // A guest that faulted must not leave anything behind for the next one.
        CHECK_FALSE(attack(Attack::NullPointer, devs).ok());
    }
    SandboxConfig other;
    other.max_guest_memory = 64ull << 20; // a size without a spare: created in the call
    auto r = run(other, {}, {}, INSTAR_OP_NOP, {});
    REQUIRE(r.ok());
    CHECK(r.value().exit_status == 0);
}

} // TEST_SUITE
