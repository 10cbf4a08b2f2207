// `qemu-img info` rendering, human and JSON, per qemu-img version profile.
#pragma once

#include "output/node_info.h"
#include "output/profile.h"

#include <boost/json/value.hpp>

#include <string>

namespace instar {

// The human dump of one image (bdrv_node_info_dump + the child nodes in 8.0+).
std::string render_info_human(const NodeInfo& node, const Profile& profile);

// The JSON value of one image, keys in qemu's order (children only in 8.0+).
boost::json::value info_json(const NodeInfo& node, const Profile& profile);

// One snapshot table row or (sn == nullptr) the header, without newline, as bdrv_snapshot_dump.
std::string snapshot_row(const SnapshotEntry* sn, const Profile& profile);

} // namespace instar
