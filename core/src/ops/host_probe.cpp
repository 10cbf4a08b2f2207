// Magic-byte comparison of plugin probe rules against a file's first and last bytes.
#include "ops/host_probe.h"

#include <algorithm>
#include <cstring>
#include <unistd.h>

namespace instar {
namespace {

std::vector<std::uint8_t> read_window(int fd, std::uint64_t offset, std::uint64_t len) {
    std::vector<std::uint8_t> buf(len);
    std::size_t got = 0;
    while (got < len) {
        const ssize_t n = ::pread(fd, buf.data() + got, len - got, static_cast<off_t>(offset + got));
        if (n <= 0)
            break;
        got += static_cast<std::size_t>(n);
    }
    buf.resize(got);
    return buf;
}

} // namespace

namespace {

// Equal: the same bytes. AtLeast: memcmp's byte order is the big-endian numbers' order.
bool compares(const ProbeMatch& m, const std::uint8_t* file_bytes) {
    const int c = std::memcmp(file_bytes, m.bytes, m.length);
    return m.compare == ProbeMatch::AtLeast ? c >= 0 : c == 0;
}

} // namespace

bool rule_matches(const ProbeRule& rule, std::span<const std::uint8_t> head, std::span<const std::uint8_t> tail,
                  std::uint64_t file_size) {
    for (std::uint32_t i = 0; i < rule.match_count; ++i) {
        const ProbeMatch& m = rule.matches[i];
        if (m.anchor == ProbeMatch::FromStart) {
            if (m.offset > head.size() || m.length > head.size() - m.offset)
                return false;
            if (!compares(m, head.data() + m.offset))
                return false;
        } else {
            // FromEnd: the match starts `offset` bytes before EOF.
            if (m.offset > file_size || m.offset > tail.size() || m.length > m.offset)
                return false;
            if (!compares(m, tail.data() + (tail.size() - m.offset)))
                return false;
        }
    }
    return true;
}

namespace {

// Whether qemu's probe could have this rule: it sees only the file's first bytes, and it has none
// of instar's extension rules.
bool not_qemus(const ProbeRule& rule) {
    if (rule.flags & PROBE_RULE_EXTENSION)
        return true;
    for (std::uint32_t i = 0; i < rule.match_count; ++i)
        if (rule.matches[i].anchor == ProbeMatch::FromEnd)
            return true;
    return false;
}

} // namespace

std::vector<const LoadedPlugin*> host_probe(const PluginRegistry& plugins, const OpenedFile& file, bool head_only) {
    // Read only as far into each end as the loaded rules look (descriptor_check bounds each rule to
    // MAX_PROBE_OFFSET + MAX_PROBE_MATCH_BYTES, so this stays small).
    std::uint64_t head_len = 0, tail_len = 0;
    // The rules come from the plugins' manifests where they have one: only plugins that match are
    // loaded.
    for (const auto& p : plugins.entries())
        for (const ProbeRule& rule : p.probe_rules())
            for (std::uint32_t m = 0; m < rule.match_count; ++m) {
                const ProbeMatch& pm = rule.matches[m];
                if (pm.anchor == ProbeMatch::FromStart)
                    head_len = std::max<std::uint64_t>(head_len, pm.offset + pm.length);
                else
                    tail_len = std::max<std::uint64_t>(tail_len, pm.offset);
            }
    head_len = std::min(head_len, file.size);
    tail_len = std::min(tail_len, file.size);
    const auto head = read_window(file.fd, 0, head_len);
    const auto tail = read_window(file.fd, file.size - tail_len, tail_len);
    std::vector<const PluginEntry*> matched;
    for (const auto& p : plugins.entries()) {
        for (const ProbeRule& rule : p.probe_rules()) {
            if (head_only && not_qemus(rule))
                continue;
            if (rule_matches(rule, head, tail, file.size)) {
                matched.push_back(&p);
                break;
            }
        }
    }
    std::vector<const LoadedPlugin*> out;
    for (const PluginEntry* p : matched)
        if (const LoadedPlugin* loaded = plugins.get(*p))
            out.push_back(loaded);
    return out;
}

} // namespace instar
