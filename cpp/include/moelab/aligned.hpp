// A 64-byte-aligned allocator: weight rows and work buffers start on cache lines, so the
// vector kernels' loads never straddle two lines at a row start; and how scratch buffers grow.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace moelab {

template <class T>
struct AlignedAllocator {
    using value_type = T;
    static constexpr std::size_t kAlignment = 64;
    AlignedAllocator() noexcept = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlignment)));
    }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(kAlignment)); }
    template <class U>
    bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};

template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

// Grows a scratch buffer to n elements if it is shorter; never shrinks it, so that a buffer sized
// once serves every later call of that size or smaller without allocating.
template <class V>
void grow_to(V& v, std::ptrdiff_t n) {
    if (v.size() < std::size_t(n)) v.resize(std::size_t(n));
}

}  // namespace moelab
