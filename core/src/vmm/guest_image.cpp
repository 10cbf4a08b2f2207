// ELF64 loading for the guest runtime and modules.
#include "vmm/guest_image.h"

#include "vmm/unique_fd.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

namespace instar::vmm {

namespace {

SandboxError image_error(const std::string& path, const std::string& why) {
    return {ErrorKind::GuestImage, "guest image " + path + ": " + why, {}};
}

// Reads a T at `off` in the loaded image (through its segments: file bytes, then bss zeroes);
// false unless it lies wholly inside one segment.
template <typename T>
bool read_image(const GuestImage& img, std::uint64_t off, T* out) {
    for (const ImageSegment& seg : img.segments) {
        if (off < seg.offset || off - seg.offset > seg.mem_size || sizeof(T) > seg.mem_size - (off - seg.offset)) continue;
        const std::uint64_t in = off - seg.offset;
        auto* dst = reinterpret_cast<std::uint8_t*>(out);
        std::memset(dst, 0, sizeof(T));
        if (in < seg.file_size) std::memcpy(dst, seg.data + in, std::min<std::uint64_t>(sizeof(T), seg.file_size - in));
        return true;
    }
    return false;
}

template <typename T>
bool read_file(const std::uint8_t* file, std::uint64_t size, std::uint64_t off, T* out) {
    if (off > size || sizeof(T) > size - off) return false;
    std::memcpy(out, file + off, sizeof(T)); // memcpy: the file has no alignment promises
    return true;
}

constexpr std::uint64_t page_down(std::uint64_t v) { return v & ~(INSTAR_PAGE_SIZE - 1); }
constexpr std::uint64_t page_up(std::uint64_t v) { return (v + INSTAR_PAGE_SIZE - 1) & ~(INSTAR_PAGE_SIZE - 1); }

// Whether a writable segment has bytes in the pages [start, end).
bool writable_in_pages(const std::vector<ImageSegment>& segments, std::uint64_t start, std::uint64_t end) {
    for (const ImageSegment& w : segments)
        if (w.writable && page_down(w.offset) < end && page_up(w.offset + w.mem_size) > start) return true;
    return false;
}

Outcome<std::shared_ptr<const GuestImage>> parse(const std::string& path, ImageKind kind,
                                                 std::shared_ptr<const ImageFile> mapped) {
    const auto* file = static_cast<const std::uint8_t*>(mapped->addr);
    const std::uint64_t file_size = mapped->len;
    Elf64_Ehdr eh{};
    if (!read_file(file, file_size, 0, &eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_machine != EM_X86_64) {
        return image_error(path, "not an x86-64 ELF64 file");
    }
    const bool runtime = kind == ImageKind::Runtime;
    if (eh.e_type != (runtime ? ET_EXEC : ET_DYN)) return image_error(path, "wrong ELF type");
    if (eh.e_phentsize != sizeof(Elf64_Phdr)) return image_error(path, "bad program header size");
    const std::uint64_t lo = runtime ? INSTAR_GPA_RUNTIME : 0;
    const std::uint64_t limit = runtime ? INSTAR_RUNTIME_MAX_SIZE : MAX_MODULE_SIZE;

    auto img = std::make_shared<GuestImage>();
    img->kind = kind;
    img->link_base = lo;
    img->file = mapped;
    Elf64_Phdr dyn{};
    bool have_dyn = false;
    for (std::uint16_t i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph{};
        if (!read_file(file, file_size, eh.e_phoff + std::uint64_t(i) * sizeof(ph), &ph)) return image_error(path, "truncated");
        if (ph.p_type == PT_DYNAMIC) {
            dyn = ph;
            have_dyn = true;
        }
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        if (ph.p_vaddr < lo || ph.p_memsz > limit || ph.p_vaddr - lo > limit - ph.p_memsz ||
            ph.p_filesz > ph.p_memsz || ph.p_offset > file_size || ph.p_filesz > file_size - ph.p_offset) {
            return image_error(path, "a segment lies outside its allowed range");
        }
        ImageSegment seg;
        seg.offset = ph.p_vaddr - lo;
        seg.file_size = ph.p_filesz;
        seg.mem_size = ph.p_memsz;
        seg.data = file + ph.p_offset;
        seg.file_offset = ph.p_offset;
        seg.writable = (ph.p_flags & PF_W) != 0;
        seg.executable = (ph.p_flags & PF_X) != 0;
        if (seg.writable && seg.executable) return image_error(path, "a segment is both writable and executable");
        img->size = std::max(img->size, page_up(seg.offset + seg.mem_size)); // <= 2 * limit: no overflow
        img->segments.push_back(seg);
    }
    if (img->segments.empty() || eh.e_entry < lo || eh.e_entry - lo >= img->size) {
        return image_error(path, "no loadable segments or entry point outside them");
    }
    // W^X: no page holds both code and writable data, so code pages can be mapped read+execute.
    for (const ImageSegment& x : img->segments) {
        if (!x.executable) continue;
        const std::uint64_t xs = page_down(x.offset), xe = page_up(x.offset + x.mem_size);
        if (writable_in_pages(img->segments, xs, xe)) return image_error(path, "a page holds both code and writable data");
        if (!img->code_pages.empty() && img->code_pages.back().second >= xs)
            img->code_pages.back().second = std::max(img->code_pages.back().second, xe);
        else
            img->code_pages.emplace_back(xs, xe);
    }
    // One code range per image: the process sandbox's loader takes a bounded list (runtime + modules).
    if (img->code_pages.size() > 1) return image_error(path, "code in more than one place (one executable segment expected)");
    // Read-only segments whose pages hold nothing but their file bytes (no .bss to clear, no
    // writable segment whose copy would land in the mapping), where the file and the image agree
    // on where in a page they start, can be mapped from the file (place_guest_image).
    for (ImageSegment& s : img->segments) {
        s.file_mappable = !s.writable && s.file_size != 0 && s.mem_size == s.file_size &&
                          s.offset % INSTAR_PAGE_SIZE == s.file_offset % INSTAR_PAGE_SIZE &&
                          !writable_in_pages(img->segments, page_down(s.offset), page_up(s.offset + s.file_size));
    }
    img->entry = eh.e_entry - lo;
    if (runtime) {
        // The runtime header (first bytes of the image) names the entry and the exception stubs.
        instar_runtime_header hdr{};
        if (!read_image(*img, 0, &hdr) || hdr.magic != INSTAR_RUNTIME_MAGIC) {
            return image_error(path, "no instar runtime header at its start");
        }
        if (hdr.abi_version != INSTAR_GUEST_ABI_VERSION) {
            return image_error(path, "built for guest ABI " + std::to_string(hdr.abi_version) + ", this instar uses " +
                                         std::to_string(INSTAR_GUEST_ABI_VERSION));
        }
        auto inside = [&](std::uint64_t a) { return a >= lo && a - lo < img->size; };
        if (!inside(hdr.entry)) return image_error(path, "entry point outside the image");
        img->entry = hdr.entry - lo;
        for (std::size_t v = 0; v < INSTAR_EXCEPTION_VECTORS; ++v) {
            if (!inside(hdr.exception_handlers[v])) return image_error(path, "exception handler outside the image");
            img->exception_handlers[v] = hdr.exception_handlers[v];
        }

        return std::shared_ptr<const GuestImage>(img);
    }
    if (!have_dyn) return std::shared_ptr<const GuestImage>(img);

    // Modules: the dynamic section (read from the loaded image) may name only RELA relocations.
    std::uint64_t rela = 0, relasz = 0, relaent = sizeof(Elf64_Rela);
    for (std::uint64_t off = dyn.p_vaddr;; off += sizeof(Elf64_Dyn)) {
        Elf64_Dyn d{};
        if (!read_image(*img, off, &d)) return image_error(path, "truncated dynamic section");
        if (d.d_tag == DT_NULL) break;
        switch (d.d_tag) {
        case DT_RELA: rela = d.d_un.d_ptr; break;
        case DT_RELASZ: relasz = d.d_un.d_val; break;
        case DT_RELAENT: relaent = d.d_un.d_val; break;
        case DT_NEEDED: return image_error(path, "depends on a shared library (modules must be -nostdlib)");
        case DT_PLTRELSZ:
        case DT_REL:
        case DT_RELR:
            if (d.d_un.d_val != 0) return image_error(path, "has PLT/REL/RELR relocations (only RELA RELATIVE allowed)");
            break;
        default: break;
        }
    }
    if (relaent != sizeof(Elf64_Rela)) return image_error(path, "bad DT_RELAENT");
    for (std::uint64_t off = 0; off < relasz; off += sizeof(Elf64_Rela)) {
        Elf64_Rela r{};
        if (rela > UINT64_MAX - off || !read_image(*img, rela + off, &r))
            return image_error(path, "relocation table outside the image");
        if (ELF64_R_TYPE(r.r_info) == R_X86_64_NONE) continue;
        if (ELF64_R_TYPE(r.r_info) != R_X86_64_RELATIVE) {
            return image_error(path, "relocation type " + std::to_string(ELF64_R_TYPE(r.r_info)) +
                                         " (only R_X86_64_RELATIVE is allowed)");
        }
        if (r.r_offset > img->size - 8) return image_error(path, "relocation outside the image");
        img->relocs.emplace_back(r.r_offset, static_cast<std::uint64_t>(r.r_addend));
    }
    return std::shared_ptr<const GuestImage>(img);
}

// pread until `len` bytes or end of file; false on an I/O error.
bool read_exactly(int fd, std::uint8_t* buf, std::size_t len, std::uint64_t offset, std::size_t& got) {
    got = 0;
    while (got < len) {
        const ssize_t n = ::pread(fd, buf + got, len - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    return true;
}

// The file's bytes up to the end of its last loadable segment (and its program headers), mapped
// read-only and populated in one mmap: modules carry debug information after their segments (the
// qcow2 module is ~1.4 MiB on disk, ~240 KiB loaded), which the loader never needs, and a mapping
// of page-cache pages costs no copy and none of the page faults a read buffer does (zeroing it,
// copying into it, then copying out of it). Only the headers are trusted to say how far to map;
// parse() validates everything in what was mapped, so a header pointing past the file end makes
// the image fail there as before. The files are trusted installed files, replaced by rename.
Outcome<std::shared_ptr<const ImageFile>> map_loadable_prefix(const std::string& path, UniqueFd fd, std::uint64_t file_size) {
    Elf64_Ehdr eh{};
    std::size_t got = 0;
    if (!read_exactly(fd.get(), reinterpret_cast<std::uint8_t*>(&eh), sizeof eh, 0, got)) return image_error(path, "cannot read");
    if (got < sizeof eh) return image_error(path, "not an x86-64 ELF64 file");
    std::uint64_t need = file_size; // anything unexpected: map it all and let parse() say what is wrong
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_phentsize == sizeof(Elf64_Phdr) &&
        eh.e_phoff <= file_size && std::uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) <= file_size - eh.e_phoff) {
        std::vector<Elf64_Phdr> ph(eh.e_phnum);
        if (!read_exactly(fd.get(), reinterpret_cast<std::uint8_t*>(ph.data()), ph.size() * sizeof(Elf64_Phdr), eh.e_phoff, got))
            return image_error(path, "cannot read");
        if (got == ph.size() * sizeof(Elf64_Phdr)) {
            need = std::max<std::uint64_t>(sizeof eh, eh.e_phoff + got);
            for (const Elf64_Phdr& p : ph) {
                if (p.p_type != PT_LOAD) continue;
                if (p.p_offset > file_size || p.p_filesz > file_size - p.p_offset) {
                    need = file_size;
                    break;
                }
                need = std::max(need, p.p_offset + p.p_filesz);
            }
        }
    }
    void* addr = ::mmap(nullptr, need, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (addr == MAP_FAILED) return image_error(path, std::string("cannot map: ") + std::strerror(errno));
    return std::shared_ptr<const ImageFile>(std::make_shared<ImageFile>(addr, need, std::move(fd)));
}

} // namespace

Outcome<std::shared_ptr<const GuestImage>> load_guest_image(const std::string& path, ImageKind kind) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return image_error(path, std::strerror(errno));
    struct Key {
        std::string path;
        int kind;
        bool operator<(const Key& o) const { return std::tie(path, kind) < std::tie(o.path, o.kind); }
    };
    struct Entry {
        timespec mtime;
        off_t size;
        std::shared_ptr<const GuestImage> image;
    };
    static std::mutex mu;
    static std::map<Key, Entry> cache; // a handful of installed files; kept for the process
    const Key key{path, static_cast<int>(kind)};
    {
        std::lock_guard lock(mu);
        auto it = cache.find(key);
        if (it != cache.end() && it->second.size == st.st_size && it->second.mtime.tv_sec == st.st_mtim.tv_sec &&
            it->second.mtime.tv_nsec == st.st_mtim.tv_nsec) {
            return it->second.image;
        }
    }
    if (static_cast<std::uint64_t>(st.st_size) > MAX_MODULE_SIZE) return image_error(path, "file too large");
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return image_error(path, std::strerror(errno));
    auto file = map_loadable_prefix(path, std::move(fd), static_cast<std::uint64_t>(st.st_size));
    if (!file) return file.error();
    auto parsed = parse(path, kind, file.value());
    if (!parsed) return parsed;
    std::lock_guard lock(mu);
    cache[key] = Entry{st.st_mtim, st.st_size, parsed.value()};
    return parsed;
}

ImageFile::~ImageFile() { ::munmap(const_cast<void*>(addr), len); }

namespace {
// Whether a segment is mapped from its file into guest RAM at `base` rather than copied: it can be
// (ImageSegment::file_mappable), and the RAM there is not backed by huge pages (the first 2 MiB
// are 4 KiB pages in the guest's tables; elsewhere huge-page RAM stays whole).
bool map_here(const GuestImage& image, const ImageSegment& seg, const GuestMemory& mem, std::uint64_t base) {
    return seg.file_mappable && image.file != nullptr && image.file->fd.valid() &&
           (!mem.huge_pages() || base + page_up(seg.offset + seg.file_size) <= INSTAR_LARGE_PAGE_SIZE);
}
} // namespace

bool place_guest_image(const GuestImage& image, GuestMemory& mem, std::uint64_t base) {
    std::uint8_t* dst = mem.range(base, image.size);
    if (dst == nullptr) return false;
    // Each segment lies inside [0, size) (checked at parse time). Guest memory is fresh, hence
    // zero: a segment's tail past its file bytes (.bss) needs no clearing, and clearing it would
    // only fault in pages the guest may never touch.
    for (const ImageSegment& seg : image.segments) {
        // A segment's last page may extend past its bytes into the file's next ones: the image's
        // own read-only bytes, as a dynamic loader maps them too.
        if (map_here(image, seg, mem, base)) {
            const auto mapped = mem.map_file(base + page_down(seg.offset), image.file->fd.get(), page_down(seg.file_offset),
                                             page_up(seg.offset + seg.file_size) - page_down(seg.offset));
            if (mapped == GuestMemory::MapResult::Failed) return false;
            if (mapped == GuestMemory::MapResult::Mapped) continue;
        }
        mem.load(base + seg.offset, seg.data, seg.file_size);
    }
    for (const auto& [offset, addend] : image.relocs) {
        const std::uint64_t value = base + addend;
        std::memcpy(dst + offset, &value, sizeof(value)); // offset <= size - 8, checked at parse time
    }
    return true;
}

} // namespace instar::vmm
