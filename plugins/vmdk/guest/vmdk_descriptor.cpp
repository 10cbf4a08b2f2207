// Descriptor text parsing with qemu's rules (block/vmdk.c: vmdk_parse_description, vmdk_read_cid,
// vmdk_parent_open, vmdk_parse_extents), including its sscanf behaviour across line ends.
#include "vmdk_descriptor.h"

namespace instar::vmdk {

using guest::Status;

namespace {

size_t cstrlen(const char* s) {
    size_t n = 0;
    while (s[n])
        ++n;
    return n;
}

bool same(const char* a, const char* b, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (a[i] != b[i])
            return false;
    return true;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

bool equals(const char* a, size_t n, const char* b) { return n == cstrlen(b) && same(a, b, n); }

// A cursor over the rest of the text, as sscanf sees it (it may run past the current line).
struct Cursor {
    const char* p;
    const char* end;
    void skip_space() {
        while (p < end && is_space(*p))
            ++p;
    }
    // %Ns: up to `max` non-space characters.
    bool word(size_t max, const char** s, size_t* n) {
        skip_space();
        const char* start = p;
        while (p < end && !is_space(*p) && static_cast<size_t>(p - start) < max)
            ++p;
        *s = start;
        *n = static_cast<size_t>(p - start);
        return *n > 0;
    }
    // %lld (base 10), saturating like strtoll.
    bool integer(int64_t* v) {
        skip_space();
        bool neg = false;
        if (p < end && (*p == '+' || *p == '-'))
            neg = *p++ == '-';
        if (p >= end || *p < '0' || *p > '9')
            return false;
        uint64_t acc = 0;
        bool overflow = false;
        for (; p < end && *p >= '0' && *p <= '9'; ++p) {
            const uint64_t limit = neg ? (uint64_t{1} << 63) : (uint64_t{1} << 63) - 1;
            const uint64_t d = static_cast<uint64_t>(*p - '0');
            if (acc > (limit - d) / 10)
                overflow = true;
            else
                acc = acc * 10 + d;
        }
        if (overflow)
            *v = neg ? static_cast<int64_t>(uint64_t{1} << 63) : static_cast<int64_t>((uint64_t{1} << 63) - 1);
        else
            *v = neg ? static_cast<int64_t>(0 - acc) : static_cast<int64_t>(acc);
        return true;
    }
    bool literal(char c) {
        if (p < end && *p == c) {
            ++p;
            return true;
        }
        return false;
    }
};

bool type_of(const char* s, size_t n, ExtentType* t, const char** name) {
    static constexpr struct {
        const char* name;
        ExtentType type;
    } types[] = {{"FLAT", ExtentType::Flat},
                 {"SPARSE", ExtentType::Sparse},
                 {"VMFS", ExtentType::Vmfs},
                 {"VMFSSPARSE", ExtentType::VmfsSparse},
                 {"SESPARSE", ExtentType::SeSparse}};
    for (const auto& x : types)
        if (equals(s, n, x.name)) {
            *t = x.type;
            *name = x.name;
            return true;
        }
    return false;
}

} // namespace

Text text_of(const uint8_t* buf, size_t n) {
    size_t len = 0;
    while (len < n && buf[len] != 0)
        ++len;
    return Text{reinterpret_cast<const char*>(buf), len};
}

long text_find(Text t, const char* needle) {
    const size_t n = cstrlen(needle);
    if (n > t.len)
        return -1;
    for (size_t i = 0; i + n <= t.len; ++i)
        if (same(t.s + i, needle, n))
            return static_cast<long>(i);
    return -1;
}

bool descriptor_value(Text t, const char* name, size_t cap, const char** value, size_t* len) {
    const long at = text_find(t, name);
    if (at < 0)
        return false;
    const size_t start = static_cast<size_t>(at) + cstrlen(name) + 2; // skips '="'
    if (start >= t.len)
        return false;
    size_t e = start;
    while (e < t.len && t.s[e] != '"')
        ++e;
    if (e == t.len || cap < e - start + 1)
        return false;
    *value = t.s + start;
    *len = e - start;
    return true;
}

bool descriptor_cid(Text w, bool parent, uint32_t* cid) {
    const char* name = parent ? "parentCID" : "CID";
    const long at = text_find(w, name);
    if (at < 0)
        return false;
    const size_t start = static_cast<size_t>(at) + cstrlen(name) + 1; // sizeof(name): skips '='
    if (start > w.len)
        return false;
    Cursor c{w.s + start, w.s + w.len};
    c.skip_space();
    bool neg = false;
    if (c.p < c.end && (*c.p == '+' || *c.p == '-'))
        neg = *c.p++ == '-';
    if (c.end - c.p >= 2 && c.p[0] == '0' && (c.p[1] == 'x' || c.p[1] == 'X'))
        c.p += 2;
    uint64_t acc = 0;
    bool any = false, overflow = false;
    for (; c.p < c.end; ++c.p) {
        const char ch = *c.p;
        uint32_t d;
        if (ch >= '0' && ch <= '9')
            d = static_cast<uint32_t>(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = static_cast<uint32_t>(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            d = static_cast<uint32_t>(ch - 'A' + 10);
        else
            break;
        any = true;
        if (acc >> 60)
            overflow = true;
        acc = acc << 4 | d;
    }
    if (!any)
        return false;
    if (overflow)
        acc = ~uint64_t{0}; // strtoul saturates
    if (neg)
        acc = 0 - acc;
    *cid = static_cast<uint32_t>(acc);
    return true;
}

Status descriptor_parent_hint(Text w, const char** name, size_t* len) {
    *len = 0;
    const long at = text_find(w, "parentFileNameHint");
    if (at < 0)
        return Status::Ok;
    const size_t start = static_cast<size_t>(at) + sizeof("parentFileNameHint") + 1; // skips '="'
    if (start > w.len)
        return Status::Corrupt;
    size_t e = start;
    while (e < w.len && w.s[e] != '"')
        ++e;
    if (e == w.len)
        return Status::Corrupt; // qemu: no closing quote
    if (e - start > VMDK_PARENT_HINT_MAX)
        return Status::Corrupt;
    *name = w.s + start;
    *len = e - start;
    return Status::Ok;
}

Status descriptor_extents(Text t, ExtentFn fn, void* ctx, Text* bad) {
    const char* end = t.s + t.len;
    // Each line start inside a run of blank lines would rescan the rest of the run (sscanf does:
    // qemu is quadratic there); remembering where the run ends keeps the walk linear.
    const char* run_begin = nullptr;
    const char* run_end = nullptr;
    for (const char* line = t.s; line < end;) {
        const char* next = line;
        while (next < end && *next != '\n')
            ++next;
        if (next < end)
            ++next;
        // sscanf(line, "%10s %lld %10s \"%511[^\n\r\"]\" %lld", ...)
        Cursor c{line, end};
        if (line >= run_begin && line < run_end) {
            c.p = run_end;
        } else {
            c.skip_space();
            run_begin = line;
            run_end = c.p;
        }
        const char *access, *type, *file = nullptr;
        size_t access_n, type_n, file_n = 0;
        int64_t sectors = 0, flat_offset = -1;
        int matches = 0;
        if (c.word(10, &access, &access_n)) {
            matches = 1;
            if (c.integer(&sectors)) {
                matches = 2;
                if (c.word(10, &type, &type_n)) {
                    matches = 3;
                    c.skip_space();
                    if (c.literal('"')) {
                        file = c.p;
                        while (c.p < end && *c.p != '\n' && *c.p != '\r' && *c.p != '"' &&
                               static_cast<size_t>(c.p - file) < 511)
                            ++c.p;
                        file_n = static_cast<size_t>(c.p - file);
                        if (file_n > 0) {
                            matches = 4;
                            if (c.literal('"') && c.integer(&flat_offset))
                                matches = 5;
                        }
                    }
                }
            }
        }
        const char* this_line = line;
        line = next;
        if (matches < 4 || !equals(access, access_n, "RW"))
            continue;
        const bool flat = equals(type, type_n, "FLAT"), vmfs = equals(type, type_n, "VMFS");
        const bool malformed = flat ? (matches != 5 || flat_offset < 0) : vmfs ? matches != 4 : matches != 4;
        if (malformed) {
            if (bad != nullptr) {
                const char* stop = next;
                if (stop > this_line && stop[-1] == '\n')
                    --stop;
                *bad = Text{this_line, static_cast<size_t>(stop - this_line)};
            }
            return Status::Corrupt;
        }
        if (vmfs)
            flat_offset = 0;
        ExtentLine x;
        if (sectors <= 0 || !type_of(type, type_n, &x.type, &x.type_name))
            continue;
        x.sectors = sectors;
        x.flat_offset = flat_offset;
        x.file = file;
        x.file_len = file_n;
        const Status st = fn(ctx, x);
        if (st != Status::Ok)
            return st;
    }
    return Status::Ok;
}

} // namespace instar::vmdk
