// MoESpec, MoELayer and GatedMLP: converted, validated, then run with the GIL released.
#include <memory>

#include "convert.hpp"
#include "moelab/moe_layer.hpp"

namespace moelab::bindings {

namespace {

MoESpec make_spec(Index hidden_size, Index num_experts, Index top_k, Index intermediate_size,
                  const std::string& scoring, bool norm_topk_prob, float routed_scaling_factor,
                  Index n_group, Index topk_group, bool correction_bias, bool router_bias,
                  float router_logit_softcap, const std::string& activation, bool expert_bias,
                  Index shared_intermediate_size, bool shared_expert_gate, double capacity_factor) {
    MoESpec s;
    s.hidden_size = hidden_size;
    s.num_experts = num_experts;
    s.top_k = top_k;
    s.intermediate_size = intermediate_size;
    s.scoring = parse_scoring(scoring);
    s.norm_topk_prob = norm_topk_prob;
    s.routed_scaling_factor = routed_scaling_factor;
    s.n_group = n_group;
    s.topk_group = topk_group;
    s.correction_bias = correction_bias;
    s.router_bias = router_bias;
    s.router_logit_softcap = router_logit_softcap;
    s.activation = parse_activation(activation);
    s.expert_bias = expert_bias;
    s.shared_intermediate_size = shared_intermediate_size;
    s.shared_expert_gate = shared_expert_gate;
    s.capacity_factor = capacity_factor;
    s.validate();
    return s;
}

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
    const Index T = x.shape(0), H = s.hidden_size, E = s.num_experts, k = s.top_k;
    py::array_t<float> y({T, H});
    float* yp = y.mutable_data();
    const float* xp = x.data();
    if (!want_stats) {
        {
            py::gil_scoped_release release;
            layer.forward(xp, T, yp, nullptr);
        }
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
    {
        py::gil_scoped_release release;
        layer.forward(xp, T, yp, &st);
    }
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

template <class Layer>
void load(Layer& layer, const py::dict& weights, bool strict) {
    std::vector<WeightView> views = weight_views(weights);  // holds no references: dict keeps arrays
    py::gil_scoped_release release;
    layer.load_weights(views, strict);
}

}  // namespace

void register_layer(py::module_& m) {
    py::class_<MoESpec>(m, "MoESpec", "The dimensions and switches of one MoE layer.")
        .def(py::init(&make_spec), py::kw_only(), py::arg("hidden_size"), py::arg("num_experts"),
             py::arg("top_k"), py::arg("intermediate_size"), py::arg("scoring") = "softmax",
             py::arg("norm_topk_prob") = true, py::arg("routed_scaling_factor") = 1.0f,
             py::arg("n_group") = 1, py::arg("topk_group") = 1, py::arg("correction_bias") = false,
             py::arg("router_bias") = false, py::arg("router_logit_softcap") = 0.0f,
             py::arg("activation") = "silu", py::arg("expert_bias") = false,
             py::arg("shared_intermediate_size") = 0, py::arg("shared_expert_gate") = false,
             py::arg("capacity_factor") = 0.0)
        .def_readonly("hidden_size", &MoESpec::hidden_size)
        .def_readonly("num_experts", &MoESpec::num_experts)
        .def_readonly("top_k", &MoESpec::top_k)
        .def_readonly("intermediate_size", &MoESpec::intermediate_size)
        .def_readonly("shared_intermediate_size", &MoESpec::shared_intermediate_size)
        .def("capacity", &MoESpec::capacity, py::arg("num_tokens"),
             "Pairs each expert keeps for T tokens; -1 when dropless.")
        .def("__repr__", [](const MoESpec& s) { return "MoESpec(" + s.describe() + ")"; });

    py::class_<MoELayer, std::shared_ptr<MoELayer>>(m, "MoELayer", "One MoE layer (float32 weights).")
        .def(py::init([](const MoESpec& spec, const std::string& dtype) {
                 return std::make_shared<MoELayer>(spec, parse_dtype(dtype));
             }), py::arg("spec"), py::arg("weight_dtype") = "float32")
        .def_property_readonly("spec", &MoELayer::spec)
        .def_property_readonly("weight_dtype", [](const MoELayer& l) { return dtype_name(l.weight_dtype()); })
        .def("init_random", &MoELayer::init_random, py::arg("seed"),
             py::call_guard<py::gil_scoped_release>())
        .def("weight_names", [](const MoELayer& l) { return l.weights().names(); })
        .def("weight", [](py::object self, const std::string& name) {
                 MoELayer& l = self.cast<MoELayer&>();
                 return tensor_view(l.weights().find(name), self);
             }, py::arg("name"), "A float32 view of a weight (no copy).")
        .def("load_weights", &load<MoELayer>, py::arg("weights"), py::arg("strict") = true)
        .def("forward", &layer_forward, py::arg("x"), py::arg("return_stats") = false,
             "(y (T, H), stats dict or None) for x (T, H) float32.")
        .def("__repr__", [](const MoELayer& l) { return "_core.MoELayer(" + l.spec().describe() + ")"; });

    py::class_<GatedMLP, std::shared_ptr<GatedMLP>>(m, "GatedMLP", "A dense gated FFN (float32).")
        .def(py::init([](Index hidden, Index intermediate, const std::string& activation,
                         const std::string& dtype) {
                 return std::make_shared<GatedMLP>(hidden, intermediate, parse_activation(activation),
                                                   parse_dtype(dtype));
             }), py::arg("hidden_size"), py::arg("intermediate_size"), py::arg("activation") = "silu",
             py::arg("weight_dtype") = "float32")
        .def_property_readonly("weight_dtype", [](const GatedMLP& g) { return dtype_name(g.weight_dtype()); })
        .def_property_readonly("hidden_size", &GatedMLP::hidden)
        .def_property_readonly("intermediate_size", &GatedMLP::intermediate)
        .def_property_readonly("activation", [](const GatedMLP& g) { return to_string(g.activation()); })
        .def("init_random", &GatedMLP::init_random, py::arg("seed"),
             py::call_guard<py::gil_scoped_release>())
        .def("weight_names", [](const GatedMLP& g) { return g.weights().names(); })
        .def("weight", [](py::object self, const std::string& name) {
                 GatedMLP& g = self.cast<GatedMLP&>();
                 return tensor_view(g.weights().find(name), self);
             }, py::arg("name"))
        .def("load_weights", &load<GatedMLP>, py::arg("weights"), py::arg("strict") = true)
        .def("forward", [](const GatedMLP& g, const py::handle& x_obj) {
                 py::array_t<float> x = checked_input(x_obj, g.hidden());
                 const Index T = x.shape(0);
                 py::array_t<float> y({T, g.hidden()});
                 float* yp = y.mutable_data();
                 const float* xp = x.data();
                 {
                     py::gil_scoped_release release;
                     g.forward(xp, T, yp);
                 }
                 return y;
             }, py::arg("x"))
        .def("__repr__", [](const GatedMLP& g) {
            return "_core.GatedMLP(H=" + std::to_string(g.hidden()) + ", I=" +
                   std::to_string(g.intermediate()) + ", activation=" + to_string(g.activation()) + ")";
        });
}

}  // namespace moelab::bindings
