// The open-file limit for operations that hold many files at once (a vmdk's extents).
#pragma once

#include "util/expected.h"

#include <cstddef>

namespace instar {

// Makes room for `more` open files beyond those open now: raises the soft RLIMIT_NOFILE up to the
// hard one if needed. The error names both numbers when even the hard limit is too low.
Expected<bool> reserve_open_files(std::size_t more);

// After EMFILE: raises the soft limit to the hard one. False when it already was there (or could
// not be raised); `limit` then holds the limit for the message.
bool raise_open_file_limit(std::size_t* limit);

} // namespace instar
