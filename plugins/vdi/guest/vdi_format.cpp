// The VDI format's guest half: probe and `info`, following qemu's block/vdi.c.
#include "vdi_format.h"

#include "vdi_header.h"

namespace instar::vdi {

using guest::Status;

Status probe(guest::BlockDevice& dev, bool* match) {
    *match = false;
    if (dev.size() < VDI_HEADER_SIZE)
        return Status::Ok;
    uint8_t buf[VDI_HEADER_SIZE];
    if (dev.read(0, buf, sizeof buf) != Status::Ok)
        return Status::Ok;
    *match = vdi_signature(buf, sizeof buf);
    return Status::Ok;
}

Status info(const guest::InfoRequest& req, guest::InfoSink& sink) {
    if (req.image == nullptr)
        return Status::Invalid;
    VdiImage img;
    const char* why = nullptr;
    const Status st = vdi_load(*req.image, &img, &why);
    if (st != Status::Ok) {
        if (why != nullptr) {
            size_t n = 0;
            while (why[n] != 0)
                ++n;
            sink.reason(why, n);
        }
        return st;
    }
    sink.format("vdi");
    sink.virtual_size(img.disk_size);
    sink.cluster_size(VDI_BLOCK_SIZE); // qemu's vdi_get_info: the block size
    sink.dirty(false);
    return Status::Ok;
}

} // namespace instar::vdi
