// qcow2_hosted_read [--file DATA] [-l SNAPSHOT] IMAGE [OUT.raw]: the qcow2 reader run hosted, for the
// differential test against qemu-img convert and map.
#include "hosted_read.h"
#include "qcow2_read.h"

int main(int argc, char** argv) { return instar::hosted::hosted_read_main(instar::qcow2::open, argc, argv); }
