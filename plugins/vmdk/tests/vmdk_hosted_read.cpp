// Hosted tool: runs the VMDK reader on an image and its extent files (for the read differential).
#include "hosted_read.h"
#include "vmdk_read.h"

int main(int argc, char** argv) { return instar::hosted::hosted_read_main(&instar::vmdk::open, argc, argv); }
