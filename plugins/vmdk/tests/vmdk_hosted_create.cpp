// Hosted create tool for the differential check: vmdk's create() writing real files.
#include "hosted_create.h"
#include "vmdk_create.h"

int main(int argc, char** argv) { return instar::hosted::hosted_create_main(argc, argv, instar::vmdk::create); }
