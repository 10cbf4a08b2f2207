// Shared helpers for the sandbox tests: where the guest binaries are, KVM presence, temp files.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <chrono>
#include <memory>

#include "vmm/sandbox.h"
#include "vmm/watchdog.h"

namespace vmm_test {

// Set when a test could not run for lack of /dev/kvm; main() then exits 77 (meson: SKIP).
inline bool kvm_skipped = false;

// True when the tests run under the process sandbox (meson's "vmm process" tests set it).
inline bool process_mode() {
    const char* v = std::getenv("INSTAR_SANDBOX");
    return v != nullptr && std::string(v) == "process";
}

// True when sandbox tests can run: always under the process sandbox; with KVM, only a missing
// /dev/kvm skips, anything else is a failure.
inline bool need_kvm() {
    if (process_mode()) return true;
    if (::access("/dev/kvm", F_OK) != 0) {
        MESSAGE("!!!!!!!! /dev/kvm IS ABSENT: THIS SANDBOX TEST WAS SKIPPED, NOTHING WAS VERIFIED !!!!!!!!");
        kvm_skipped = true;
        return false;
    }
    return true;
}

// Bytes that differ from block to block and from their neighbours: a misplaced read shows.
inline std::vector<unsigned char> pattern(std::size_t n) {
    std::vector<unsigned char> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<unsigned char>((i * 131) ^ (i >> 9));
    return v;
}

// A watchdog no test outlives: for the host-side I/O classes that take one.
inline std::unique_ptr<instar::vmm::Watchdog> long_watchdog() {
    auto w = instar::vmm::Watchdog::arm(std::chrono::minutes(10));
    REQUIRE(w.ok());
    return std::move(w.value());
}

inline std::string env_path(const char* name) {
    const char* v = std::getenv(name);
    REQUIRE_MESSAGE(v != nullptr, name, " must be set by meson");
    return v;
}

inline std::string hostile_module() { return env_path("INSTAR_TEST_HOSTILE_MODULE"); }
inline std::string raw_module() { return env_path("INSTAR_TEST_RAW_MODULE"); }

// A temporary file with the given contents, removed on destruction; fd stays open read-write.
class TempFile {
public:
    explicit TempFile(const std::vector<unsigned char>& data) {
        char tmpl[] = "/tmp/instar-vmm-test-XXXXXX";
        fd_ = ::mkstemp(tmpl);
        REQUIRE(fd_ >= 0);
        path_ = tmpl;
        REQUIRE(::write(fd_, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
    }
    ~TempFile() {
        ::close(fd_);
        ::unlink(path_.c_str());
    }
    int fd() const { return fd_; }
    const std::string& path() const { return path_; }
    std::vector<unsigned char> contents() const {
        std::vector<unsigned char> out(static_cast<std::size_t>(::lseek(fd_, 0, SEEK_END)));
        REQUIRE(::pread(fd_, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
        return out;
    }

private:
    int fd_ = -1;
    std::string path_;
};

} // namespace vmm_test
