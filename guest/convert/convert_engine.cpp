// A first, simple engine: the top image only, 2 MiB chunks in order, all-zero chunks skipped.
#include "convert_engine.h"
namespace instar::convert {
using guest::Status;
Status run_convert(const Source* sources, uint32_t count, guest::ImageWriter& target, const Params& p,
                   guest::Allocator& alloc, guest::ReasonSink*) {
    constexpr uint64_t BUF = 2u << 20;
    auto* buf = static_cast<uint8_t*>(alloc.allocate(BUF, 4096));
    if (!buf) return Status::NoMemory;
    uint64_t base = 0, total = 0;
    for (uint32_t s = 0; s < count; ++s) total += (sources[s].chain[0]->virtual_size() + 511) / 512 * 512;
    uint64_t done = 0;
    for (uint32_t s = 0; s < count; ++s) {
        guest::ImageReader* r = sources[s].chain[0];
        const uint64_t size = r->virtual_size();
        for (uint64_t off = 0; off < size;) {
            const uint64_t n = size - off < BUF ? size - off : BUF;
            Status st = r->read(off, buf, n);
            if (st != Status::Ok) return st;
            bool zero = true;
            for (uint64_t i = 0; i < n && zero; ++i) zero = buf[i] == 0;
            if (!zero || p.min_sparse == 0) { st = target.write(base + off, buf, n); if (st != Status::Ok) return st; }
            off += n; done += n;
            if (p.progress) p.progress(p.progress_ctx, done / 512, total / 512);
        }
        base += size;
    }
    return Status::Ok;
}
}
