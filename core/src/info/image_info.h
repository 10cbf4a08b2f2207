// What `info` knows about one image, on the host, after the guest's report has been validated.
#pragma once

#include "instar/guest/info_sink.h"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace instar {

struct SnapshotEntry {
    std::string id;
    std::string name;
    std::uint64_t vm_state_size = 0;
    std::int64_t date_sec = 0;
    std::uint32_t date_nsec = 0;
    std::uint64_t vm_clock_nsec = 0;
    std::optional<std::uint64_t> icount;
};

struct FileReference {
    guest::FileRole role;
    std::string name; // exact bytes from the image: untrusted, resolved only by the path policy
};

struct ImageInfo {
    std::string format;
    std::uint64_t virtual_size = 0;
    std::optional<std::uint64_t> cluster_size;
    std::optional<bool> encrypted;
    std::optional<bool> dirty;
    std::optional<std::string> backing_format;
    std::vector<SnapshotEntry> snapshots;
    std::vector<FileReference> files;
    std::optional<std::string> specific_type;
    boost::json::object specific; // the "data" object, keys in the order the guest sent them
    std::string reason;           // the guest's explanation of a failure (untrusted text)

    const FileReference* first_file(guest::FileRole role) const;
};

} // namespace instar
