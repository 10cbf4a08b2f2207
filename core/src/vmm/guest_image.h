// Guest executables: the runtime (static ELF at a fixed address) and modules (PIC ELF, relocated
// with R_X86_64_RELATIVE only). Both are trusted installed files, still parsed defensively.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vmm/guest_memory.h"
#include "vmm/sandbox.h"

namespace instar::vmm {

enum class ImageKind { Runtime, Module };

struct GuestImage {
    ImageKind kind = ImageKind::Module;
    std::uint64_t link_base = 0; // runtime: its link address; module: 0
    std::uint64_t entry = 0;     // relative to link_base (runtime: from its instar_runtime_header)
    std::array<std::uint64_t, INSTAR_EXCEPTION_VECTORS> exception_handlers{}; // runtime only, absolute
    std::vector<std::uint8_t> bytes; // the loaded image (segments + zeroed bss), page-rounded
    std::vector<std::pair<std::uint64_t, std::uint64_t>> relocs; // (offset, addend) RELATIVE
};

// Module images larger than this are refused: real format modules are tens of KiB.
inline constexpr std::uint64_t MAX_MODULE_SIZE = 64ull << 20;

// Parses (once per path and modification time; cached for the process) and validates an image.
Outcome<std::shared_ptr<const GuestImage>> load_guest_image(const std::string& path, ImageKind kind);

// Copies an image into guest RAM at `base` (its link_base for the runtime) and relocates it.
// Returns false when it does not fit.
bool place_guest_image(const GuestImage& image, GuestMemory& mem, std::uint64_t base);

} // namespace instar::vmm
