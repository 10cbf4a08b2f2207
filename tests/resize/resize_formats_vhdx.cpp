// Hosted resize driver for vhdx (resize_formats_hosted.h).
#include "resize_formats_hosted.h"
#include "vhdx_edit.h"

int main(int argc, char** argv) { return instar::hosted::resize_formats_main(argc, argv, instar::vhdx::edit); }
