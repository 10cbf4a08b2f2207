// Hosted tool: runs the VHDX guest half on a file and prints the decoded report (for the
// differential script).
#include "hosted_support.h"
#include "vhdx_format.h"

int main(int argc, char** argv) { return instar::hosted::hosted_info_main(argc, argv, &instar::vhdx::probe, &instar::vhdx::info); }
