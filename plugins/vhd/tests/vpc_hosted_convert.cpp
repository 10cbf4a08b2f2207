// Hosted tool: converts a raw file to VHD with the vpc writer (for vpc_write_differential.py).
#include "hosted_write_driver.h"
#include "vpc_write.h"

int main(int argc, char** argv) { return instar::hosted::hosted_write_main(argc, argv, instar::vpc::create_writer); }
