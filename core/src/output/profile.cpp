// Parsing and selection of the qemu-img version profile.
#include "output/profile.h"

#include "instar/plugin.h"


namespace instar {

bool Profile::has_child_nodes() const { return version >= qemu_version(8, 0); }
bool Profile::getopt_messages() const { return version >= qemu_version(10, 0); }

Expected<Profile> parse_profile(std::string_view text) {
    // Up to three dot-separated numbers of one or two digits each; nothing else.
    std::uint32_t parts[3] = {0, 0, 0};
    int n = 0;
    bool well_formed = !text.empty();
    std::size_t i = 0;
    while (well_formed && n < 3) {
        const std::size_t start = i;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9')
            parts[n] = parts[n] * 10 + static_cast<std::uint32_t>(text[i++] - '0');
        well_formed = i > start && i - start <= 2;
        ++n;
        if (i == text.size() || !well_formed)
            break;
        well_formed = text[i++] == '.' && i < text.size();
    }
    if (!well_formed || n < 2 || i != text.size())
        return Error{"invalid qemu-img version '" + std::string(text) + "': expected X.Y or X.Y.Z"};
    const std::uint32_t v = qemu_version(parts[0], parts[1], parts[2]);
    const bool is_72 = parts[0] == 7 && parts[1] == 2;
    if (!is_72 && v < qemu_version(8, 0))
        return Error{"qemu-img " + std::string(text) +
                     " is not emulated: instar has profiles for qemu-img 7.2 and for 8.0 and later"};
    return Profile{v, std::to_string(parts[0]) + "." + std::to_string(parts[1]) + "." + std::to_string(parts[2])};
}

Expected<Profile> select_profile(const std::string* flag, const char* env) {
    if (flag)
        return parse_profile(*flag);
    if (env && *env) {
        auto p = parse_profile(env);
        if (!p)
            return Error{"INSTAR_QEMU_VERSION: " + p.error()};
        return p;
    }
    return parse_profile(NEWEST_QEMU_PROFILE);
}

} // namespace instar
