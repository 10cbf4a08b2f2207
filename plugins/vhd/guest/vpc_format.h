// The VHD (qemu: vpc) format's guest half: detection and `info`.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

namespace instar::vpc {

// True for a footer cookie at offset 0 (dynamic/differencing) or in the last 512 bytes of a fixed disk.
guest::Status probe(guest::BlockDevice& dev, bool* match);

// Reports format "vpc", qemu's virtual size and cluster size, and a differencing disk's parent.
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::vpc
