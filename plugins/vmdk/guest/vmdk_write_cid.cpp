// qemu's vmdk_write_cid on a descriptor window (vmdk_write_cid.h).
#include "vmdk_write_cid.h"

#include <instar/guest/format_util.h>

namespace instar::vmdk {
namespace {

constexpr size_t WINDOW = VMDK_DESC_WINDOW;

size_t text_length(const uint8_t* s, size_t cap) {
    size_t n = 0;
    while (n < cap && s[n] != 0)
        ++n;
    return n;
}

// strstr over the NUL-terminated window: the offset of `needle`, or WINDOW when absent.
size_t find(const uint8_t* desc, const char* needle) {
    const size_t len = text_length(desc, WINDOW);
    size_t m = 0;
    while (needle[m] != 0)
        ++m;
    for (size_t i = 0; i + m <= len; ++i) {
        size_t k = 0;
        while (k < m && desc[i + k] == static_cast<uint8_t>(needle[k]))
            ++k;
        if (k == m)
            return i;
    }
    return WINDOW;
}

// glib's pstrcpy: at most cap - 1 bytes of `src`, then a NUL (nothing when cap is 0).
void pstrcpy(uint8_t* dst, size_t cap, const uint8_t* src) {
    if (cap == 0)
        return;
    size_t i = 0;
    for (; i + 1 < cap && src[i] != 0; ++i)
        dst[i] = src[i];
    dst[i] = 0;
}

} // namespace

bool rewrite_cid(uint8_t* desc, uint8_t* tail, uint32_t cid) {
    desc[WINDOW - 1] = 0;
    const size_t parent = find(desc, "parentCID");
    if (parent == WINDOW)
        return false;
    pstrcpy(tail, WINDOW, desc + parent);
    const size_t at = find(desc, "CID");
    if (at == WINDOW)
        return true; // unreachable ("parentCID" holds one), as in qemu: nothing changes
    const size_t p = at + 4; // qemu's p_name += sizeof("CID"): past the '='
    if (p >= WINDOW)
        return true;
    // snprintf(p_name, DESC_SIZE - (p_name - desc), "%x\n", cid)
    char hex[21];
    size_t k = guest::format_unsigned(hex, cid, 16);
    hex[k++] = '\n';
    const size_t room = WINDOW - p;
    size_t i = 0;
    for (; i < k && i + 1 < room; ++i)
        desc[p + i] = static_cast<uint8_t>(hex[i]);
    desc[p + i] = 0;
    // pstrcat(desc, DESC_SIZE, tmp_desc)
    const size_t len = text_length(desc, WINDOW);
    if (len < WINDOW)
        pstrcpy(desc + len, WINDOW - len, tail);
    return true;
}

size_t cid_write_bytes(uint64_t offset, uint64_t file_bytes) {
    const uint64_t end = (file_bytes + 511) / 512 * 512;
    if (end <= offset)
        return 0;
    return end - offset < WINDOW ? static_cast<size_t>(end - offset) : WINDOW;
}

} // namespace instar::vmdk
