// qemu-img check's verdict on image bytes, for the qcow2 unit tests (qcow2_check.h over a memory
// device): the counters, and the lines it printed.
#pragma once

#include "hosted_support.h"
#include "qcow2_check.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace instar::qcow2::test {

struct CheckLines final : guest::CheckSink {
    std::string text;
    void line(const char* t, std::size_t len) override { text.append(t, len); }
};

inline guest::CheckResult check_image(const std::vector<std::uint8_t>& bytes, std::string* err = nullptr) {
    hosted::MemoryDevice dev(bytes);
    hosted::BudgetAllocator alloc(64u << 20);
    CheckLines lines;
    guest::CheckRequest req{&dev, nullptr, 0, &alloc, nullptr, 0, 100002, nullptr};
    guest::CheckResult r{};
    REQUIRE(qcow2::check(req, lines, &r) == guest::Status::Ok);
    if (err != nullptr)
        *err = lines.text;
    return r;
}

} // namespace instar::qcow2::test
