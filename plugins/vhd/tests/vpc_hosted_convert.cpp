// Hosted tool: the convert engine from raw sources into a VHD through the vpc writer (for
// vpc_write_differential.py). Arguments as tests/formats/hosted_convert.h's hosted_convert_main.
#include "hosted_convert.h"
#include "raw_io.h"
#include "vpc_write.h"

int main(int argc, char** argv) {
    return instar::hosted::hosted_convert_main(argc, argv, instar::raw::open, instar::vpc::create_writer);
}
