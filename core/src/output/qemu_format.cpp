// size_to_str and QDict ordering, reproduced from qemu's util/cutils.c and qobject/qdict.c.
#include "output/qemu_format.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

namespace instar {

std::string qemu_size_to_str(std::uint64_t val) {
    static const char* const SUFFIXES[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int i = 0;
    // The exponent minus one is floor(log2(val * 1024 / 1000)); the correction switches to the
    // larger unit once the integer part would reach 1000.
    std::frexp(static_cast<double>(val) / (1000.0 / 1024.0), &i);
    i = (i - 1) / 10;
    const std::uint64_t div = std::uint64_t{1} << (i * 10);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%0.3g %sB", static_cast<double>(val) / static_cast<double>(div), SUFFIXES[i]);
    return buf;
}

std::string exact_size_to_str(std::uint64_t val) {
    static const char* const SUFFIXES[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    while (i < 6 && val >> ((i + 1) * 10) != 0)
        ++i;
    // Tenths of the unit, rounded half up; a value that rounds up to 1024.0 moves to the next unit.
    const auto tenths = [val](int unit) {
        const std::uint64_t div = std::uint64_t{1} << (unit * 10);
        return val / div * 10 + (val % div * 10 + div / 2) / div;
    };
    std::uint64_t t = tenths(i);
    if (t >= 10240 && i < 6)
        t = tenths(++i);
    char buf[64];
    if (val % (std::uint64_t{1} << (i * 10)) == 0)
        std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(val >> (i * 10)), SUFFIXES[i]);
    else
        std::snprintf(buf, sizeof buf, "%llu.%llu %s", static_cast<unsigned long long>(t / 10),
                      static_cast<unsigned long long>(t % 10), SUFFIXES[i]);
    return buf;
}

unsigned qdict_bucket(std::string_view key) {
    // QDICT_BUCKET_MAX in qemu's include/qobject/qdict.h.
    constexpr unsigned QDICT_BUCKET_MAX = 512;
    std::uint32_t value = 0x238F13AFu * static_cast<std::uint32_t>(key.size());
    for (std::size_t i = 0; i < key.size(); ++i)
        value += static_cast<std::uint32_t>(static_cast<unsigned char>(key[i])) << (i * 5 % 24);
    return (1103515243u * value + 12345u) % QDICT_BUCKET_MAX;
}

boost::json::value qdict_order(const boost::json::value& v) {
    if (v.is_array()) {
        boost::json::array out;
        for (const auto& e : v.get_array())
            out.push_back(qdict_order(e));
        return out;
    }
    if (!v.is_object())
        return v;
    struct Entry {
        unsigned bucket;
        std::size_t inserted;
        const boost::json::key_value_pair* kv;
    };
    std::vector<Entry> entries;
    std::size_t n = 0;
    for (const auto& kv : v.get_object())
        entries.push_back({qdict_bucket(kv.key()), n++, &kv});
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        return a.bucket != b.bucket ? a.bucket < b.bucket : a.inserted > b.inserted;
    });
    boost::json::object out;
    for (const auto& e : entries)
        out[e.kv->key()] = qdict_order(e.kv->value());
    return out;
}

} // namespace instar
