// Hosted tool: runs the VHD guest half on a file and prints the decoded report (for the
// differential script).
#include "hosted_support.h"
#include "vpc_format.h"

int main(int argc, char** argv) { return instar::hosted::hosted_info_main(argc, argv, &instar::vpc::probe, &instar::vpc::info); }
