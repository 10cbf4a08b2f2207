// Hosted convert tool for the write differential: raw sources through the convert engine into vmdk's
// create_writer, writing real files (the image and its extents).
#include "hosted_convert.h"
#include "raw_io.h"
#include "vmdk_write.h"

int main(int argc, char** argv) {
    return instar::hosted::hosted_convert_main(argc, argv, instar::raw::open, instar::vmdk::create_writer);
}
