// The operations the runtime itself implements (enum instar_op); format work lives in modules.
#include "info_first.h"
#include "runtime.h"

namespace instar::guest {
namespace {

template <typename T>
bool read_arg(const uint8_t* arg, uint32_t len, T* out) {
    if (len != sizeof(T)) return false;
    __builtin_memcpy(out, arg, sizeof(T));
    return true;
}

Status selftest(const uint8_t* arg, uint32_t arg_len) {
    instar_selftest_arg a{};
    if (!read_arg(arg, arg_len, &a)) return Status::Invalid;
    BlockDevice* dev = device(0);
    if (dev == nullptr) return Status::Invalid;
    uint64_t n = dev->size() < a.crc_limit ? dev->size() : a.crc_limit;
    void* buf = arena().allocate(n == 0 ? 1 : n, 4096);
    if (buf == nullptr) return Status::NoMemory;
    Status st = dev->read(0, buf, n);
    if (st != Status::Ok) return st;
    instar_selftest_record rec{};
    rec.device_size = dev->size();
    rec.bytes_read = n;
    rec.crc32 = services().crc32(0, buf, n);
    const ModuleOps* m = module(0);
    if (m != nullptr && m->probe != nullptr) {
        bool match = false;
        st = m->probe(*dev, &match);
        if (st != Status::Ok) return st;
        if (match) rec.flags |= INSTAR_SELFTEST_MODULE_MATCH;
    }
    arena().deallocate(buf, n);
    return services().send_record(INSTAR_REC_SELFTEST, &rec, sizeof(rec));
}

Status read_bench(const uint8_t* arg, uint32_t arg_len) {
    instar_read_bench_arg a{};
    if (!read_arg(arg, arg_len, &a) || a.chunk == 0) return Status::Invalid;
    BlockDevice* dev = device(a.device);
    if (dev == nullptr) return Status::Invalid;
    void* buf = arena().allocate(a.chunk, 4096);
    if (buf == nullptr) return Status::NoMemory;
    for (uint64_t off = 0; off < a.length;) {
        uint64_t n = a.length - off < a.chunk ? a.length - off : a.chunk;
        Status st = dev->read(off, buf, n);
        if (st != Status::Ok) return st;
        off += n;
    }
    return Status::Ok;
}

// Bytes of info tokens per record: well under INSTAR_MAX_RECORD_SIZE, above InfoEncoder's largest token.
constexpr size_t INFO_RECORD_BYTES = 32u << 10;

Status send_info_chunk(void*, const uint8_t* data, size_t len) {
    return services().send_record(INSTAR_REC_INFO, data, len);
}

// The first module whose probe matches device 0 reports on it; devices 1.. are its referenced files.
Status info(const uint8_t* arg, uint32_t arg_len) {
    instar_info_arg a{};
    if (!read_arg(arg, arg_len, &a) || a.module_count > module_count() || a.file_count >= device_count() ||
        a.file_count > INSTAR_MAX_DEVICES - 1)
        return Status::Invalid;
    BlockDevice* image = device(0);
    // In the arena, not on the stack: a vmdk may name up to INSTAR_MAX_ADDED_FILES extents.
    auto** files = static_cast<BlockDevice**>(
        arena().allocate((a.file_count == 0 ? 1 : a.file_count) * sizeof(BlockDevice*), alignof(BlockDevice*)));
    if (files == nullptr)
        return Status::NoMemory;
    for (uint32_t i = 0; i < a.file_count; ++i)
        files[i] = device(i + 1);
    auto* buf = static_cast<uint8_t*>(arena().allocate(INFO_RECORD_BYTES, 16));
    if (buf == nullptr)
        return Status::NoMemory;
    InfoEncoder sink(buf, INFO_RECORD_BYTES, send_info_chunk, nullptr);
    InfoRequest req{image, &arena(), files, a.file_count, a.qemu_version,
                    (a.flags & INSTAR_INFO_NO_KEY) ? guest::INFO_REQUEST_NO_KEY : 0u};
    auto report = [&](const ModuleOps* ops) {
        const Status st = ops->info(req, sink);
        const Status flushed = sink.finish();
        return st != Status::Ok ? st : flushed;
    };
    if (a.flags & INSTAR_INFO_FORCE) {
        const ModuleOps* ops = module(0);
        return ops != nullptr && ops->info != nullptr ? report(ops) : Status::Invalid;
    }
    for (uint32_t m = 0; m < a.module_count; ++m) {
        const ModuleOps* ops = module(m);
        if (ops->probe == nullptr || ops->info == nullptr)
            continue;
        bool match = false;
        const Status st = ops->probe(*image, &match);
        if (st != Status::Ok)
            return st;
        if (match)
            return report(ops);
    }
    // Nothing matched: say which unsupported format it is, if a module can tell.
    for (uint32_t m = 0; m < a.module_count; ++m) {
        const ModuleOps* ops = module(m);
        const char* name = nullptr;
        if (ops->detect_other != nullptr && ops->detect_other(*image, &name) == Status::Ok && name != nullptr) {
            static constexpr char PREFIX[] = "unsupported format: ";
            char text[64] = {};
            size_t n = 0;
            for (; PREFIX[n] != 0; ++n)
                text[n] = PREFIX[n];
            for (size_t i = 0; name[i] != 0 && n < sizeof text - 1; ++i)
                text[n++] = name[i];
            sink.reason(text, n);
            const Status flushed = sink.finish();
            return flushed != Status::Ok ? flushed : Status::Unsupported;
        }
    }
    static constexpr char NO_MATCH[] = "no format module recognised the image";
    sink.reason(NO_MATCH, sizeof NO_MATCH - 1);
    const Status flushed = sink.finish();
    return flushed != Status::Ok ? flushed : Status::Unsupported;
}

} // namespace

Status dispatch(uint32_t op, const uint8_t* arg, uint32_t arg_len) {
    switch (op) {
    case INSTAR_OP_NOP:
        return Status::Ok;
    case INSTAR_OP_SELFTEST:
        return selftest(arg, arg_len);
    case INSTAR_OP_MODULE_RUN: {
        const ModuleOps* m = module(0);
        if (m == nullptr || m->run == nullptr) return Status::Invalid;
        return m->run(arg, arg_len);
    }
    case INSTAR_OP_READ_BENCH:
        return read_bench(arg, arg_len);
    case INSTAR_OP_INFO:
        return info(arg, arg_len);
    case INSTAR_OP_CREATE:
        return create_op(arg, arg_len);
    case INSTAR_OP_CONVERT:
        return convert_op(arg, arg_len);
    case INSTAR_OP_CHECK:
        return check_op(arg, arg_len);
    case INSTAR_OP_EDIT:
        return edit_op(arg, arg_len);
    case INSTAR_OP_COMPARE:
        return compare_op(arg, arg_len);
    case INSTAR_OP_REBASE:
        return rebase_op(arg, arg_len);
    case INSTAR_OP_MAP:
        return map_op(arg, arg_len);
    case INSTAR_OP_MEASURE:
        return measure_op(arg, arg_len);
    case INSTAR_OP_COMMIT:
        return commit_op(arg, arg_len);
    case INSTAR_OP_INFO_FIRST:
        return info_first_op(arg, arg_len);
    default:
        log_str("runtime: unknown operation");
        return Status::Invalid;
    }
}

} // namespace instar::guest
