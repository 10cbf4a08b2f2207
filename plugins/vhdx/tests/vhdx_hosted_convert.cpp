// Hosted tool: converts a raw file to VHDX with the vhdx writer (for vhdx_write_differential.py).
#include "hosted_write_driver.h"
#include "vhdx_write.h"

int main(int argc, char** argv) { return instar::hosted::hosted_write_main(argc, argv, instar::vhdx::create_writer); }
