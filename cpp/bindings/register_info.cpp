// Build information and the thread count.
#include <Eigen/Core>

#include "convert.hpp"
#include "moelab/gemm.hpp"
#include "moelab/parallel.hpp"

namespace moelab::bindings {

void register_info(py::module_& m) {
    m.def("build_info", [] {
        py::dict d;
        d["openmp"] = has_openmp();
        d["max_threads"] = max_threads();
        d["num_threads"] = num_threads();
        // simd: what the kernels run (chosen at run time); eigen_simd: what Eigen was compiled
        // for (the baseline ISA).
        d["simd"] = to_string(active_isa());
        d["eigen_simd"] = std::string(Eigen::SimdInstructionSetsInUse());
        d["isa"] = to_string(active_isa());
        d["isa_detected"] = to_string(detected_isa());
        d["avx512_bf16"] = cpu_has_avx512_bf16();
        d["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
                     "." + std::to_string(EIGEN_MINOR_VERSION);
#if defined(__clang__)
        d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
        d["compiler"] = std::string("gcc ") + __VERSION__;
#else
        d["compiler"] = std::string("unknown");
#endif
#ifdef NDEBUG
        d["build_type"] = std::string("release");
#else
        d["build_type"] = std::string("debug");
#endif
        return d;
    }, "How the core was built and what it runs: openmp, max_threads, num_threads, simd (the "
       "kernels' instruction set), isa, isa_detected, avx512_bf16, eigen, eigen_simd, compiler, "
       "build_type.");
    m.def("set_num_threads", &set_num_threads, py::arg("n"),
          "Threads used by every kernel from now on (process-wide).");
    m.def("get_num_threads", &num_threads, "Threads used by the kernels.");
    m.def("set_isa", [](const std::string& name) { set_isa(parse_isa(name)); }, py::arg("name"),
          "Force the kernels' instruction set: 'portable', 'avx2' or 'avx512' (not above the CPU's).");
    m.def("get_isa", [] { return to_string(active_isa()); }, "The instruction set the kernels use.");
}

}  // namespace moelab::bindings
