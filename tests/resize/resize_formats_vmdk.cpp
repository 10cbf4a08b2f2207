// Hosted resize driver for vmdk (resize_formats_hosted.h).
#include "resize_formats_hosted.h"
#include "vmdk_edit.h"

int main(int argc, char** argv) { return instar::hosted::resize_formats_main(argc, argv, instar::vmdk::edit); }
