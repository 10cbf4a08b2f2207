// `qemu-img info` rendering, human and JSON, per qemu-img version profile.
#pragma once

#include "output/node_info.h"
#include "output/profile.h"

#include <boost/json/value.hpp>

#include <string>

namespace instar {

// instar's own rendering choices, on top of the qemu-img profile.
struct InfoRenderOptions {
    // --ignore-quirks: size text without qemu's %0.3g rounding (exact_size_to_str). The true sizes
    // themselves (st_size, unrounded file length) are already in the nodes (collect_info).
    bool ignore_quirks = false;
};

// The human dump of one image (bdrv_node_info_dump + the child nodes in 8.0+).
std::string render_info_human(const NodeInfo& node, const Profile& profile, const InfoRenderOptions& opts = {});

// The JSON value of one image, keys in qemu's order (children only in 8.0+).
boost::json::value info_json(const NodeInfo& node, const Profile& profile);

// One snapshot table row or (sn == nullptr) the header, without newline, as bdrv_snapshot_dump.
std::string snapshot_row(const SnapshotEntry* sn, const Profile& profile, const InfoRenderOptions& opts = {});

} // namespace instar
