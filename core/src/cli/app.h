// The `instar` command line: global options, then dispatch to one subcommand.
#pragma once

#include <iosfwd>

namespace instar::cli {

// Runs instar as `argv` asks; returns the exit status.
int run(int argc, char** argv, std::ostream& out, std::ostream& err);

} // namespace instar::cli
