// The VMDK text descriptor (VMware Virtual Disk Format 1.1, section 3): createType, CID,
// parentCID, parentFileNameHint and extent lines, read with qemu's exact (strstr/sscanf) rules.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vmdk {

// qemu reads at most 1 MiB - 1 of a descriptor ("avoid unbounded allocation").
inline constexpr size_t VMDK_DESC_MAX = (1u << 20) - 1;
// qemu reads CID, parentCID and parentFileNameHint from a 20-sector window (DESC_SIZE).
inline constexpr size_t VMDK_DESC_WINDOW = 20 * 512;
// The embedded descriptor window of a sparse image opened directly starts at sector 1 (qemu).
inline constexpr uint64_t VMDK_EMBEDDED_DESC_OFFSET = 0x200;
// qemu copies createType into a 128-byte buffer and parentFileNameHint into PATH_MAX.
inline constexpr size_t VMDK_CREATE_TYPE_MAX = 127;
inline constexpr size_t VMDK_PARENT_HINT_MAX = 4095;
// Extents per descriptor: the number of files one image may name (INFO_MAX_FILES: a 64 TiB
// twoGbMaxExtent* image); qemu has none.
inline constexpr uint32_t VMDK_MAX_EXTENTS = 32768;

// A NUL-terminated view of descriptor text (the text ends at its first NUL, as for qemu's strstr).
struct Text {
    const char* s;
    size_t len;
};
Text text_of(const uint8_t* buf, size_t n);

// strstr over a Text: the offset of `needle`, or -1.
long text_find(Text t, const char* needle);

// qemu's vmdk_parse_description: value after `name` and two skipped characters, up to '"'.
// Returns false when absent, unterminated or longer than `cap` - 1.
bool descriptor_value(Text t, const char* name, size_t cap, const char** value, size_t* len);

// qemu's vmdk_read_cid over a window: strstr(name), skip name + 1, sscanf("%x"). False if absent
// or unparsable (qemu fails the open).
bool descriptor_cid(Text window, bool parent, uint32_t* cid);

// qemu's vmdk_parent_open: the parentFileNameHint value (*len = 0 when absent). Corrupt when the
// value is unterminated or longer than VMDK_PARENT_HINT_MAX.
guest::Status descriptor_parent_hint(Text window, const char** name, size_t* len);

enum class ExtentType : uint8_t { Flat, Sparse, Vmfs, VmfsSparse, SeSparse };

struct ExtentLine {
    ExtentType type;
    const char* type_name; // "FLAT", "SPARSE", ... (qemu reports the descriptor's spelling)
    int64_t sectors;
    int64_t flat_offset;
    const char* file;
    size_t file_len;
};

// Walks the extent lines as qemu's vmdk_parse_extents does: lines that are not "RW <n> <TYPE> "<file>""
// with a known type and n > 0 are skipped; a malformed RW line is Corrupt ("Invalid extent line").
// Calls `fn(ctx, line)` for each extent; stops at the first non-Ok status it returns.
using ExtentFn = guest::Status (*)(void* ctx, const ExtentLine& line);
// `bad`, when given, receives the malformed line (without its '\n') that made it Corrupt: qemu
// prints it ("Invalid extent line: LINE").
guest::Status descriptor_extents(Text t, ExtentFn fn, void* ctx, Text* bad = nullptr);

} // namespace instar::vmdk
