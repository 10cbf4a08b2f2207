// Hosted tool: the convert engine from raw sources into a VHDX through the vhdx writer (for
// vhdx_write_differential.py). Arguments as tests/formats/hosted_convert.h's hosted_convert_main.
#include "hosted_convert.h"
#include "raw_io.h"
#include "vhdx_write.h"

int main(int argc, char** argv) {
    return instar::hosted::hosted_convert_main(argc, argv, instar::raw::open, instar::vhdx::create_writer);
}
