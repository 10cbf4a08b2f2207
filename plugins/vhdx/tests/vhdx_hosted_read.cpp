// Hosted tool: runs the VHDX reader on a file, printing its extents and dumping its bytes (for the
// read differential).
#include "hosted_read.h"
#include "vhdx_read.h"

int main(int argc, char** argv) { return instar::hosted::hosted_read_main(&instar::vhdx::open, argc, argv); }
