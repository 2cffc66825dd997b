// The ops of a decoder around its layers: RMSNorm, token embedding, logit soft-capping. (The
// LM head is linear, in register_ops.cpp.) Arguments are checked and converted here, before the
// GIL is released around the kernel.
#include <cmath>
#include <cstdint>

#include "convert.hpp"
#include "moelab/embedding.hpp"
#include "moelab/norm.hpp"
#include "moelab/parallel.hpp"
#include "moelab/softcap.hpp"

namespace moelab::bindings {

namespace {

constexpr Named<NormMath> kNormMaths[] = {{NormMath::Double, "double"},
                                          {NormMath::Float32, "float32"}};

// A finite float argument; ValueError naming it otherwise.
float require_finite_scalar(double v, const char* name) {
    if (!std::isfinite(v) || std::fabs(v) > 3.4e38)
        throw py::value_error(std::string(name) + ": expected a finite float32 value, got " +
                              std::to_string(v));
    return float(v);
}

py::array_t<float> rms_norm_op(const py::handle& x_obj, const py::handle& weight_obj, double eps,
                               double offset, const std::string& math_name) {
    const NormMath math = parse_name(kNormMaths, math_name, "math");
    py::array_t<float> x = require_f32(x_obj, "x", 2);
    RmsNormWeight w;
    py::array weight = require_weight(weight_obj, "weight", 1, w.weight);
    w.hidden = weight.shape(0);
    if (w.hidden < 1 || x.shape(1) != w.hidden)
        throw py::value_error("x: expected (T, H=" + std::to_string(w.hidden) + ") for weight " +
                              shape_string(shape_of(weight)) + ", got " + shape_string(shape_of(x)));
    if (!(eps >= 0.0)) throw py::value_error("eps: expected >= 0, got " + std::to_string(eps));
    w.eps = require_finite_scalar(eps, "eps");
    if (offset != 0.0 && offset != 1.0)
        throw py::value_error("offset: expected 0 (y = x/rms * w) or 1 (Gemma: x/rms * (1 + w)), got " +
                              std::to_string(offset));
    w.offset = float(offset);
    const Index T = x.shape(0);
    require_finite(x.data(), T * w.hidden, "x");
    py::array_t<float> y({T, w.hidden});
    const float* xp = x.data();
    float* yp = y.mutable_data();
    const int threads = num_threads();
    run_released([&] { rms_norm(xp, T, w, math, yp, threads); });
    return y;
}

py::array_t<float> embedding_op(const py::handle& ids_obj, const py::handle& table_obj,
                                const py::handle& scale_obj) {
    if (!py::isinstance<py::array>(ids_obj))
        throw py::type_error("ids: expected a numpy.ndarray, got " +
                             std::string(py::str(py::type::of(ids_obj).attr("__name__"))));
    py::array ids_arr = py::reinterpret_borrow<py::array>(ids_obj);
    if (!ids_arr.dtype().is(py::dtype::of<std::int64_t>()))
        throw py::type_error("ids: expected int64, got " + std::string(py::str(ids_arr.dtype())) +
                             " (moelab._core never converts; moelab.ops.embedding does)");
    if (!(ids_arr.flags() & py::array::c_style) || ids_arr.ndim() != 1)
        throw py::value_error("ids: expected a C-contiguous (T,) array, got shape " +
                              shape_string(shape_of(ids_arr)));
    EmbeddingTable t;
    py::array table = require_weight(table_obj, "table", 2, t.table);
    t.vocab = table.shape(0);
    t.hidden = table.shape(1);
    if (t.vocab < 1 || t.hidden < 1)
        throw py::value_error("table: expected (V, H) with V, H >= 1, got " +
                              shape_string(shape_of(table)));
    const bool has_scale = !scale_obj.is_none();
    const float scale = has_scale ? require_finite_scalar(py::cast<double>(scale_obj), "scale") : 1.0f;
    const Index T = ids_arr.shape(0);
    const std::int64_t* ids = static_cast<const std::int64_t*>(ids_arr.data());
    for (Index i = 0; i < T; ++i)
        if (ids[i] < 0 || ids[i] >= t.vocab)
            throw py::index_error("ids: id " + std::to_string(ids[i]) + " at position " +
                                  std::to_string(i) + " is out of range for a table of V=" +
                                  std::to_string(t.vocab) + " rows " +
                                  shape_string(shape_of(table)));
    py::array_t<float> out({T, t.hidden});
    float* op = out.mutable_data();
    const int threads = num_threads();
    run_released([&] { embedding(ids, T, t, has_scale, scale, op, threads); });
    return out;
}

py::array_t<float> logit_softcap_op(const py::handle& logits_obj, double cap) {
    py::array_t<float> logits = require_f32(logits_obj, "logits", -1);
    if (!(cap > 0.0)) throw py::value_error("cap: expected > 0, got " + std::to_string(cap));
    const float c = require_finite_scalar(cap, "cap");
    const Index n = logits.size();
    require_finite(logits.data(), n, "logits");
    std::vector<py::ssize_t> shape(logits.shape(), logits.shape() + logits.ndim());
    py::array_t<float> y(shape);
    const float* xp = logits.data();
    float* yp = y.mutable_data();
    const int threads = num_threads();
    run_released([&] { logit_softcap(xp, n, c, yp, threads); });
    return y;
}

}  // namespace

// Whether a C-contiguous float32 or uint16 (bfloat16 bits) array holds no NaN or Inf: the
// core's branch-free scan, at memory speed (a checkpoint's embedding table is 10^8 values).
bool all_finite_op(const py::handle& obj) {
    WeightPtr ptr;
    try {
        require_weight(obj, "array", -1, ptr);
    } catch (const std::invalid_argument&) {  // require_finite's: a NaN or Inf
        return false;
    }
    return true;
}

void register_decoder_ops(py::module_& m) {
    m.def("all_finite", &all_finite_op, py::arg("array"),
          "No NaN or Inf in a C-contiguous float32 array or uint16 array of bfloat16 bits.");
    m.def("rms_norm", &rms_norm_op, py::arg("x"), py::arg("weight"), py::arg("eps"),
          py::arg("offset") = 0.0, py::arg("math") = "float32",
          "y (T, H) = x / sqrt(mean(x^2) + eps) * (offset + weight): x (T, H) float32; weight (H,) "
          "float32, or uint16 holding bfloat16 bits; offset 0 or 1; math 'float32' (transformers' "
          "steps) or 'double'.");
    m.def("embedding", &embedding_op, py::arg("ids"), py::arg("table"), py::arg("scale") = py::none(),
          "out (T, H) float32 = table[ids] (* scale in the table's dtype): ids (T,) int64; table "
          "(V, H) float32, or uint16 holding bfloat16 bits, read in place.");
    m.def("logit_softcap", &logit_softcap_op, py::arg("logits"), py::arg("cap"),
          "cap * tanh(logits / cap), float32 of any shape; cap > 0.");
}

}  // namespace moelab::bindings
