// Guest module lookup and guest-text sanitising shared by the sandboxed operations.
#include "ops/guest_module.h"

#include "vmm/sandbox.h"

#include <filesystem>

namespace instar {
namespace {

// The guest's failure reason is shown to the user: short, printable, at most a few lines.
constexpr std::size_t MAX_REASON = 400;
constexpr int MAX_REASON_LINES = 4;

} // namespace

std::string printable_reason(const std::string& text) {
    std::string s;
    int lines = 1;
    for (char c : text) {
        if (s.size() >= MAX_REASON)
            break;
        if (c == '\n' && ++lines <= MAX_REASON_LINES)
            s += c;
        else if (c == '\x01' && (s.empty() || s.back() == '\n'))
            s += c; // a line qemu error_reports before its error (cli report_error prints it first)
        else
            s += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    return s;
}

Expected<std::string> guest_module_path(const LoadedPlugin& p) {
    if (!p->guest_module)
        return Error{"the " + std::string(p->name) + " plugin (" + p.file.string() + ") has no guest half"};
    std::error_code ec;
    for (const auto& candidate : {p.guest_module_path(), p.file.parent_path() / "guest" / p->guest_module})
        if (std::filesystem::exists(candidate, ec))
            return candidate.string();
    std::string found = vmm::find_guest_module(p->guest_module);
    if (found.empty())
        return Error{"the guest half of the " + std::string(p->name) + " plugin (" + p->guest_module +
                     ") is not installed"};
    return found;
}

} // namespace instar
