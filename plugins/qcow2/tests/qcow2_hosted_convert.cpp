// The hosted qcow2 convert tool for the differential check: raw sources (plugins/raw's reader)
// into a qcow2 target through qcow2's writer (see tests/formats/hosted_convert.h).
#include "hosted_convert.h"
#include "qcow2_write.h"
#include "raw_io.h"

int main(int argc, char** argv) {
    return instar::hosted::hosted_convert_main(argc, argv, instar::raw::open, instar::qcow2::create_writer);
}
