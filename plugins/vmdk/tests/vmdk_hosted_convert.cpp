// Hosted convert tool for the write differential: raw sources (and vmdk ones, e.g. a -B base)
// through the convert engine into vmdk's create_writer, writing real files (the image and its
// extents).
#include "hosted_convert.h"
#include "raw_io.h"
#include "vmdk_format.h"
#include "vmdk_read.h"
#include "vmdk_write.h"

namespace {

// vmdk's reader for what vmdk's probe claims (monolithic images: no extent files), raw's otherwise.
instar::guest::Status open_any(const instar::guest::OpenRequest& req, instar::guest::ImageReader** out) {
    bool vmdk = false;
    if (const auto st = instar::vmdk::probe(*req.image, &vmdk); st != instar::guest::Status::Ok)
        return st;
    return vmdk ? instar::vmdk::open(req, out) : instar::raw::open(req, out);
}

} // namespace

int main(int argc, char** argv) {
    return instar::hosted::hosted_convert_main(argc, argv, open_any, instar::vmdk::create_writer);
}
