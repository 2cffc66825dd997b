// Counts the heap allocations moelab's own code makes: the test of the promise that a forward
// allocates nothing once its workspace is sized (workspace.hpp).
//
// On Linux the linker routes every call of operator new and of the malloc family made from
// moelab's code (the core, the bindings, and what they inline: std::vector, Eigen) through
// counting wrappers (GNU ld --wrap). While a HeapWatch is open on any thread, every such call on
// any thread (OpenMP workers included) is counted. Elsewhere nothing is counted.
#pragma once

#include <cstdint>

namespace moelab {

bool heap_probe_linked() noexcept;         // the counting wrappers are in this build
std::int64_t heap_allocations() noexcept;  // allocations counted so far (while watched)

// Counting is on while at least one HeapWatch is alive. The bindings open one around each call
// into the core (with the GIL released), so that the count is the core's alone.
class HeapWatch {
  public:
    HeapWatch() noexcept;
    ~HeapWatch();
    HeapWatch(const HeapWatch&) = delete;
    HeapWatch& operator=(const HeapWatch&) = delete;
};

}  // namespace moelab
