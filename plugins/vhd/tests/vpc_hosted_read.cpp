// Hosted tool: runs the VHD reader on a file, printing its extents and dumping its bytes (for the
// read differential).
#include "hosted_read.h"
#include "vpc_read.h"

int main(int argc, char** argv) { return instar::hosted::hosted_read_main(&instar::vpc::open, argc, argv); }
