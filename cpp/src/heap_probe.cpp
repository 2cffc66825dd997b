#include "moelab/heap_probe.hpp"

#include <atomic>
#include <cstddef>

namespace moelab {

namespace {
std::atomic<int> open_watches{0};
std::atomic<std::int64_t> counted{0};

inline void note_allocation() noexcept {
    if (open_watches.load(std::memory_order_relaxed) > 0)
        counted.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

HeapWatch::HeapWatch() noexcept { open_watches.fetch_add(1, std::memory_order_relaxed); }
HeapWatch::~HeapWatch() { open_watches.fetch_sub(1, std::memory_order_relaxed); }

std::int64_t heap_allocations() noexcept { return counted.load(std::memory_order_relaxed); }

#ifdef MOELAB_HEAP_PROBE
bool heap_probe_linked() noexcept { return true; }
#else
bool heap_probe_linked() noexcept { return false; }
#endif

}  // namespace moelab

#ifdef MOELAB_HEAP_PROBE
// The wrappers GNU ld's --wrap=SYMBOL links in place of SYMBOL, for the symbols CMakeLists.txt
// lists: each counts the call, then calls the real function __real_SYMBOL. The C++ operators
// appear under their mangled names; std::align_val_t is passed as the std::size_t it is.
namespace {
using Size = std::size_t;
struct Nothrow;  // std::nothrow_t, only passed on by reference
}  // namespace

#define MOELAB_COUNTED(Ret, symbol, params, args) \
    Ret __real_##symbol params;                   \
    Ret __wrap_##symbol params {                  \
        moelab::note_allocation();                \
        return __real_##symbol args;              \
    }

extern "C" {
MOELAB_COUNTED(void*, malloc, (Size n), (n))
MOELAB_COUNTED(void*, calloc, (Size n, Size size), (n, size))
MOELAB_COUNTED(void*, realloc, (void* p, Size n), (p, n))
MOELAB_COUNTED(int, posix_memalign, (void** p, Size align, Size n), (p, align, n))
MOELAB_COUNTED(void*, aligned_alloc, (Size align, Size n), (align, n))
MOELAB_COUNTED(void*, memalign, (Size align, Size n), (align, n))
MOELAB_COUNTED(void*, _Znwm, (Size n), (n))  // operator new
MOELAB_COUNTED(void*, _Znam, (Size n), (n))  // operator new[]
MOELAB_COUNTED(void*, _ZnwmRKSt9nothrow_t, (Size n, const Nothrow& t), (n, t))
MOELAB_COUNTED(void*, _ZnamRKSt9nothrow_t, (Size n, const Nothrow& t), (n, t))
MOELAB_COUNTED(void*, _ZnwmSt11align_val_t, (Size n, Size align), (n, align))
MOELAB_COUNTED(void*, _ZnamSt11align_val_t, (Size n, Size align), (n, align))
MOELAB_COUNTED(void*, _ZnwmSt11align_val_tRKSt9nothrow_t, (Size n, Size a, const Nothrow& t),
               (n, a, t))
MOELAB_COUNTED(void*, _ZnamSt11align_val_tRKSt9nothrow_t, (Size n, Size a, const Nothrow& t),
               (n, a, t))
}  // extern "C"

#undef MOELAB_COUNTED
#endif
