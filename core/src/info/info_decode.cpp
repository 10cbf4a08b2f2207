// Strict decoder for the guest's info token stream (see instar/guest/info_sink.h).
#include "info/info_decode.h"

#include <boost/json.hpp>

namespace instar {

using guest::FileRole;
using guest::InfoToken;

const FileReference* ImageInfo::first_file(FileRole role) const {
    for (const auto& f : files)
        if (f.role == role)
            return &f;
    return nullptr;
}

namespace {

class Reader {
public:
    explicit Reader(std::span<const std::uint8_t> b) : b_(b) {}
    bool done() const { return pos_ == b_.size(); }
    bool u8(std::uint8_t& v) {
        if (b_.size() - pos_ < 1)
            return false;
        v = b_[pos_++];
        return true;
    }
    bool u32(std::uint32_t& v) {
        std::uint64_t x;
        if (!le(4, x))
            return false;
        v = static_cast<std::uint32_t>(x);
        return true;
    }
    bool u64(std::uint64_t& v) { return le(8, v); }
    bool bytes(std::size_t n, std::string& out) {
        if (b_.size() - pos_ < n)
            return false;
        out.assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
        pos_ += n;
        return true;
    }
    bool str8(std::string& out) {
        std::uint8_t n;
        return u8(n) && bytes(n, out);
    }
    bool str16(std::string& out) {
        std::uint64_t n;
        return le(2, n) && n <= guest::INFO_MAX_STRING && bytes(n, out);
    }

private:
    bool le(int n, std::uint64_t& v) {
        if (b_.size() - pos_ < static_cast<std::size_t>(n))
            return false;
        v = 0;
        for (int i = 0; i < n; ++i)
            v |= std::uint64_t{b_[pos_ + static_cast<std::size_t>(i)]} << (8 * i);
        pos_ += static_cast<std::size_t>(n);
        return true;
    }
    std::span<const std::uint8_t> b_;
    std::size_t pos_ = 0;
};

// qemu's format-specific keys: lower-case letters, digits and '-'.
bool valid_key(const std::string& k) {
    if (k.empty() || k.size() > guest::INFO_MAX_KEY)
        return false;
    for (char c : k)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    return true;
}

bool valid_format_name(const std::string& k) { return valid_key(k) && k.size() <= 32; }

} // namespace

Expected<ImageInfo> decode_info(std::span<const std::uint8_t> bytes, bool require_format) {
    ImageInfo info;
    boost::json::value root = boost::json::object();
    std::vector<boost::json::value*> stack{&root};
    Reader r(bytes);
    std::string err;
    auto fail = [](const std::string& why) { return Error{"the sandbox sent a malformed report: " + why}; };

    // Containers are tracked with an explicit stack of json values (root is the data object).
    auto add = [&](const std::string& key, boost::json::value v) -> boost::json::value* {
        boost::json::value& top = *stack.back();
        if (top.is_object()) {
            if (!valid_key(key)) {
                err = "bad key '" + key + "'";
                return nullptr;
            }
            auto& o = top.get_object();
            if (o.contains(key)) {
                err = "duplicate key '" + key + "'";
                return nullptr;
            }
            return &(o[key] = std::move(v));
        }
        if (!key.empty()) {
            err = "keyed value inside a list";
            return nullptr;
        }
        return &top.get_array().emplace_back(std::move(v));
    };
    auto open = [&](const std::string& key, boost::json::value v) {
        if (stack.size() > guest::INFO_MAX_DEPTH) {
            err = "nesting deeper than " + std::to_string(guest::INFO_MAX_DEPTH);
            return false;
        }
        boost::json::value* child = add(key, std::move(v));
        if (!child)
            return false;
        stack.push_back(child);
        return true;
    };
    auto close = [&](bool list) {
        if (stack.size() < 2 || stack.back()->is_array() != list) {
            err = std::string("unbalanced end of ") + (list ? "list" : "object");
            return false;
        }
        stack.pop_back();
        return true;
    };

    while (!r.done()) {
        std::uint8_t t;
        r.u8(t);
        std::string key, s, s2;
        std::uint64_t v = 0;
        std::uint8_t b = 0;
        switch (static_cast<InfoToken>(t)) {
        case InfoToken::Format:
            if (!r.str8(s) || !valid_format_name(s))
                return fail("bad format name");
            info.format = s;
            break;
        case InfoToken::VirtualSize:
            if (!r.u64(info.virtual_size))
                return fail("truncated virtual size");
            break;
        case InfoToken::ClusterSize:
            if (!r.u64(v))
                return fail("truncated cluster size");
            info.cluster_size = v;
            break;
        case InfoToken::Encrypted:
        case InfoToken::Dirty:
            if (!r.u8(b) || b > 1)
                return fail("bad flag");
            (static_cast<InfoToken>(t) == InfoToken::Encrypted ? info.encrypted : info.dirty) = b != 0;
            break;
        case InfoToken::BackingFormat:
            if (!r.str16(s))
                return fail("bad backing format");
            info.backing_format = s;
            break;
        case InfoToken::Snapshot: {
            SnapshotEntry e;
            std::uint64_t date = 0, icount = 0;
            std::uint8_t has_icount = 0;
            if (!r.str16(e.id) || !r.str16(e.name) || !r.u64(e.vm_state_size) || !r.u64(date) ||
                !r.u32(e.date_nsec) || !r.u64(e.vm_clock_nsec) || !r.u8(has_icount) || !r.u64(icount) ||
                has_icount > 1)
                return fail("bad snapshot");
            if (info.snapshots.size() >= guest::INFO_MAX_SNAPSHOTS)
                return fail("more than " + std::to_string(guest::INFO_MAX_SNAPSHOTS) + " snapshots");
            e.date_sec = static_cast<std::int64_t>(date);
            if (has_icount)
                e.icount = icount;
            info.snapshots.push_back(std::move(e));
            break;
        }
        case InfoToken::FileRef:
            if (!r.u8(b) || b < 1 || b > 3 || !r.str16(s))
                return fail("bad file reference");
            if (info.files.size() >= guest::INFO_MAX_FILES)
                return fail("more than " + std::to_string(guest::INFO_MAX_FILES) + " referenced files");
            info.files.push_back({static_cast<FileRole>(b), s});
            break;
        case InfoToken::SpecificType:
            if (!r.str8(s) || !valid_format_name(s))
                return fail("bad format-specific type");
            info.specific_type = s;
            break;
        case InfoToken::BeginObject:
            if (!r.str8(key) || !open(key, boost::json::object()))
                return fail(err.empty() ? "truncated object" : err);
            break;
        case InfoToken::BeginList:
            if (!r.str8(key) || !open(key, boost::json::array()))
                return fail(err.empty() ? "truncated list" : err);
            break;
        case InfoToken::EndObject:
        case InfoToken::EndList:
            if (!close(static_cast<InfoToken>(t) == InfoToken::EndList))
                return fail(err);
            break;
        case InfoToken::String:
            if (!r.str8(key) || !r.str16(s) || !add(key, boost::json::value(s)))
                return fail(err.empty() ? "truncated string" : err);
            break;
        case InfoToken::Uint:
            if (!r.str8(key) || !r.u64(v) || !add(key, boost::json::value(v)))
                return fail(err.empty() ? "truncated number" : err);
            break;
        case InfoToken::Int:
            if (!r.str8(key) || !r.u64(v) || !add(key, boost::json::value(static_cast<std::int64_t>(v))))
                return fail(err.empty() ? "truncated number" : err);
            break;
        case InfoToken::Bool:
            if (!r.str8(key) || !r.u8(b) || b > 1 || !add(key, boost::json::value(b != 0)))
                return fail(err.empty() ? "truncated flag" : err);
            break;
        case InfoToken::Reason:
            if (!r.str16(s))
                return fail("bad reason");
            info.reason = s;
            break;
        default:
            return fail("unknown token " + std::to_string(t));
        }
    }
    if (stack.size() != 1)
        return fail("unterminated object or list");
    if (require_format && info.format.empty())
        return fail("no format name");
    info.specific = std::move(root.get_object());
    return info;
}

} // namespace instar
