// Single ops callable on their own: expert selection from logits, gated activations.
#include <cmath>

#include "convert.hpp"
#include "moelab/activation.hpp"
#include "moelab/check.hpp"
#include "moelab/router.hpp"

namespace moelab::bindings {

namespace {

py::tuple route(const py::handle& logits_obj, const MoESpec& spec, const py::handle& bias_obj) {
    spec.validate();
    py::array_t<float> logits = require_f32(logits_obj, "logits", 2);
    const Index T = logits.shape(0), E = spec.num_experts, k = spec.top_k;
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
    {
        py::gil_scoped_release release;
        select_experts(l, T, bias, spec, ip, wp);
    }
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
    {
        py::gil_scoped_release release;
        apply_gated_activation(a, g, u, o, n);
    }
    return out;
}

}  // namespace

void register_ops(py::module_& m) {
    m.def("route", &route, py::arg("logits"), py::arg("spec"), py::arg("correction_bias") = py::none(),
          "(ids (T, k) int32, weights (T, k) float32) from logits (T, E) float32.");
    m.def("activation", &activation, py::arg("kind"), py::arg("gate"), py::arg("up"),
          "act(gate) * up elementwise; gate and up float32 of one shape.");
}

}  // namespace moelab::bindings
