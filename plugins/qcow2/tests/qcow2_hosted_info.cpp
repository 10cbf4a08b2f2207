// qcow2_hosted_info FILE: runs the qcow2 guest half hosted and prints its decoded report (for the
// differential test against qemu-img).
#include "hosted_support.h"
#include "qcow2_format.h"

int main(int argc, char** argv) {
    return instar::hosted::hosted_info_main(argc, argv, instar::qcow2::probe, instar::qcow2::info);
}
