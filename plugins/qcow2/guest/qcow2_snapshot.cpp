// Parsing of the qcow2 snapshot table.
#include "qcow2_snapshot.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"

namespace instar::qcow2 {

Status qcow2_snapshot_parse(const uint8_t* hdr, size_t hdr_len, const uint8_t* extra, size_t extra_len,
                            Qcow2Snapshot* out) {
    if (hdr_len < sizeof(Qcow2SnapshotHeaderDisk) || extra_len > sizeof(Qcow2SnapshotExtraDisk))
        return Status::Invalid;
    Qcow2SnapshotHeaderDisk d;
    __builtin_memcpy(&d, hdr, sizeof d);
    Qcow2Snapshot s;
    s.l1_table_offset = load_be64(d.l1_table_offset);
    s.l1_size = load_be32(d.l1_size);
    s.id_str_size = load_be16(d.id_str_size);
    s.name_size = load_be16(d.name_size);
    s.date_sec = load_be32(d.date_sec);
    s.date_nsec = load_be32(d.date_nsec);
    s.vm_clock_nsec = load_be64(d.vm_clock_nsec);
    s.vm_state_size = load_be32(d.vm_state_size);
    s.extra_data_size = load_be32(d.extra_data_size);
    if (s.extra_data_size > QCOW_MAX_SNAPSHOT_EXTRA_DATA)
        return Status::TooLarge; // qemu: "Too much extra metadata in snapshot table entry"
    const size_t known = s.extra_data_size < sizeof(Qcow2SnapshotExtraDisk) ? s.extra_data_size
                                                                             : sizeof(Qcow2SnapshotExtraDisk);
    if (extra_len != known)
        return Status::Invalid;
    Qcow2SnapshotExtraDisk x{};
    __builtin_memcpy(&x, extra, known);
    if (known >= 8)
        s.vm_state_size = load_be64(x.vm_state_size_large);
    if (known >= 16) {
        s.has_disk_size = true;
        s.disk_size = load_be64(x.disk_size);
    }
    if (known >= 24) {
        s.icount = load_be64(x.icount);
        s.has_icount = s.icount != ~uint64_t{0};
    }
    *out = s;
    return Status::Ok;
}

namespace {

// qemu's words for a refused snapshot table, with the hint qemu-img prints on the next line.
struct Reason {
    char text[160] = {};
    size_t len = 0;
    Reason& s(const char* t) {
        for (size_t i = 0; t[i] != 0 && len < sizeof text; ++i)
            text[len++] = t[i];
        return *this;
    }
    Reason& u(uint64_t v) {
        char d[20];
        size_t n = 0;
        do {
            d[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (n > 0 && len < sizeof text)
            text[len++] = d[--n];
        return *this;
    }
};

// Room for an id and a name of the largest size their 16-bit lengths allow.
constexpr size_t SNAPSHOT_STRINGS_BUFFER = 2u * 0xffff;

} // namespace

Status qcow2_snapshots_report(const Qcow2Header& h, MetadataReader& reader, guest::Allocator& alloc,
                              guest::InfoSink& sink) {
    if (h.nb_snapshots == 0)
        return Status::Ok;
    ArenaBuffer strings(alloc, SNAPSHOT_STRINGS_BUFFER);
    if (!strings.ok())
        return Status::NoMemory;
    uint64_t offset = h.snapshots_offset;
    for (uint32_t i = 0; i < h.nb_snapshots; ++i) {
        offset = round_up8(offset); // cannot overflow: offset - start stays below 64 MiB
        uint8_t hdr[sizeof(Qcow2SnapshotHeaderDisk)];
        Status st = reader.read(offset, hdr, sizeof hdr);
        if (st != Status::Ok)
            return st;
        offset += sizeof hdr;
        const uint32_t extra_size = load_be32(hdr + 36);
        const size_t known = extra_size < sizeof(Qcow2SnapshotExtraDisk) ? extra_size : sizeof(Qcow2SnapshotExtraDisk);
        uint8_t extra[sizeof(Qcow2SnapshotExtraDisk)] = {};
        if (extra_size <= QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
            st = reader.read(offset, extra, known);
            if (st != Status::Ok)
                return st;
        }
        Qcow2Snapshot s;
        st = qcow2_snapshot_parse(hdr, sizeof hdr, extra, known, &s);
        if (st == Status::TooLarge) {
            Reason r;
            r.s("Too much extra metadata in snapshot table entry ").u(i)
                .s("\nYou can force-remove this extra metadata with qemu-img check -r all");
            sink.reason(r.text, r.len);
        }
        if (st != Status::Ok)
            return st;
        offset += s.extra_data_size; // unknown extra data is skipped (<= 1024 bytes)
        uint8_t* id = strings.data();
        uint8_t* name = strings.data() + s.id_str_size;
        st = reader.read(offset, id, s.id_str_size);
        if (st == Status::Ok)
            st = reader.read(offset + s.id_str_size, name, s.name_size);
        if (st != Status::Ok)
            return st;
        offset += uint64_t{s.id_str_size} + s.name_size;
        if (offset - h.snapshots_offset > QCOW_MAX_SNAPSHOTS_SIZE) {
            Reason r;
            r.s("Snapshot table is too big\nYou can force-remove all ").u(h.nb_snapshots - i)
                .s(" overhanging snapshots with qemu-img check -r all");
            sink.reason(r.text, r.len);
            return Status::TooLarge;
        }
        guest::SnapshotInfo info{};
        // SAFETY: byte buffers reinterpreted as the char strings the sink takes; same size and alignment.
        info.id = reinterpret_cast<const char*>(id);
        info.id_len = bounded_strlen(id, s.id_str_size);
        info.name = reinterpret_cast<const char*>(name);
        info.name_len = bounded_strlen(name, s.name_size);
        info.vm_state_size = s.vm_state_size;
        info.date_sec = s.date_sec;
        info.date_nsec = s.date_nsec;
        info.vm_clock_nsec = s.vm_clock_nsec;
        info.has_icount = s.has_icount;
        info.icount = s.icount;
        sink.snapshot(info);
    }
    return Status::Ok;
}

} // namespace instar::qcow2
