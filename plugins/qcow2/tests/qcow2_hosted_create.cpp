// The hosted qcow2 create tool for the differential check (see tests/formats/hosted_create.h).
#include "hosted_create.h"
#include "qcow2_create.h"

int main(int argc, char** argv) { return instar::hosted::hosted_create_main(argc, argv, instar::qcow2::create); }
