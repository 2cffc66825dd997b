// Build information and the thread count.
#include <Eigen/Core>
#include <cstdlib>
#include <stdexcept>

#include "convert.hpp"
#include "moelab/gemm.hpp"
#include "moelab/parallel.hpp"

namespace moelab::bindings {

namespace {

// MOELAB_ISA with a name the core does not know is ignored (the best ISA runs): a
// RuntimeWarning says so, with the accepted names (moelab/__init__.py calls this once).
void warn_on_unknown_isa_variable() {
    const char* env = std::getenv("MOELAB_ISA");
    if (!env || !*env) return;
    try {
        parse_isa(env);
    } catch (const std::invalid_argument& e) {
        const std::string message = std::string("MOELAB_ISA is ignored: ") + e.what() +
                                    "; the kernels use " + to_string(active_isa());
        if (PyErr_WarnEx(PyExc_RuntimeWarning, message.c_str(), 2) != 0)
            throw py::error_already_set();  // warnings turned into errors
    }
}

}  // namespace

void register_info(py::module_& m) {
    m.def("_warn_on_unknown_isa_variable", &warn_on_unknown_isa_variable,
          "A RuntimeWarning when MOELAB_ISA names no instruction set the core knows.");
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
        // panels: many-row products take the token-panel kernel (a row's result then depends on
        // whether its expert has more than a few rows, never on its lane or its panel's fill).
        d["panels"] = panels_available();
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
