// qemu's qed_check (qed_check_l1_table, qed_check_l2_table, qed_check_for_leaks,
// qed_check_mark_clean), with qemu's cluster numbering (qed_bytes_to_clusters divides by
// cluster_size - 1, so on large files clusters shift and the count grows: reproduced, it decides
// the leak count qemu prints).
#include "qed_check.h"

#include "qed_bytes.h"
#include "qed_format.h"

#include <instar/guest/format_util.h>

namespace instar::qed {

using guest::CheckResult;
using guest::Status;

namespace {

constexpr size_t IO_CHUNK = 64 * 1024; // table bytes converted at a time

struct Checker {
    guest::BlockDevice& dev;
    guest::Allocator& alloc;
    QedImage& s;
    CheckResult& r;
    bool fix;
    uint64_t nclusters = 0;
    uint32_t* used = nullptr;
    uint64_t* l1 = nullptr;
    uint64_t* l2 = nullptr;
    uint8_t* io = nullptr;

    bool test_bit(uint64_t n) const { return n < nclusters && (used[n / 32] & (1u << (n % 32))) != 0; }
    void set_bit(uint64_t n) {
        if (n < nclusters)
            used[n / 32] |= 1u << (n % 32);
    }

    bool set_used_clusters(uint64_t offset, uint64_t n) {
        uint64_t cluster = s.bytes_to_clusters(offset);
        uint64_t corruptions = 0;
        while (n-- != 0) {
            if (test_bit(cluster))
                corruptions++;
            set_bit(cluster);
            cluster++;
        }
        r.corruptions += corruptions;
        return corruptions == 0;
    }

    Status read_table(uint64_t offset, uint64_t* table) {
        const uint64_t bytes = s.table_bytes();
        for (uint64_t done = 0; done < bytes;) {
            const uint64_t n = bytes - done < IO_CHUNK ? bytes - done : IO_CHUNK;
            if (const Status st = dev.read(offset + done, io, static_cast<size_t>(n)); st != Status::Ok)
                return st;
            for (uint64_t i = 0; i < n / 8; ++i)
                table[done / 8 + i] = load_le64(io + 8 * i);
            done += n;
        }
        return Status::Ok;
    }

    Status write_table(uint64_t offset, const uint64_t* table) {
        const uint64_t bytes = s.table_bytes();
        for (uint64_t done = 0; done < bytes;) {
            const uint64_t n = bytes - done < IO_CHUNK ? bytes - done : IO_CHUNK;
            for (uint64_t i = 0; i < n / 8; ++i)
                store_le64(io + 8 * i, table[done / 8 + i]);
            if (const Status st = dev.write(offset + done, io, static_cast<size_t>(n)); st != Status::Ok)
                return st;
            done += n;
        }
        return Status::Ok;
    }

    uint32_t check_l2(uint64_t* table) {
        uint32_t invalid = 0;
        uint64_t last = 0;
        for (uint32_t i = 0; i < s.table_nelems; ++i) {
            const uint64_t offset = table[i];
            if (offset == 0 || offset == 1)
                continue;
            r.allocated_clusters++;
            if (last != 0 && last + s.cluster_size() != offset)
                r.fragmented_clusters++;
            last = offset;
            if (!s.check_cluster_offset(offset)) {
                if (fix) {
                    table[i] = 0;
                    r.corruptions_fixed++;
                } else {
                    r.corruptions++;
                }
                invalid++;
                continue;
            }
            set_used_clusters(offset, 1);
        }
        return invalid;
    }

    // Returns qemu's last_error as a Status (Ok when none).
    Status check_l1() {
        Status last_error = Status::Ok;
        uint32_t invalid_l1 = 0;
        set_used_clusters(s.header.l1_table_offset, s.header.table_size);
        for (uint32_t i = 0; i < s.table_nelems; ++i) {
            const uint64_t offset = l1[i];
            if (offset == 0)
                continue;
            if (!s.check_table_offset(offset)) {
                if (fix) {
                    l1[i] = 0;
                    r.corruptions_fixed++;
                } else {
                    r.corruptions++;
                }
                invalid_l1++;
                continue;
            }
            if (!set_used_clusters(offset, s.header.table_size))
                continue; // skip an invalid table
            if (const Status st = read_table(offset, l2); st != Status::Ok) {
                r.check_errors++;
                last_error = st;
                continue;
            }
            const uint32_t invalid_l2 = check_l2(l2);
            if (invalid_l2 > 0 && fix) {
                if (const Status st = write_table(offset, l2); st != Status::Ok) {
                    r.check_errors++;
                    last_error = st;
                    continue;
                }
            }
        }
        if (invalid_l1 > 0 && fix) {
            if (const Status st = write_table(s.header.l1_table_offset, l1); st != Status::Ok) {
                r.check_errors++;
                last_error = st;
            }
        }
        return last_error;
    }

