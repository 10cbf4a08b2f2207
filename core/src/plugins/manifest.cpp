// Manifest text: a header line, the plugin file's identity, then one keyword per line.
//   instar-plugin-manifest 1
//   file SIZE MTIME_SEC MTIME_NSEC
//   name qcow2
//   alias vhd                      (any number)
//   priority 100
//   rule                           (starts a rule; its matches follow)
//   match start|end OFFSET HEXBYTES [atleast]   (atleast: ProbeMatch::AtLeast; without it Equal)
#include "plugins/manifest_io.h"

#include "plugins/descriptor_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <sstream>

namespace fs = std::filesystem;

namespace instar {
namespace {

constexpr const char* HEADER = "instar-plugin-manifest 1";

struct Identity {
    std::uint64_t size = 0;
    std::int64_t sec = 0;
    std::int64_t nsec = 0;
    bool operator==(const Identity&) const = default;
};

bool identity_of(const fs::path& so, Identity& id) {
    struct stat st {};
    if (::stat(so.c_str(), &st) != 0)
        return false;
    id = {static_cast<std::uint64_t>(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec};
    return true;
}

template <typename T>
bool number(std::string_view s, T& out) {
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

bool hex_bytes(std::string_view s, std::vector<unsigned char>& out) {
    if (s.empty() || s.size() % 2 != 0 || s.size() / 2 > MAX_PROBE_MATCH_BYTES)
        return false;
    out.clear();
    for (std::size_t i = 0; i < s.size(); i += 2) {
        unsigned v = 0;
        const auto [p, ec] = std::from_chars(s.data() + i, s.data() + i + 2, v, 16);
        if (ec != std::errc() || p != s.data() + i + 2)
            return false;
        out.push_back(static_cast<unsigned char>(v));
    }
    return true;
}

std::vector<std::string_view> words(std::string_view line) {
    std::vector<std::string_view> w;
    while (!line.empty()) {
        const auto start = line.find_first_not_of(' ');
        if (start == std::string_view::npos)
            break;
        line.remove_prefix(start);
        const auto end = line.find(' ');
        w.push_back(line.substr(0, end));
        if (end == std::string_view::npos)
            break;
        line.remove_prefix(end);
    }
    return w;
}

} // namespace

bool PluginManifest::answers_to(std::string_view n) const {
    if (n == name)
        return true;
    for (const auto& a : aliases)
        if (n == a)
            return true;
    return false;
}

std::string manifest_text(const FormatDescriptor& d, const fs::path& so) {
    Identity id;
    if (!identity_of(so, id))
        return {};
    std::ostringstream o;
    o << HEADER << '\n' << "file " << id.size << ' ' << id.sec << ' ' << id.nsec << '\n' << "name " << d.name << '\n';
    if (d.aliases)
        for (const char* const* a = d.aliases; *a; ++a)
            o << "alias " << *a << '\n';
    o << "priority " << d.probe_priority << '\n';
    static const char* const HEX = "0123456789abcdef";
    for (std::uint32_t r = 0; r < d.probe_rule_count; ++r) {
        const ProbeRule& rule = d.probe_rules[r];
        o << ((rule.flags & PROBE_RULE_EXTENSION) ? "rule extension\n" : "rule\n");
        for (std::uint32_t m = 0; m < rule.match_count; ++m) {
            const ProbeMatch& pm = rule.matches[m];
            o << "match " << (pm.anchor == ProbeMatch::FromStart ? "start" : "end") << ' ' << pm.offset << ' ';
            for (std::uint32_t i = 0; i < pm.length; ++i)
                o << HEX[pm.bytes[i] >> 4] << HEX[pm.bytes[i] & 15];
            o << (pm.compare == ProbeMatch::AtLeast ? " atleast\n" : "\n");
        }
    }
    return o.str();
}

std::optional<std::string> read_small_file(const fs::path& file, std::size_t limit) {
    // Plain open and read (no stream buffering): discovery reads its index or manifests on every command.
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return std::nullopt;
    // Sized by the file (one read when it does not change meanwhile), not by the limit: a buffer of
    // the limit's size would cost a page fault per page it spans.
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size <= 0 || static_cast<std::uint64_t>(st.st_size) > limit) {
        ::close(fd);
        return std::nullopt;
    }
    std::string text(static_cast<std::size_t>(st.st_size) + 1, '\0');
    std::size_t got = 0;
    for (;;) {
        const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += static_cast<std::size_t>(n);
        if (got == text.size())
            break; // more than fstat said: the file is changing
    }
    ::close(fd);
    if (got == 0 || got == text.size())
        return std::nullopt;
    text.resize(got);
    return text;
}

std::shared_ptr<const PluginManifest> read_manifest(const fs::path& so) {
    const auto text = read_small_file(so.string() + MANIFEST_SUFFIX, MAX_MANIFEST_BYTES);
    return text ? parse_manifest(*text, so) : nullptr;
}

std::shared_ptr<const PluginManifest> parse_manifest(std::string_view text, const fs::path& so) {
    if (text.empty() || text.size() > MAX_MANIFEST_BYTES)
        return nullptr;
    auto m = std::make_shared<PluginManifest>();
    Identity recorded, actual;
    bool header = false, have_file = false, have_name = false, have_priority = false;
    std::vector<std::vector<std::pair<ProbeMatch, std::vector<unsigned char>>>> rules;
    std::vector<std::uint32_t> rule_flags; // each rule's ProbeRuleFlag mask
    std::string_view rest = text;
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        if (nl == std::string_view::npos)
            return nullptr; // every line ends in a newline: a cut-off file is not used
        const std::string_view line = rest.substr(0, nl);
        rest.remove_prefix(nl + 1);
        if (!header) {
            if (line != HEADER)
                return nullptr;
            header = true;
            continue;
        }
        const auto w = words(line);
        if (w.empty())
            return nullptr;
        if (w[0] == "file" && w.size() == 4 && !have_file) {
            if (!number(w[1], recorded.size) || !number(w[2], recorded.sec) || !number(w[3], recorded.nsec))
                return nullptr;
            have_file = true;
        } else if (w[0] == "name" && w.size() == 2 && !have_name) {
            m->name = w[1];
            have_name = true;
        } else if (w[0] == "alias" && w.size() == 2 && m->aliases.size() < MAX_PLUGIN_PROBE_RULES) {
            m->aliases.emplace_back(w[1]);
        } else if (w[0] == "priority" && w.size() == 2 && !have_priority) {
            if (!number(w[1], m->probe_priority))
                return nullptr;
            have_priority = true;
        } else if (w[0] == "rule" && (w.size() == 1 || (w.size() == 2 && w[1] == "extension")) &&
                   rules.size() < MAX_PLUGIN_PROBE_RULES) {
            rules.emplace_back();
            rule_flags.push_back(w.size() == 2 ? PROBE_RULE_EXTENSION : 0u);
        } else if (w[0] == "match" && (w.size() == 4 || (w.size() == 5 && w[4] == "atleast")) && !rules.empty() &&
                   rules.back().size() < MAX_PROBE_MATCHES) {
            ProbeMatch pm{};
            if (w[1] == "start")
                pm.anchor = ProbeMatch::FromStart;
            else if (w[1] == "end")
                pm.anchor = ProbeMatch::FromEnd;
            else
                return nullptr;
            std::vector<unsigned char> bytes;
            if (!number(w[2], pm.offset) || pm.offset > MAX_PROBE_OFFSET || !hex_bytes(w[3], bytes))
                return nullptr;
            pm.length = static_cast<std::uint32_t>(bytes.size());
            pm.compare = w.size() == 5 ? ProbeMatch::AtLeast : ProbeMatch::Equal;
            rules.back().emplace_back(pm, std::move(bytes));
        } else {
            return nullptr;
        }
    }
    if (!have_file || !have_name || !have_priority || m->name.empty())
        return nullptr;
    if (!identity_of(so, actual) || !(actual == recorded))
        return nullptr; // the plugin changed since the manifest was written
    for (const auto& r : rules) {
        if (r.empty())
            return nullptr;
        auto& matches = m->match_storage.emplace_back();
        for (const auto& [pm, bytes] : r) {
            const auto& stored = m->byte_storage.emplace_back(bytes);
            ProbeMatch copy = pm;
            copy.bytes = stored.data(); // the inner vectors' buffers never move
            matches.push_back(copy);
        }
    }
    for (std::size_t r = 0; r < m->match_storage.size(); ++r)
        m->rules.push_back(ProbeRule{m->match_storage[r].data(), static_cast<std::uint32_t>(m->match_storage[r].size()),
                                     rule_flags[r]});
    return m;
}

} // namespace instar
