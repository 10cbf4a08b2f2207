// ELF64 loading for the guest runtime and modules.
#include "vmm/guest_image.h"

#include "vmm/unique_fd.h"

#include <elf.h>
#include <fcntl.h>
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

template <typename T>
bool read_at(const std::vector<std::uint8_t>& buf, std::uint64_t off, T* out) {
    if (off > buf.size() || sizeof(T) > buf.size() - off) return false;
    std::memcpy(out, buf.data() + off, sizeof(T)); // memcpy: the file has no alignment promises
    return true;
}

Outcome<std::shared_ptr<const GuestImage>> parse(const std::string& path, ImageKind kind,
                                                 const std::vector<std::uint8_t>& file) {
    Elf64_Ehdr eh{};
    if (!read_at(file, 0, &eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
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
    Elf64_Phdr dyn{};
    bool have_dyn = false;
    for (std::uint16_t i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph{};
        if (!read_at(file, eh.e_phoff + std::uint64_t(i) * sizeof(ph), &ph)) return image_error(path, "truncated");
        if (ph.p_type == PT_DYNAMIC) {
            dyn = ph;
            have_dyn = true;
        }
        if (ph.p_type != PT_LOAD) continue;
        if (ph.p_vaddr < lo || ph.p_memsz > limit || ph.p_vaddr - lo > limit - ph.p_memsz ||
            ph.p_filesz > ph.p_memsz || ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset) {
            return image_error(path, "a segment lies outside its allowed range");
        }
        const std::uint64_t end = ph.p_vaddr - lo + ph.p_memsz;
        if (end > img->bytes.size()) img->bytes.resize((end + INSTAR_PAGE_SIZE - 1) & ~(INSTAR_PAGE_SIZE - 1));
        std::memcpy(img->bytes.data() + (ph.p_vaddr - lo), file.data() + ph.p_offset, ph.p_filesz);
    }
    if (img->bytes.empty() || eh.e_entry < lo || eh.e_entry - lo >= img->bytes.size()) {
        return image_error(path, "no loadable segments or entry point outside them");
    }
    img->entry = eh.e_entry - lo;
    if (runtime) {
        // The runtime header (first bytes of the image) names the entry and the exception stubs.
        instar_runtime_header hdr{};
        if (!read_at(img->bytes, 0, &hdr) || hdr.magic != INSTAR_RUNTIME_MAGIC) {
            return image_error(path, "no instar runtime header at its start");
        }
        if (hdr.abi_version != INSTAR_GUEST_ABI_VERSION) {
            return image_error(path, "built for guest ABI " + std::to_string(hdr.abi_version) + ", this instar uses " +
                                         std::to_string(INSTAR_GUEST_ABI_VERSION));
        }
        auto inside = [&](std::uint64_t a) { return a >= lo && a - lo < img->bytes.size(); };
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
        if (!read_at(img->bytes, off, &d)) return image_error(path, "truncated dynamic section");
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
        if (!read_at(img->bytes, rela + off, &r)) return image_error(path, "relocation table outside the image");
        if (ELF64_R_TYPE(r.r_info) == R_X86_64_NONE) continue;
        if (ELF64_R_TYPE(r.r_info) != R_X86_64_RELATIVE) {
            return image_error(path, "relocation type " + std::to_string(ELF64_R_TYPE(r.r_info)) +
                                         " (only R_X86_64_RELATIVE is allowed)");
        }
        if (r.r_offset > img->bytes.size() - 8) return image_error(path, "relocation outside the image");
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

// The file's bytes up to the end of its last loadable segment (and its program headers), read in
// one pread: modules carry debug information after their segments (the qcow2 module is ~390 KiB on
// disk, ~55 KiB loaded), which the loader never needs. Only the headers are trusted to say how far
// to read; parse() validates everything in what was read, so a header pointing past the file end
// makes the image fail there as before.
Outcome<std::vector<std::uint8_t>> read_loadable_prefix(const std::string& path, int fd, std::uint64_t file_size) {
    Elf64_Ehdr eh{};
    std::size_t got = 0;
    if (!read_exactly(fd, reinterpret_cast<std::uint8_t*>(&eh), sizeof eh, 0, got)) return image_error(path, "cannot read");
    std::uint64_t need = file_size; // anything unexpected: read it all and let parse() say what is wrong
    if (got == sizeof eh && std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_phentsize == sizeof(Elf64_Phdr) &&
        eh.e_phoff <= file_size && std::uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) <= file_size - eh.e_phoff) {
        std::vector<Elf64_Phdr> ph(eh.e_phnum);
        if (!read_exactly(fd, reinterpret_cast<std::uint8_t*>(ph.data()), ph.size() * sizeof(Elf64_Phdr), eh.e_phoff, got))
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
    std::vector<std::uint8_t> bytes(need);
    if (!read_exactly(fd, bytes.data(), bytes.size(), 0, got)) return image_error(path, "cannot read");
    bytes.resize(got);
    return bytes;
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
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return image_error(path, std::strerror(errno));
    auto file = read_loadable_prefix(path, fd.get(), static_cast<std::uint64_t>(st.st_size));
    if (!file) return file.error();
    auto parsed = parse(path, kind, file.value());
    if (!parsed) return parsed;
    std::lock_guard lock(mu);
    cache[key] = Entry{st.st_mtim, st.st_size, parsed.value()};
    return parsed;
}

bool place_guest_image(const GuestImage& image, GuestMemory& mem, std::uint64_t base) {
    std::uint8_t* dst = mem.range(base, image.bytes.size());
    if (dst == nullptr) return false;
    std::memcpy(dst, image.bytes.data(), image.bytes.size());
    for (const auto& [offset, addend] : image.relocs) {
        const std::uint64_t value = base + addend;
        std::memcpy(dst + offset, &value, sizeof(value)); // offset <= size - 8, checked at parse time
    }
    return true;
}

} // namespace instar::vmm
