// A reason line built from pieces (qemu's messages quote option values and file names).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <instar/guest/create_api.h>

namespace instar::vhdx {

// Truncates silently at CREATE_MAX_REASON: a reason is one line, not a data channel.
struct ReasonText {
    char buf[guest::CREATE_MAX_REASON];
    size_t len = 0;

    ReasonText& add(const char* s) {
        for (; s != nullptr && *s != 0 && len < sizeof buf; ++s)
            buf[len++] = *s;
        return *this;
    }
    guest::Status fail(guest::CreateTarget& target, guest::Status st) const {
        target.reason(buf, len);
        return st;
    }
};

} // namespace instar::vhdx
