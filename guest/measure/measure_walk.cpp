// qcow2_measure's loop (measure_walk.h).
#include "measure_walk.h"

namespace instar::measure {

using guest::Status;

// qemu's sizes are int64_t: no image it opens is larger, and below this rounding up cannot overflow.
constexpr uint64_t MAX_VIRTUAL_SIZE = 0x7FFFFFFFFFFFFFFFull;

Status required_bytes(const convert::ChainReader& chain, uint32_t cluster_size, uint64_t* required) {
    if (cluster_size == 0 || (cluster_size & (cluster_size - 1)) != 0)
        return Status::Invalid;
    const uint64_t size = chain.virtual_size();
    if (size > MAX_VIRTUAL_SIZE)
        return Status::Invalid;
    const uint64_t mask = static_cast<uint64_t>(cluster_size) - 1;
    uint64_t total = 0;
    uint64_t offset = 0;
    while (offset < size) {
        convert::ChainClass cls = convert::ChainClass::Zero;
        uint64_t run = 0;
        if (const Status st = chain.status(offset, size - offset, false, &cls, &run); st != Status::Ok)
            return st;
        if (run == 0 || run > size - offset)
            return Status::Corrupt; // ChainReader clips; never loop on a broken answer
        if (cls == convert::ChainClass::Data) {
            // qemu: pnum = ROUND_UP(offset + pnum, cluster_size) - offset; required += offset % cs + pnum,
            // i.e. every cluster the run touches, once (the next run starts on a cluster boundary).
            // offset + run <= size <= MAX_VIRTUAL_SIZE, so rounding up cannot overflow.
            const uint64_t end = (offset + run + mask) & ~mask;
            total += end - (offset & ~mask);
            offset = end;
        } else {
            offset += run;
        }
    }
    *required = total;
    return Status::Ok;
}

} // namespace instar::measure
