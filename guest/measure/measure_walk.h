// qemu-img measure's allocation walk (qcow2_measure's loop over bdrv_block_status_above), over a
// backing chain composed by convert's ChainReader. Freestanding-clean: the same source runs in the
// guest runtime (INSTAR_OP_MEASURE) and hosted in tests/formats (hosted_measure).
#pragma once

#include "chain_reader.h"

#include <stdint.h>

namespace instar::measure {

// The bytes of target clusters (cluster_size, a power of two) that hold any byte the chain reports as
// data, over [0, chain.virtual_size()): qemu's `required` before metadata is added. Zero and
// unallocated ranges count nothing (safe: the target has no backing file).
guest::Status required_bytes(const convert::ChainReader& chain, uint32_t cluster_size, uint64_t* required);

} // namespace instar::measure
