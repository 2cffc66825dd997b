// MoELayer and GatedMLP: converted, validated, then run with the GIL released.
#include <memory>

#include "convert.hpp"
#include "moelab/gated_mlp.hpp"
#include "moelab/moe_layer.hpp"
#include "moelab/sequence_state.hpp"
#include "moelab/token_mixer.hpp"

namespace moelab::bindings {

namespace {

// x (T, H) float32 -> y (T, H); checks the shape against H.
py::array_t<float> checked_input(const py::handle& x_obj, Index H) {
    py::array_t<float> x = require_f32(x_obj, "x", 2);
    if (x.shape(1) != H)
        throw py::value_error("x: expected (T, H=" + std::to_string(H) + "), got " +
                              shape_string(shape_of(x)));
    return x;
}

py::tuple layer_forward(const MoELayer& layer, const py::handle& x_obj, bool want_stats) {
    const MoESpec& s = layer.spec();
    py::array_t<float> x = checked_input(x_obj, s.hidden_size);
    const Index T = x.shape(0), H = s.hidden_size, E = s.num_experts, k = s.num_experts_per_tok;
    py::array_t<float> y({T, H});
    float* yp = y.mutable_data();
    const float* xp = x.data();
    if (!want_stats) {
        run_released([&] { layer.forward(xp, T, yp, nullptr); });
        return py::make_tuple(y, py::none());
    }
    py::array_t<std::int32_t> ids({T, k});
    py::array_t<float> weights({T, k});
    py::array_t<float> logits({T, E});
    py::array_t<std::int64_t> tokens({E});
    RoutingStatsOut st;
    st.topk_ids = ids.mutable_data();
    st.topk_weights = weights.mutable_data();
    st.router_logits = logits.mutable_data();
    st.tokens_per_expert = tokens.mutable_data();
    run_released([&] { layer.forward(xp, T, yp, &st); });
    py::dict d;
    d["topk_ids"] = ids;
    d["topk_weights"] = weights;
    d["router_logits"] = logits;
    d["tokens_per_expert"] = tokens;
    d["aux_loss"] = st.aux_loss;
    d["z_loss"] = st.z_loss;
    d["dropped"] = st.dropped;
    py::dict phases;
    phases["route"] = st.seconds_route;
    phases["dispatch"] = st.seconds_dispatch;
    phases["pack"] = st.seconds_pack;
    phases["gate_up"] = st.seconds_gate_up;
    phases["down"] = st.seconds_down;
    phases["combine"] = st.seconds_combine;
    d["phase_seconds"] = phases;
    return py::make_tuple(y, d);
}

}  // namespace

void register_layer(py::module_& m) {
    py::class_<LayerWeights, std::shared_ptr<LayerWeights>> weights(
        m, "_LayerWeights",
        "The weights of a layer (the base of MoELayer, GatedMLP and _TokenMixer).");
    def_weight_methods<LayerWeights>(weights);

    py::class_<TokenMixer, LayerWeights, std::shared_ptr<TokenMixer>>(
        m, "_TokenMixer",
        "The base of the token mixers (Attention, MultiHeadLatentAttention, GatedDeltaNet).")
        .def("init_random", &TokenMixer::init_random, py::arg("seed"),
             py::call_guard<py::gil_scoped_release>(),
             "Uniform in +-1/sqrt(fan_in); norm weights their identity.")
        .def_property_readonly("id", &TokenMixer::id,
                               "Unique per layer object: the owner its caches or states carry.");

    py::class_<SequenceState, std::shared_ptr<SequenceState>>(
        m, "_SequenceState", "The base of a token mixer's per-sequence object (KvCache, "
        "MlaCache, DeltaNetState).")
        .def_property_readonly("length", &SequenceState::length)
        .def_property_readonly("nbytes", &SequenceState::nbytes)
        .def_property_readonly("owner", &SequenceState::owner)
        .def("reset", &SequenceState::reset, py::call_guard<py::gil_scoped_release>());

    py::class_<MoELayer, LayerWeights, std::shared_ptr<MoELayer>>(m, "MoELayer", "One MoE layer.")
        .def(py::init([](const MoESpec& spec, const std::string& dtype) {
                 return std::make_shared<MoELayer>(spec, parse_dtype(dtype));
             }), py::arg("spec"), py::arg("weight_dtype") = "float32")
        .def_property_readonly("spec", &MoELayer::spec)
        .def("forward", &layer_forward, py::arg("x"), py::arg("return_stats") = false,
             "(y (T, H), stats dict or None) for x (T, H) float32.")
        .def("__repr__", [](const MoELayer& l) { return "_core.MoELayer(" + l.spec().describe() + ")"; });

    py::class_<GatedMLP, LayerWeights, std::shared_ptr<GatedMLP>>(m, "GatedMLP",
                                                                  "A dense gated FFN.")
        .def(py::init([](Index hidden, Index intermediate, const std::string& activation,
                         const std::string& dtype) {
                 return std::make_shared<GatedMLP>(hidden, intermediate, parse_activation(activation),
                                                   parse_dtype(dtype));
             }), py::arg("hidden_size"), py::arg("intermediate_size"), py::arg("activation") = "silu",
             py::arg("weight_dtype") = "float32")
        .def_property_readonly("hidden_size", &GatedMLP::hidden)
        .def_property_readonly("intermediate_size", &GatedMLP::intermediate)
        .def_property_readonly("activation", [](const GatedMLP& g) { return to_string(g.activation()); })
        .def("forward", [](const GatedMLP& g, const py::handle& x_obj) {
                 py::array_t<float> x = checked_input(x_obj, g.hidden());
                 const Index T = x.shape(0);
                 py::array_t<float> y({T, g.hidden()});
                 float* yp = y.mutable_data();
                 const float* xp = x.data();
                 run_released([&] { g.forward(xp, T, yp); });
                 return y;
             }, py::arg("x"))
        .def("__repr__", [](const GatedMLP& g) {
            return "_core.GatedMLP(H=" + std::to_string(g.hidden()) + ", I=" +
                   std::to_string(g.intermediate()) + ", activation=" + to_string(g.activation()) + ")";
        });
}

}  // namespace moelab::bindings
