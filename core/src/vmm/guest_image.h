// Guest executables: the runtime (static ELF at a fixed address) and modules (PIC ELF, relocated
// with R_X86_64_RELATIVE only). Both are trusted installed files, still parsed defensively.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vmm/guest_memory.h"
#include "vmm/sandbox.h"
#include "vmm/unique_fd.h"

namespace instar::vmm {

enum class ImageKind { Runtime, Module };

// One loadable segment: `file_size` bytes from the mapped file at `offset` from the image's base,
// then zeroes up to `mem_size`.
struct ImageSegment {
    std::uint64_t offset = 0;
    std::uint64_t file_size = 0;
    std::uint64_t mem_size = 0;
    const std::uint8_t* data = nullptr; // inside GuestImage::file
    std::uint64_t file_offset = 0;      // of `data` in the file
    // Read-only, no .bss, no page shared with writable data, page offset as in the file: may be
    // mapped from the file instead of copied (set at load, place_guest_image).
    bool file_mappable = false;
    bool writable = false;
    bool executable = false;
};

// The file's loadable prefix, mapped read-only for as long as an image refers to it, and the file
// itself (open read-only, close-on-exec) so read-only segments can be mapped into guest RAM.
struct ImageFile {
    ImageFile(const void* a, std::size_t l, UniqueFd f) : addr(a), len(l), fd(std::move(f)) {}
    ImageFile(const ImageFile&) = delete;
    ImageFile& operator=(const ImageFile&) = delete;
    ~ImageFile();
    const void* addr;
    std::size_t len;
    UniqueFd fd;
};

struct GuestImage {
    ImageKind kind = ImageKind::Module;
    std::uint64_t link_base = 0; // runtime: its link address; module: 0
    std::uint64_t entry = 0;     // relative to link_base (runtime: from its instar_runtime_header)
    std::array<std::uint64_t, INSTAR_EXCEPTION_VECTORS> exception_handlers{}; // runtime only, absolute
    std::uint64_t size = 0;      // the loaded image's span (segments + zeroed bss), page-rounded
    std::vector<ImageSegment> segments;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> relocs; // (offset, addend) RELATIVE
    // Page-aligned [start, end) offsets of the pages that hold code: no writable segment shares
    // them (checked at load), so a sandbox can map them read+execute and everything else
    // read+write (W^X). At most one range (checked at load: the process loader's list is bounded).
    std::vector<std::pair<std::uint64_t, std::uint64_t>> code_pages;
    std::shared_ptr<const ImageFile> file; // the segments' bytes
};

// Module images larger than this are refused: real format modules are tens of KiB.
inline constexpr std::uint64_t MAX_MODULE_SIZE = 64ull << 20;

// Parses (once per path and modification time; cached for the process) and validates an image.
Outcome<std::shared_ptr<const GuestImage>> load_guest_image(const std::string& path, ImageKind kind);

// Places an image in fresh (all-zero) guest RAM at `base` (its link_base for the runtime) and
// relocates it: read-only segments whose pages they have to themselves are mapped from the file
// where the RAM allows (GuestMemory::map_file; not where it is backed by huge pages, which a
// file mapping would split), the rest copied. Returns false when it does not fit (or, never seen,
// the kernel could not map RAM back after a failed file mapping).
bool place_guest_image(const GuestImage& image, GuestMemory& mem, std::uint64_t base);

} // namespace instar::vmm
