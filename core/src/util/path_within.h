// Whether a path lies inside a directory, compared component by component (so /a/bc is not inside
// /a/b). Both paths must already be in the same form (absolute, canonical where it matters).
#pragma once

#include <filesystem>

namespace instar {

inline bool path_is_within(const std::filesystem::path& p, const std::filesystem::path& root) {
    if (root.empty())
        return false;
    auto q = p.begin();
    for (auto r = root.begin(); r != root.end(); ++r, ++q)
        if (q == p.end() || *q != *r)
            return false;
    return true;
}

} // namespace instar
