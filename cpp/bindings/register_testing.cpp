// Private hooks for the tests (underscore names, not part of the API): the heap probe, and the
// threshold below which loops run on one thread with the count of loops that ran on several.
#include "convert.hpp"
#include "moelab/heap_probe.hpp"
#include "moelab/parallel.hpp"

namespace moelab::bindings {

void register_testing(py::module_& m) {
    m.def("_heap_probe_linked", &heap_probe_linked,
          "Whether this build counts the core's heap allocations (Linux builds do).");
    m.def("_heap_allocations", &heap_allocations,
          "Heap allocations the core has made inside its kernel calls so far, on any thread: "
          "the difference across a call is what that call allocated.");
    m.def("_get_min_parallel_work", &min_parallel_work,
          "Elementary operations below which a parallel loop runs on one thread.");
    m.def("_set_min_parallel_work", &set_min_parallel_work, py::arg("work"),
          "Set that threshold (process-wide; 0: every loop runs on all its threads). For tests.");
    m.def("_parallel_regions", [] {
        py::dict d;
        for (int r = 0; r < int(Region::Count); ++r)
            d[region_name(Region(r))] = multithreaded_regions(Region(r));
        return d;
    }, "For each parallel loop of the core, how many times it ran on more than one thread.");
}

}  // namespace moelab::bindings
