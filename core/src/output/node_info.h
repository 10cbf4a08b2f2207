// One node of `qemu-img info` output (qemu's BlockNodeInfo / BlockGraphInfo), as the host assembles
// it from the guest's validated report and what the host itself knows (names, file sizes).
#pragma once

#include "info/image_info.h"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace instar {

struct NodeChild;

struct NodeInfo {
    std::string filename;
    std::string format;
    bool dirty_flag = false;
    // qemu sets dirty-flag only when the driver answers bdrv_get_info (bochs, cloop and dmg do not).
    bool has_dirty_flag = true;
    std::optional<std::uint64_t> actual_size;
    std::uint64_t virtual_size = 0;
    std::optional<std::uint64_t> cluster_size;
    std::optional<bool> encrypted;
    std::optional<std::string> backing_filename;
    std::optional<std::string> full_backing_filename;
    std::optional<std::string> backing_filename_format;
    std::vector<SnapshotEntry> snapshots; // printed only when non-empty, as qemu does
    std::optional<std::string> specific_type;
    boost::json::object specific; // "data", in QAPI field order
    // 8.0+: "file", "extents.0", ... A vector of a type completed below, not of
    // std::pair<std::string, NodeInfo>: the pair needs NodeInfo complete where the vector is declared,
    // which libstdc++ with clang refuses (NodeInfo is still incomplete here).
    std::vector<NodeChild> children;
};

// A child node and the name qemu gives it (first/second, as the pair it replaces).
struct NodeChild {
    NodeChild(std::string name, NodeInfo node) : first(std::move(name)), second(std::move(node)) {}
    std::string first;
    NodeInfo second;
};

// The protocol node qemu 8.0+ shows as Child node '/file': a plain file's length and allocation.
// qemu reports the length in whole 512-byte sectors; whole_sectors = false keeps the real length
// (--ignore-quirks).
NodeInfo file_protocol_node(const std::string& filename, std::uint64_t length, std::uint64_t allocated,
                            bool whole_sectors = true);

} // namespace instar
