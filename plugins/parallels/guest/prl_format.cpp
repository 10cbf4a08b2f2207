// Probe and info for Parallels images (prl_format.h).
#include "prl_format.h"

#include "prl_header.h"

namespace instar::parallels {

using guest::Status;

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    if (dev.size() < PRL_HEADER_SIZE)
        return Status::Ok;
    uint8_t h[PRL_HEADER_SIZE];
    if (dev.read(0, h, sizeof h) != Status::Ok)
        return Status::Ok;
    bool m1 = true, m2 = true;
    for (size_t i = 0; i < 16; ++i) {
        m1 = m1 && h[i] == static_cast<uint8_t>(PRL_MAGIC[i]);
        m2 = m2 && h[i] == static_cast<uint8_t>(PRL_MAGIC2[i]);
    }
    *match = (m1 || m2) && load_le32(h + off::version) == PRL_VERSION;
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr)
        return Status::Invalid;
    PrlImage img;
    const char* why = nullptr;
    if (const Status st = prl_load(*req.image, req.qemu_version, &img, &why); st != Status::Ok) {
        if (why != nullptr) {
            size_t n = 0;
            while (why[n] != 0)
                ++n;
            sink.reason(why, n);
        }
        return st;
    }
    sink.format("parallels");
    sink.virtual_size(img.virtual_size());
    return Status::Ok;
}

} // namespace instar::parallels
