// The open-file limit for operations that hold many files at once (a vmdk's extents).
#pragma once

#include "util/expected.h"

#include <cstddef>

namespace instar {

// Many files (a vmdk's extents, up to INSTAR_MAX_DEVICES) opened into one contiguous range of
// descriptors, placed so the range splits into few aligned power-of-two blocks: the sandbox's
// system-call filter allows each block with one masked rule (vmm/seccomp_filter.h, fd_blocks), so
// 32768 extents cost a handful of BPF instructions instead of overflowing the kernel's limit.
class FdBlock {
public:
    // Room for `count` descriptors above every one open now: picks the range [base, base + count)
    // with the fewest blocks (lowest base on a tie) and raises the soft RLIMIT_NOFILE up to the
    // hard one to reach it. The error names the count and the limit when even the hard one is too low.
    static Expected<FdBlock> reserve(std::size_t count);

    // Moves `fd` into the block's next free slot (F_DUPFD_CLOEXEC, then closes `fd`) and returns its
    // new number. Should the slot have been taken meanwhile, the next free number above it; should
    // that fail, `fd` itself (the filter then allows it with a rule of its own).
    int place(int fd);

    int base() const { return base_; }

private:
    int base_ = 0;
    int next_ = 0;
};

// The number of aligned power-of-two blocks that make up [first, first + count) exactly.
std::size_t fd_block_count(std::size_t first, std::size_t count);

// Makes room for `more` open files beyond those open now: raises the soft RLIMIT_NOFILE up to the
// hard one if needed. The error names both numbers when even the hard limit is too low.
Expected<bool> reserve_open_files(std::size_t more);

// After EMFILE: raises the soft limit to the hard one. False when it already was there (or could
// not be raised); `limit` then holds the limit for the message.
bool raise_open_file_limit(std::size_t* limit);

} // namespace instar
