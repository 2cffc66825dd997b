// Single ops callable on their own: expert selection from logits, gated activations, the dense
// projection.
#include <cmath>

#include "convert.hpp"
#include "moelab/activation.hpp"
#include "moelab/check.hpp"
#include "moelab/linear.hpp"
#include "moelab/parallel.hpp"
#include "moelab/router.hpp"
#include "moelab/workspace.hpp"

namespace moelab::bindings {

namespace {

py::tuple route(const py::handle& logits_obj, const MoESpec& spec, const py::handle& bias_obj) {
    spec.validate();
    py::array_t<float> logits = require_f32(logits_obj, "logits", 2);
    const Index T = logits.shape(0), E = spec.num_experts, k = spec.num_experts_per_tok;
    if (logits.shape(1) != E)
        throw py::value_error("logits: expected (T, E=" + std::to_string(E) + "), got " +
                              shape_string(shape_of(logits)));
    const float* l = logits.data();
    for (Index t = 0; t < T; ++t) {
        Index selectable = 0;
        for (Index e = 0; e < E; ++e) {
            const float v = l[t * E + e];
            if (std::isnan(v) || v == INFINITY)
                throw py::value_error("logits: NaN or +inf at token " + std::to_string(t) + ", expert " +
                                      std::to_string(e));
            selectable += v > -INFINITY;
        }
        if (selectable < k)
            throw py::value_error("logits: token " + std::to_string(t) + " has " +
                                  std::to_string(selectable) + " finite logits, fewer than k=" +
                                  std::to_string(k));
    }
    const float* bias = nullptr;
    py::array_t<float> bias_arr;
    if (!bias_obj.is_none()) {
        if (spec.scoring != Scoring::Sigmoid)
            throw py::value_error("correction_bias: only the sigmoid router takes one");
        bias_arr = require_f32(bias_obj, "correction_bias", 1);
        if (bias_arr.shape(0) != E)
            throw py::value_error("correction_bias: expected (E=" + std::to_string(E) + ",), got " +
                                  shape_string(shape_of(bias_arr)));
        require_finite(bias_arr.data(), E, "correction_bias");
        bias = bias_arr.data();
    }
    py::array_t<std::int32_t> ids({T, k});
    py::array_t<float> weights({T, k});
    std::int32_t* ip = ids.mutable_data();
    float* wp = weights.mutable_data();
    const int threads = num_threads();
    RouterScratch scratch;
    scratch.reserve(spec, T, threads);
    run_released([&] { select_experts(l, T, bias, spec, ip, wp, threads, scratch); });
    return py::make_tuple(ids, weights);
}

py::array_t<float> activation(const std::string& kind, const py::handle& gate_obj,
                              const py::handle& up_obj) {
    const Activation a = parse_activation(kind);
    py::array_t<float> gate = require_f32(gate_obj, "gate", -1);
    py::array_t<float> up = require_f32(up_obj, "up", -1);
    if (shape_of(gate) != shape_of(up))
        throw py::value_error("up: expected the shape of gate " + shape_string(shape_of(gate)) +
                              ", got " + shape_string(shape_of(up)));
    const Index n = gate.size();
    require_finite(gate.data(), n, "gate");
    require_finite(up.data(), n, "up");
    std::vector<py::ssize_t> shape(gate.shape(), gate.shape() + gate.ndim());
    py::array_t<float> out(shape);
    float* o = out.mutable_data();
    const float* g = gate.data();
    const float* u = up.data();
    run_released([&] { apply_gated_activation(a, g, u, o, n); });
    return out;
}

// The arguments of linear, checked: x (T, K) float32; weight (N, K) float32, or uint16 holding
// bfloat16 bits; bias (N,) float32 or None; all C-contiguous and finite.
struct LinearCall {
    py::array_t<float> x;
    py::array weight;
    py::array_t<float> bias;
    LinearWeight w;
    Index rows = 0;
};

LinearCall linear_call(const py::handle& x_obj, const py::handle& weight_obj,
                       const py::handle& bias_obj, bool checked = false) {
    LinearCall c;
    c.x = require_f32(x_obj, "x", 2);
    c.weight = require_weight(weight_obj, "weight", -1, c.w.weight, checked);
    if (c.weight.ndim() != 2 || c.weight.shape(0) < 1 || c.weight.shape(1) < 1 ||
        c.weight.shape(1) > kMaxDimension)
        throw py::value_error("weight: expected (N, K) with N >= 1 and 1 <= K <= 2^24, got " +
                              shape_string(shape_of(c.weight)));
    const Index N = c.weight.shape(0), K = c.weight.shape(1);
    if (c.x.shape(1) != K)
        throw py::value_error("x: expected (T, K=" + std::to_string(K) + ") for weight " +
                              shape_string(shape_of(c.weight)) + ", got " +
                              shape_string(shape_of(c.x)));
    c.rows = c.x.shape(0);
    require_finite(c.x.data(), c.rows * K, "x");
    if (!bias_obj.is_none()) {
        c.bias = require_f32(bias_obj, "bias", 1);
        if (c.bias.shape(0) != N)
            throw py::value_error("bias: expected (N=" + std::to_string(N) + ",), got " +
                                  shape_string(shape_of(c.bias)));
        require_finite(c.bias.data(), N, "bias");
        c.w.bias = c.bias.data();
    }
    c.w.out_features = N;
    c.w.in_features = K;
    return c;
}

// y (T, N) of linear (in_region: linear_here, on the calling thread), the scratch planned in
// the calling thread's workspace.
py::array_t<float> run_linear(const py::handle& x_obj, const py::handle& weight_obj,
                              const py::handle& bias_obj, bool in_region, bool checked = false) {
    const LinearCall c = linear_call(x_obj, weight_obj, bias_obj, checked);
    py::array_t<float> y({c.rows, c.w.out_features});
    float* yp = y.mutable_data();
    const float* xp = c.x.data();
    const int threads = num_threads();
    bool ran = false;
    run_released([&] {
        ExpertScratch& scratch = thread_workspace().experts;
        reserve_linear(c.w, c.rows, scratch);
        ran = in_region ? linear_here(xp, c.rows, c.w, yp, scratch)
                        : linear(xp, c.rows, c.w, yp, threads, scratch);
    });
    if (!ran) throw std::logic_error("linear: the planning step left too little scratch");
    return y;
}

}  // namespace

void register_ops(py::module_& m) {
    m.def("route", &route, py::arg("logits"), py::arg("spec"), py::arg("correction_bias") = py::none(),
          "(ids (T, k) int32, weights (T, k) float32) from logits (T, E) float32.");
    m.def("activation", &activation, py::arg("kind"), py::arg("gate"), py::arg("up"),
          "act(gate) * up elementwise; gate and up float32 of one shape.");
    m.def("linear", [](const py::handle& x, const py::handle& weight, const py::handle& bias,
                       bool checked) {
              return run_linear(x, weight, bias, false, checked);
          }, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
          py::arg("checked") = false,
          "y (T, N) = x (T, K) . weight^T (+ bias): x float32; weight (N, K) float32, or uint16 "
          "holding bfloat16 bits, read in place (its values scanned for NaN/Inf unless checked: "
          "the caller checked them once and keeps them unchanged); bias (N,) float32 or None.");
    m.def("_linear_here", [](const py::handle& x, const py::handle& weight, const py::handle& bias) {
              return run_linear(x, weight, bias, true);
          }, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
          "linear on the calling thread alone (the variant for callers inside a parallel "
          "region): for the tests.");
}

}  // namespace moelab::bindings
