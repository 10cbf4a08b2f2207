// Each run's guest runs on a fresh thread, which confines itself with the seccomp filter
// (seccomp_filter.h) before the guest's first instruction and ends with the run. The filter is
// per thread and cannot be lifted, and the CLI carries on after the run (renames files, prints),
// so the caller's thread must never be the one confined. Whatever the confined thread may not do
// itself (create an added file, print progress) it asks the caller's thread to do, through the
// Broker, and waits for the answer.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vmm/sandbox.h"

namespace instar::vmm {

class Broker {
public:
    // On the vCPU thread: runs `job` on the caller's thread (inside serve()) and waits for it.
    void call(const std::function<void()>& job);
    // On the caller's thread: runs jobs until finish().
    void serve();
    // On the vCPU thread, last: ends serve().
    void finish();

private:
    std::mutex mu_;
    std::condition_variable cv_;
    const std::function<void()>* job_ = nullptr; // guarded by mu_
    bool done_ = false;                          // guarded by mu_
};

// The operation's OutputFiles, reached from the vCPU thread through the broker. A new file whose
// descriptor lies below `fd_floor` is duplicated at or above it (the filter allows the I/O calls
// there) and the duplicate is closed with this object, after the run: create and destroy it on the
// caller's thread, attach() it to the run's broker on the vCPU thread.
class BrokeredOutputs final : public OutputFiles {
public:
    BrokeredOutputs(OutputFiles& real, int fd_floor) : real_(real), floor_(fd_floor) {}
    ~BrokeredOutputs() override;
    void attach(Broker& broker) { broker_ = &broker; }
    std::optional<Device> add(const std::string& name, std::string& error) override;
    std::optional<NextImage> next_image(const std::vector<Record>& records, std::uint32_t image) override;

private:
    // On the caller's thread: `dev`'s descriptor moved to at least the floor (the vCPU thread's
    // seccomp filter lets it reach descriptors from there on). False: `error` says why.
    bool above_floor(Device& dev, const std::string& name, std::string& error);
    Broker* broker_ = nullptr;
    OutputFiles& real_;
    int floor_;
    std::vector<int> dups_; // touched only on the caller's thread
};

// Runs `body` on a fresh (detached) thread and returns its result as soon as the body has returned.
// Meanwhile the calling thread runs `meanwhile` (if any: work the body may use when it is done,
// e.g. its seccomp filter compiled ahead; an exception from it is dropped, since the body must not
// depend on it), then the jobs the body hands to the broker it is given.
Outcome<RunResult> run_on_fresh_thread(const std::function<Outcome<RunResult>(Broker&)>& body,
                                       const std::function<void()>& meanwhile = {});

} // namespace instar::vmm
