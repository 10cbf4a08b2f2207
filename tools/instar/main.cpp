// The `instar` executable: a thin shell around libinstar-core's command line.
#include "cli/app.h"

#include <iostream>

int main(int argc, char** argv) { return instar::cli::run(argc, argv, std::cout, std::cerr); }
