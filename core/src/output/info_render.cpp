// Human and JSON rendering of info nodes, matching qemu-img 7.2 and 8.0+/10.0 byte for byte.
#include "output/info_render.h"

#include "output/qemu_format.h"

#include <boost/json.hpp>

#include <cstdio>
#include <ctime>
#include <string_view>

namespace instar {
namespace {

namespace json = boost::json;

std::string indent_of(int level) { return std::string(static_cast<std::size_t>(level) * 4, ' '); }

// dump_qobject: dict keys with '-' printed as ' ', lists as "[i]:", scalars after ": ".
void dump_value(std::string& out, int level, const json::value& v);

void dump_scalar(std::string& out, const json::value& v) {
    switch (v.kind()) {
    case json::kind::string: out += v.get_string().c_str(); break;
    case json::kind::bool_: out += v.get_bool() ? "true" : "false"; break;
    case json::kind::uint64: out += std::to_string(v.get_uint64()); break;
    case json::kind::int64: out += std::to_string(v.get_int64()); break;
    default: out += json::serialize(v); break;
    }
}

bool composite(const json::value& v) { return v.is_object() || v.is_array(); }

void dump_value(std::string& out, int level, const json::value& v) {
    if (v.is_object()) {
        for (const auto& kv : v.get_object()) {
            std::string key(kv.key());
            for (char& c : key)
                c = c == '-' ? ' ' : c;
            out += indent_of(level) + key + (composite(kv.value()) ? ":\n" : ": ");
            if (composite(kv.value())) {
                dump_value(out, level + 1, kv.value());
            } else {
                dump_scalar(out, kv.value());
                out += '\n';
            }
        }
    } else if (v.is_array()) {
        int i = 0;
        for (const auto& e : v.get_array()) {
            out += indent_of(level) + "[" + std::to_string(i++) + "]:" + (composite(e) ? "\n" : " ");
            if (composite(e)) {
                dump_value(out, level + 1, e);
            } else {
                dump_scalar(out, e);
                out += '\n';
            }
        }
    } else {
        dump_scalar(out, v);
    }
}

bool empty_dump(const json::object& o) { return o.empty(); }

// Every size the human output spells out goes through here.
std::string size_text(std::uint64_t bytes, const InfoRenderOptions& o) {
    return o.ignore_quirks ? exact_size_to_str(bytes) : qemu_size_to_str(bytes);
}

void dump_node(std::string& out, const NodeInfo& n, int level, bool protocol, const Profile& p,
               const InfoRenderOptions& o) {
    const std::string ind = indent_of(level);
    if (level == 0)
        protocol = false;
    out += ind + (protocol ? "filename: " : "image: ") + n.filename + "\n";
    out += ind + (protocol ? "protocol type: " : "file format: ") + n.format + "\n";
    out += ind + (protocol ? "file length: " : "virtual size: ") + size_text(n.virtual_size, o) + " (" +
           std::to_string(n.virtual_size) + " bytes)\n";
    out += ind + "disk size: " + (n.actual_size ? size_text(*n.actual_size, o) : "unavailable") + "\n";
    if (n.encrypted && *n.encrypted)
        out += ind + "encrypted: yes\n";
    if (n.cluster_size)
        out += ind + "cluster_size: " + std::to_string(*n.cluster_size) + "\n";
    if (n.dirty_flag)
        out += ind + "cleanly shut down: no\n";
    if (n.backing_filename) {
        out += ind + "backing file: " + *n.backing_filename;
        if (!n.full_backing_filename)
            out += " (cannot determine actual path)";
        else if (*n.full_backing_filename != *n.backing_filename)
            out += " (actual path: " + *n.full_backing_filename + ")";
        out += "\n";
        if (n.backing_filename_format)
            out += ind + "backing file format: " + *n.backing_filename_format + "\n";
    }
    if (!n.snapshots.empty()) {
        out += ind + "Snapshot list:\n" + ind + snapshot_row(nullptr, p) + "\n";
        for (const auto& s : n.snapshots)
            out += ind + snapshot_row(&s, p, o) + "\n";
    }
    if (n.specific_type) {
        const json::value data = qdict_order(json::value(n.specific));
        // 7.2 prints the heading even for empty data; 8.0+ skips an empty dump.
        if (!p.has_child_nodes() || !empty_dump(data.get_object())) {
            out += ind + "Format specific information:\n";
            dump_value(out, level + 1, data);
        }
    }
}

void dump_graph(std::string& out, const NodeInfo& n, int level, const std::string& path, const Profile& p,
                const InfoRenderOptions& o) {
    dump_node(out, n, level, n.children.empty(), p, o);
    if (!p.has_child_nodes())
        return;
    // qemu lists children newest-first (QAPI_LIST_PREPEND).
    for (auto it = n.children.rbegin(); it != n.children.rend(); ++it) {
        out += indent_of(level) + "Child node '" + path + it->first + "':\n";
        dump_graph(out, it->second, level + 1, path + it->first + "/", p, o);
    }
}

json::value snapshot_json(const SnapshotEntry& s) {
    // SnapshotInfo field order: id, name, vm-state-size, date-sec, date-nsec, vm-clock-sec,
    // vm-clock-nsec, icount.
    json::object o;
    o["id"] = s.id;
    o["name"] = s.name;
    o["vm-state-size"] = s.vm_state_size;
    o["date-sec"] = s.date_sec;
    o["date-nsec"] = s.date_nsec;
    o["vm-clock-sec"] = s.vm_clock_nsec / 1000000000;
    o["vm-clock-nsec"] = s.vm_clock_nsec % 1000000000;
    if (s.icount)
        o["icount"] = *s.icount;
    return o;
}

json::object node_json(const NodeInfo& n, const Profile& p) {
    // BlockNodeInfo field order (qapi/block-core.json), then BlockGraphInfo's children.
    json::object o;
    o["filename"] = n.filename;
    o["format"] = n.format;
    if (n.has_dirty_flag)
        o["dirty-flag"] = n.dirty_flag;
    if (n.actual_size)
        o["actual-size"] = *n.actual_size;
    o["virtual-size"] = n.virtual_size;
    if (n.cluster_size)
        o["cluster-size"] = *n.cluster_size;
    if (n.encrypted && *n.encrypted) // qemu sets has_encrypted only for encrypted images
        o["encrypted"] = true;
    if (n.backing_filename)
        o["backing-filename"] = *n.backing_filename;
    if (n.full_backing_filename)
        o["full-backing-filename"] = *n.full_backing_filename;
    if (n.backing_filename_format)
        o["backing-filename-format"] = *n.backing_filename_format;
    if (!n.snapshots.empty()) {
        json::array a;
        for (const auto& s : n.snapshots)
            a.push_back(snapshot_json(s));
        o["snapshots"] = std::move(a);
    }
    if (n.specific_type)
        o["format-specific"] = json::object{{"type", *n.specific_type}, {"data", n.specific}};
    if (p.has_child_nodes()) {
        json::array children;
        for (auto it = n.children.rbegin(); it != n.children.rend(); ++it)
            children.push_back(json::object{{"name", it->first}, {"info", node_json(it->second, p)}});
        o["children"] = std::move(children);
    }
    return o;
}

} // namespace

NodeInfo file_protocol_node(const std::string& filename, std::uint64_t length, std::uint64_t allocated,
                            bool whole_sectors) {
    NodeInfo n;
    n.filename = filename;
    n.format = "file";
    // qemu's bdrv_getlength() counts whole 512-byte sectors, so a partial last sector rounds up.
    n.virtual_size = !whole_sectors || length > UINT64_MAX - 511 ? length : (length + 511) / 512 * 512;
    n.actual_size = allocated;
    n.specific_type = "file";
    return n;
}

std::string snapshot_row(const SnapshotEntry* sn, const Profile& p, const InfoRenderOptions& o) {
    const bool v10 = p.getopt_messages(); // the 10.0 table layout arrived with the 10.0 CLI rework
    char buf[512];
    if (!sn) {
        if (v10)
            std::snprintf(buf, sizeof buf, "%-7s %-16s %8s %19s %15s %10s", "ID", "TAG", "VM_SIZE", "DATE",
                          "VM_CLOCK", "ICOUNT");
        else
            std::snprintf(buf, sizeof buf, "%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
                          "ICOUNT");
        return buf;
    }
    const std::time_t t = static_cast<std::time_t>(sn->date_sec);
    std::tm tm{};
    localtime_r(&t, &tm);
    char date[64];
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
    const std::uint64_t secs = sn->vm_clock_nsec / 1000000000;
    char clock[64];
    std::snprintf(clock, sizeof clock, v10 ? "%04d:%02d:%02d.%03d" : "%02d:%02d:%02d.%03d",
                  static_cast<int>(secs / 3600), static_cast<int>((secs / 60) % 60), static_cast<int>(secs % 60),
                  static_cast<int>((sn->vm_clock_nsec / 1000000) % 1000));
    const std::string icount = sn->icount ? std::to_string(*sn->icount) : (v10 ? "--" : "");
    const std::string size = size_text(sn->vm_state_size, o);
    if (v10)
        std::snprintf(buf, sizeof buf, "%-7s %-16s %8s %19s %15s %10s", sn->id.c_str(), sn->name.c_str(), size.c_str(),
                      date, clock, icount.c_str());
    else
        std::snprintf(buf, sizeof buf, "%-9s %-16s %8s%20s%13s%11s", sn->id.c_str(), sn->name.c_str(), size.c_str(),
                      date, clock, icount.c_str());
    return buf;
}

std::string render_info_human(const NodeInfo& node, const Profile& profile, const InfoRenderOptions& opts) {
    std::string out;
    dump_graph(out, node, 0, "/", profile, opts);
    return out;
}

boost::json::value info_json(const NodeInfo& node, const Profile& profile) {
    return qdict_order(json::value(node_json(node, profile)));
}

} // namespace instar
