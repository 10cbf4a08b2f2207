// Hosted tool: runs the VHD emitter into real files (for the create differential script).
#include "hosted_create.h"
#include "vpc_create.h"

int main(int argc, char** argv) { return instar::hosted::hosted_create_main(argc, argv, instar::vpc::create); }
