// A refusal built piece by piece into a LuksWhy (when one is given), shared by the LUKS1 and LUKS2
// header checks.
#pragma once

#include "luks_header.h"

#include <instar/guest/format_util.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::luks {

struct Say {
    LuksWhy* why;
    Status status;
    Say& text(const char* t) {
        if (why != nullptr)
            guest::append_text(why->text, sizeof why->text, t);
        return *this;
    }
    // LUKS1 header bytes as qemu prints them (n < their field's size, which is NUL-terminated).
    Say& text(const uint8_t* t, size_t n) {
        char buf[LUKS_NAME_FIELD + 1];
        __builtin_memcpy(buf, t, n < LUKS_NAME_FIELD ? n : LUKS_NAME_FIELD);
        buf[n < LUKS_NAME_FIELD ? n : LUKS_NAME_FIELD] = 0;
        return text(buf);
    }
    // LUKS2 metadata text: cut to a readable length, anything unprintable shown as '?'.
    Say& text(const char* t, size_t n) {
        char buf[33];
        size_t k = 0;
        for (; k < n && k + 1 < sizeof buf; ++k)
            buf[k] = t[k] >= 0x20 && t[k] < 0x7f ? t[k] : '?';
        buf[k] = 0;
        return text(buf);
    }
    Say& num(uint64_t v) {
        if (why != nullptr)
            guest::append_decimal(why->text, sizeof why->text, v);
        return *this;
    }
    // printf's %d of a uint32_t (qemu's key size): values of 2^31 and more print negative.
    Say& int32(uint32_t v) {
        if (v >= 0x80000000u)
            return text("-").num(uint64_t{0x100000000ull} - v);
        return num(v);
    }
    Status done() const { return status; }
};

} // namespace instar::luks
