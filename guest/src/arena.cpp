// The bounded allocator: size-class free lists over a bump pointer in one fixed arena.
// Exhaustion returns nullptr (never traps). The arena is the tail of RAM; when it runs out, it asks
// the host for more RAM behind it (INSTAR_HC_GROW_MEMORY), which the host gives up to the run's
// limit (the cap, SandboxConfig::start_memory), so a hostile image still cannot make the guest use
// more memory than the cap.
#include "runtime.h"

namespace instar::guest {
namespace {

constexpr uint64_t MIN_CLASS_SHIFT = 5;  // 32-byte blocks: a header plus a small object
constexpr uint64_t MAX_CLASS_SHIFT = 16; // up to 64 KiB, power-of-two classes; larger blocks are
                                         // page-rounded exact sizes so big buffers waste < 4 KiB
constexpr uint64_t CLASSES = MAX_CLASS_SHIFT - MIN_CLASS_SHIFT + 1;
constexpr uint64_t LARGE = CLASSES;      // bigger blocks: exact size, first-fit reuse
constexpr uint32_t HEADER_MAGIC = 0x41524E41; // "ANRA": catches frees of foreign pointers
constexpr uint64_t BASE_ALIGN = 16;
constexpr uint64_t LARGE_ALIGN = 4096;

struct Header { // sits immediately before every pointer handed out
    uint32_t magic;
    uint32_t cls;
    uint64_t block_size;
    uintptr_t block;
    uint64_t reserved;
};
static_assert(sizeof(Header) == 32);

struct FreeBlock {
    FreeBlock* next;
    uint64_t size;
};

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

class Arena final : public Allocator {
public:
    void init(uint64_t base, uint64_t size) {
        next_ = align_up(base, BASE_ALIGN);
        end_ = base + size;
    }

    void* allocate(size_t size, size_t align) override {
        if (align < BASE_ALIGN) align = BASE_ALIGN;
        if ((align & (align - 1)) != 0 || align > (1u << 21)) return nullptr;
        // need = header + worst-case alignment padding + size, overflow-checked.
        uint64_t need = sizeof(Header) + (align - BASE_ALIGN);
        if (size > INSTAR_MAX_GUEST_MEMORY || need > INSTAR_MAX_GUEST_MEMORY - size) return nullptr;
        need += size;
        uint64_t cls = LARGE, block_size = align_up(need, LARGE_ALIGN);
        for (uint64_t c = 0; c < CLASSES; ++c) {
            if (need <= (1ull << (c + MIN_CLASS_SHIFT))) {
                cls = c;
                block_size = 1ull << (c + MIN_CLASS_SHIFT);
                break;
            }
        }
        uintptr_t block = take(cls, block_size);
        if (block == 0) return nullptr;
        uintptr_t user = align_up(block + sizeof(Header), align);
        // SAFETY: [block, block + block_size) is ours and user - sizeof(Header) >= block.
        Header* h = reinterpret_cast<Header*>(user - sizeof(Header));
        *h = Header{HEADER_MAGIC, static_cast<uint32_t>(cls), block_size, block, 0};
        return reinterpret_cast<void*>(user);
    }

    uint64_t room() const { return end_ - next_; }

    void deallocate(void* p, size_t) override {
        if (p == nullptr) return;
        // SAFETY: p came from allocate(), which put a Header right before it (checked by magic).
        Header* h = reinterpret_cast<Header*>(reinterpret_cast<uintptr_t>(p) - sizeof(Header));
        if (h->magic != HEADER_MAGIC || h->cls > LARGE) return; // not ours: leak, never corrupt
        h->magic = 0;
        // SAFETY: h->block is the start of a block this arena carved, at least 32 bytes long.
        auto* fb = reinterpret_cast<FreeBlock*>(h->block);
        fb->size = h->block_size;
        fb->next = free_[h->cls];
        free_[h->cls] = fb;
    }

private:
    uintptr_t take(uint64_t cls, uint64_t block_size) {
        FreeBlock** link = &free_[cls];
        while (*link != nullptr) {
            FreeBlock* fb = *link;
            if (fb->size >= block_size) {
                *link = fb->next;
                return reinterpret_cast<uintptr_t>(fb);
            }
            link = &fb->next;
        }
        if (block_size > end_ - next_ && !grow(next_ + block_size)) return 0;
        uintptr_t block = next_;
        next_ += block_size;
        return block;
    }

    // More RAM from the host, so that the arena (which ends where RAM does) reaches `end`.
    // A size once refused is not asked for again, nor any larger one: the run's limit does not
    // change (an allocation loop that runs dry would otherwise pay an exit per attempt), but a
    // smaller block may still fit under it.
    bool grow(uint64_t end) {
        uint64_t ram = 0;
        if (end >= refused_ || hc_grow_memory(end, &ram) != 0 || ram < end || ram <= end_) {
            if (end < refused_) refused_ = end;
            return false;
        }
        end_ = ram;
        return true;
    }

    uint64_t next_ = 0;
    uint64_t end_ = 0;
    uint64_t refused_ = UINT64_MAX; // the smallest end the host refused
    FreeBlock* free_[CLASSES + 1] = {};
};

constinit Arena the_arena;

} // namespace

void arena_init(uint64_t base, uint64_t size) { the_arena.init(base, size); }
Allocator& arena() { return the_arena; }
uint64_t arena_room() { return the_arena.room(); }

} // namespace instar::guest

// The C allocation functions Debian's libz.a links against (zcalloc/zcfree), over the same arena.
extern "C" void* malloc(size_t size) { return instar::guest::the_arena.allocate(size, 16); }
extern "C" void free(void* p) { instar::guest::the_arena.deallocate(p, 0); }
extern "C" void* calloc(size_t n, size_t size) {
    if (size != 0 && n > ~size_t{0} / size) return nullptr;
    void* p = malloc(n * size);
    if (p != nullptr) __builtin_memset(p, 0, n * size);
    return p;
}
