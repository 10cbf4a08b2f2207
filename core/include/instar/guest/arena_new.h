// Objects in the bounded arena: placement new without the C++ library (guest modules build with
// -nostdinc++, so <new> is not there), and the matching destroy.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>

#if __has_include(<new>)
#include <new>
#else
inline void* operator new(size_t, void* p) noexcept { return p; }
#endif

namespace instar::guest {

// A T built in memory from `alloc`, or nullptr when the arena is exhausted.
template <typename T, typename... Args>
T* arena_new(Allocator& alloc, Args&&... args) {
    void* p = alloc.allocate(sizeof(T), alignof(T));
    return p == nullptr ? nullptr : new (p) T(static_cast<Args&&>(args)...);
}

// Destroys an object made by arena_new and gives its memory back.
template <typename T>
void arena_delete(Allocator& alloc, T* obj) {
    if (obj == nullptr)
        return;
    obj->~T();
    alloc.deallocate(obj, sizeof(T));
}

} // namespace instar::guest