    void check_for_leaks() {
        for (uint64_t i = s.header.header_size; i < nclusters; ++i)
            if (!test_bit(i))
                r.leaks++;
    }
};

// ctx: the CheckRequest, whose flush is a plain function.
Status request_flush(void* ctx, guest::BlockDevice& dev) {
    return static_cast<const guest::CheckRequest*>(ctx)->flush(dev);
}

int32_t errno_of(Status st) {
    switch (st) {
    case Status::NoMemory: return -guest::CHECK_ENOMEM;
    case Status::TooLarge: return -guest::CHECK_EFBIG;
    case Status::Unsupported: return -guest::CHECK_ENOTSUP;
    case Status::Invalid:
    case Status::Corrupt: return -guest::CHECK_EINVAL;
    default: return -guest::CHECK_EIO;
    }
}

void say(guest::CheckSink& sink, const char* text) {
    guest::CheckLine line;
    line.s(text).emit(sink);
}

} // namespace

Status qed_write_header(guest::BlockDevice& dev, const QedHeader& h) {
    uint8_t raw[QED_HEADER_SIZE];
    qed_header_encode(h, raw);
    return dev.write(0, raw, sizeof raw);
}

int32_t qed_check_image(guest::BlockDevice& dev, guest::Allocator& alloc, QedImage& s, bool fix, QedFlush flush,
                        CheckResult* result, guest::CheckSink* sink) {
    auto say_line = [&](const char* text) {
        if (sink != nullptr)
            say(*sink, text);
    };
    if (s.table_bytes() > QED_MAX_TABLE_BYTES) {
        say_line("\x01" "instar checks QED images whose tables (cluster_size x table_size) are at most "
                 "QED_MAX_TABLE_BYTES (32 MiB)");
        return -guest::CHECK_EFBIG;
    }
    Checker c{dev, alloc, s, *result, fix};
    c.nclusters = s.bytes_to_clusters(s.file_size);
    if (c.nclusters > QED_CHECK_MAX_CLUSTERS) {
        say_line("\x01" "instar's QED check covers at most QED_CHECK_MAX_CLUSTERS (2^31) clusters of file");
        return -guest::CHECK_EFBIG;
    }
    const uint64_t words = (c.nclusters + 31) / 32;
    const uint64_t tb = s.table_bytes();
    c.used = static_cast<uint32_t*>(alloc.allocate(words ? words * 4 : 4, 8));
    c.l1 = static_cast<uint64_t*>(alloc.allocate(tb, 8));
    c.l2 = static_cast<uint64_t*>(alloc.allocate(tb, 8));
    c.io = static_cast<uint8_t*>(alloc.allocate(IO_CHUNK, 8));
    struct Release {
        Checker& c;
        uint64_t words, tb;
        ~Release() {
            if (c.used)
                c.alloc.deallocate(c.used, words ? words * 4 : 4);
            if (c.l1)
                c.alloc.deallocate(c.l1, tb);
            if (c.l2)
                c.alloc.deallocate(c.l2, tb);
            if (c.io)
                c.alloc.deallocate(c.io, IO_CHUNK);
        }
    } release{c, words, tb};
    if (!c.used || !c.l1 || !c.l2 || !c.io)
        return -guest::CHECK_ENOMEM;
    for (uint64_t i = 0; i < words; ++i)
        c.used[i] = 0;
    if (const Status st = c.read_table(s.header.l1_table_offset, c.l1); st != Status::Ok) {
        // qemu's open fails: "Failed to read L1 table".
        say_line("\x01" "Failed to read L1 table");
        return errno_of(st);
    }
    result->total_clusters = (s.header.image_size + s.cluster_size() - 1) / s.cluster_size();
    const Status last = c.check_l1();
    if (last != Status::Ok)
        return errno_of(last);
    c.check_for_leaks();
    // qed_check_mark_clean
    if (fix && result->corruptions == 0 && result->check_errors == 0 && (s.header.features & QED_F_NEED_CHECK) != 0) {
        if (const Status st = flush.call(dev); st != Status::Ok)
            return errno_of(st);
        s.header.features &= ~QED_F_NEED_CHECK;
        if (const Status st = qed_write_header(dev, s.header); st != Status::Ok)
            return errno_of(st);
    }
    return 0;
}

Status check(const guest::CheckRequest& req, guest::CheckSink& sink, CheckResult* result) {
    if (req.image == nullptr || req.allocator == nullptr || result == nullptr)
        return Status::Invalid;
    *result = CheckResult{};
    guest::Allocator& alloc = *req.allocator;
    guest::BlockDevice& dev = *req.image;
    QedImage* img = static_cast<QedImage*>(alloc.allocate(sizeof(QedImage), alignof(QedImage)));
    if (img == nullptr)
        return Status::NoMemory;
    struct Free {
        guest::Allocator& a;
        QedImage* p;
        ~Free() { a.deallocate(p, sizeof(QedImage)); }
    } free_img{alloc, img};
    const char* why = nullptr;
    if (const Status st = qed_load(dev, img, &why); st != Status::Ok) {
        // info opened it a moment ago; a changed file is refused in qemu's open words.
        if (why != nullptr) {
            guest::CheckLine line;
            line.s("\x01").s(why).emit(sink);
        }
        result->error = errno_of(st);
        return Status::Ok;
    }
    QedImage& s = *img;
    const bool fix = req.fix != 0;
    const QedFlush flush{req.flush ? request_flush : nullptr,
                         const_cast<void*>(static_cast<const void*>(&req))};
    // A read-write open knocks out unknown autoclear feature bits (none are known).
    if (fix && s.header.autoclear_features != 0) {
        s.header.autoclear_features = 0;
        Status st = qed_write_header(dev, s.header);
        if (st == Status::Ok)
            st = flush.call(dev);
        if (st != Status::Ok) {
            result->error = errno_of(st);
            return Status::Ok;
        }
    }
    result->error = qed_check_image(dev, alloc, s, fix, flush, result, &sink);
    // bdrv_qed_close after a read-write open: flush, then a clean shutdown needs no check.
    if (fix)
        (void)qed_close_rw(dev, s, flush);
    return Status::Ok;
}

Status qed_close_rw(guest::BlockDevice& dev, QedImage& s, QedFlush flush) {
    Status st = flush.call(dev);
    if (st == Status::Ok && (s.header.features & QED_F_NEED_CHECK) != 0) {
        s.header.features &= ~QED_F_NEED_CHECK;
        st = qed_write_header(dev, s.header);
        if (st == Status::Ok)
            st = flush.call(dev);
    }
    return st;
}

} // namespace instar::qed
