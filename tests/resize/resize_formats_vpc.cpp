// Hosted resize driver for vpc (resize_formats_hosted.h).
#include "resize_formats_hosted.h"
#include "vpc_edit.h"

int main(int argc, char** argv) { return instar::hosted::resize_formats_main(argc, argv, instar::vpc::edit); }
