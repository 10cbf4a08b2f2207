// qemu-img version profiles: which qemu-img's output and messages instar reproduces.
#pragma once

#include "util/expected.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace instar {

// The newest qemu-img instar's differential tests cover; used when nothing else is asked for.
inline constexpr std::string_view NEWEST_QEMU_PROFILE = "10.0.0";

struct Profile {
    std::uint32_t version = 0; // qemu_version(major, minor, micro)
    std::string text;          // "10.0.0"

    // 8.0 added the "children"/"Child node" sections to info.
    bool has_child_nodes() const;
    // 10.0 rewrote qemu-img's option parsing: getopt's own messages, per-command --help, and
    // "Try 'ARGV0 CMD --help' for more info".
    bool getopt_messages() const;
};

// "X.Y" or "X.Y.Z"; 7.2 and every release from 8.0 on are accepted.
Expected<Profile> parse_profile(std::string_view text);

// --qemu-version wins over INSTAR_QEMU_VERSION, which wins over the newest profile.
Expected<Profile> select_profile(const std::string* flag, const char* env);

} // namespace instar
