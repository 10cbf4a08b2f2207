// The descriptor text and extent names of a new VMDK image (qemu's vmdk_co_do_create template).
#include "vmdk_create_descriptor.h"

namespace instar::vmdk {

ExtentPlan::ExtentPlan(const CreateSettings& s) : size_(static_cast<int64_t>(s.size)), step_(0), count_(0) {
    if (!s.split && !s.flat)
        return; // the image is the extent
    step_ = s.split ? VMDK_SPLIT_BYTES : size_;
    if (size_ <= 0)
        return; // qemu's `while (created_size < size)` never runs: no extent at all
    count_ = static_cast<uint64_t>(size_ / step_) + (size_ % step_ != 0);
}

int64_t ExtentPlan::size_of(uint64_t i) const {
    const int64_t left = size_ - static_cast<int64_t>(i) * step_;
    return left < step_ ? left : step_;
}

size_t extent_file_name(const char* image_name, const CreateSettings& s, uint64_t index, char* out, size_t cap) {
    const size_t n = TextWriter::length(image_name);
    // The image's base name has no '/'. qemu then splits the directory at the last '\' (a ':'
    // would have made qemu-img parse the name as a protocol, so it never gets here).
    size_t start = 0;
    for (size_t i = 0; i < n; ++i)
        if (image_name[i] == '\\')
            start = i + 1;
    size_t stem = n;
    for (size_t i = start; i < n; ++i)
        if (image_name[i] == '.')
            stem = i;
    TextWriter w(out, cap, nullptr, 0);
    w.put(image_name, stem);
    if (s.split) {
        w.put(s.flat ? "-f" : "-s");
        if (index < 100)
            w.put("0");
        if (index < 10)
            w.put("0");
        w.put_u64(index);
    } else {
        w.put("-flat");
    }
    w.put(image_name + stem, n - stem);
    if (w.total() >= cap)
        return 0;
    out[w.total()] = 0;
    return static_cast<size_t>(w.total());
}

namespace {

// qemu's extent line: DIV_ROUND_UP(size, BDRV_SECTOR_SIZE) (unsigned) printed with PRId64.
void emit_extent_line(TextWriter& w, bool flat, int64_t bytes, const char* name) {
    w.put("RW ");
    w.put_i64(static_cast<int64_t>((static_cast<uint64_t>(bytes) + 511) / 512));
    w.put(flat ? " FLAT \"" : " SPARSE \"");
    w.put(name);
    w.put(flat ? "\" 0\n" : "\"\n");
}

// snprintf(parent_desc_line, BUF_SIZE, "parentFileNameHint=\"%s\"", backing_file).
void emit_parent_line(TextWriter& w, const char* backing) {
    if (backing == nullptr)
        return;
    size_t left = VMDK_PARENT_LINE_MAX;
    const char* parts[] = {"parentFileNameHint=\"", backing, "\""};
    for (const char* p : parts) {
        size_t n = TextWriter::length(p);
        n = n < left ? n : left;
        w.put(p, n);
        left -= n;
    }
}

} // namespace

void emit_descriptor(TextWriter& w, const CreateSettings& s, const DescriptorFields& f, const ExtentPlan& plan) {
    w.put("# Disk DescriptorFile\nversion=1\nCID=");
    w.put_hex32(f.cid);
    w.put("\nparentCID=");
    w.put_hex32(f.parent_cid);
    w.put("\ncreateType=\"");
    w.put(subformat_name(s.subformat));
    w.put("\"\n");
    emit_parent_line(w, s.backing_file);
    w.put("\n# Extent description\n");
    if (!s.split && !s.flat) {
        emit_extent_line(w, false, static_cast<int64_t>(s.size), f.image_name);
    } else {
        char name[guest::CREATE_MAX_FILE_NAME + 1];
        for (uint64_t i = 0; i < plan.count(); ++i)
            if (extent_file_name(f.image_name, s, i + 1, name, sizeof name) != 0)
                emit_extent_line(w, s.flat, plan.size_of(i), name);
    }
    // Non-IDE adapters get VMware's 255 heads; the cylinder count is not capped (qemu's int64_t
    // division of the size).
    const int64_t heads = s.adapter == AdapterType::Ide ? 16 : 255;
    w.put("\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"");
    w.put(s.hw_version);
    w.put("\"\nddb.geometry.cylinders = \"");
    w.put_i64(static_cast<int64_t>(s.size) / (63 * heads * 512));
    w.put("\"\nddb.geometry.heads = \"");
    w.put_i64(heads);
    w.put("\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"");
    w.put(adapter_name(s.adapter));
    w.put("\"\nddb.toolsVersion = \"");
    w.put(s.tools_version);
    w.put("\"\n");
}

} // namespace instar::vmdk
