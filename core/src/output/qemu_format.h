// qemu's small formatting primitives: size_to_str() and the QDict iteration order of its JSON.
#pragma once

#include <boost/json/value.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace instar {

// qemu's size_to_str(): "%0.3g %sB" in powers of 1024, switching unit at 1000 ("1000 KiB" never
// appears: it is "0.977 MiB").
std::string qemu_size_to_str(std::uint64_t bytes);

// instar's size text without qemu's rounding quirks (--ignore-quirks): powers of 1024, the largest
// unit the value reaches; a whole number of units prints as an integer ("1 GiB", "512 B"), anything
// else with one decimal, rounded half up ("192.5 KiB", "20.7 MiB", "1.0 GiB" for 1 GiB + 1 byte).
std::string exact_size_to_str(std::uint64_t bytes);

// The bucket qemu's QDict puts `key` in: tdb_hash(key) % QDICT_BUCKET_MAX.
unsigned qdict_bucket(std::string_view key);

// Reorders every object in `v` (recursively) the way qemu iterates a QDict: by ascending bucket,
// later-inserted first within a bucket. Objects must arrive in QAPI visit (insertion) order.
boost::json::value qdict_order(const boost::json::value& v);

} // namespace instar
