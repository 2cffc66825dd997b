// MoELayer and GatedMLP: converted, validated, then run with the GIL released.
#include <array>
#include <memory>
#include <string>
#include <vector>

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

// ---- The steps of forward (MoELayer::route ... routing_losses) --------------------------------

// The array itself if it holds `T` (float32, int32 or int64), C-contiguous, of exactly `shape`
// (-1: any length there); TypeError / ValueError naming `name` and both shapes otherwise.
template <class T>
py::array_t<T> require_array(const py::handle& obj, const std::string& name,
                             const std::vector<Index>& shape, const std::string& expected) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(name + ": expected a numpy.ndarray, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::type_error(name + ": expected " + std::string(py::str(py::dtype::of<T>())) +
                             ", got " + std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style))
        throw py::value_error(name + ": expected a C-contiguous array");
    bool ok = a.ndim() == py::ssize_t(shape.size());
    for (std::size_t i = 0; ok && i < shape.size(); ++i)
        ok = shape[i] < 0 || a.shape(py::ssize_t(i)) == shape[i];
    if (!ok)
        throw py::value_error(name + ": expected " + expected + ", got " +
                              shape_string(shape_of(a)));
    return py::reinterpret_borrow<py::array_t<T>>(a);
}

std::string dims(const MoESpec& s, const std::string& shape) {
    std::string out;
    for (char c : shape) {
        if (c == 'H') out += "H=" + std::to_string(s.hidden_size);
        else if (c == 'E') out += "E=" + std::to_string(s.num_experts);
        else if (c == 'k') out += "k=" + std::to_string(s.num_experts_per_tok);
        else out += c;
    }
    return out;
}

py::tuple layer_route(const MoELayer& layer, const py::handle& x_obj) {
    const MoESpec& s = layer.spec();
    py::array_t<float> x = checked_input(x_obj, s.hidden_size);
    const Index T = x.shape(0);
    py::array_t<float> logits({T, s.num_experts});
    py::array_t<std::int32_t> ids({T, s.num_experts_per_tok});
    py::array_t<float> weights({T, s.num_experts_per_tok});
    float* lp = logits.mutable_data();
    std::int32_t* ip = ids.mutable_data();
    float* wp = weights.mutable_data();
    const float* xp = x.data();
    run_released([&] { layer.route(xp, T, lp, ip, wp); });
    return py::make_tuple(logits, ids, weights);
}

py::tuple layer_dispatch(const MoELayer& layer, const py::handle& ids_obj) {
    const MoESpec& s = layer.spec();
    const auto ids = require_array<std::int32_t>(ids_obj, "ids", {-1, s.num_experts_per_tok},
                                                 dims(s, "(T, k)"));
    const Index T = ids.shape(0);
    py::array_t<std::int64_t> row_of_pair({T * s.num_experts_per_tok});
    py::array_t<std::int64_t> tokens({s.num_experts});
    std::int64_t* rp = row_of_pair.mutable_data();
    std::int64_t* tp = tokens.mutable_data();
    const std::int32_t* ip = ids.data();
    Index dropped = 0;
    run_released([&] { dropped = layer.dispatch(ip, T, rp, tp); });
    return py::make_tuple(row_of_pair, tokens, dropped);
}

py::array_t<float> layer_expert_inputs(const MoELayer& layer, const py::handle& x_obj,
                                       const py::handle& tokens_obj,
                                       const py::handle& weights_obj) {
    const MoESpec& s = layer.spec();
    py::array_t<float> x = checked_input(x_obj, s.hidden_size);
    const auto tokens = require_array<std::int64_t>(tokens_obj, "tokens", {-1}, "(R,)");
    const Index T = x.shape(0), R = tokens.shape(0);
    py::array_t<float> weights;
    if (!weights_obj.is_none())
        weights = require_array<float>(weights_obj, "weights", {R},
                                       "(R=" + std::to_string(R) + ",) like tokens");
    py::array_t<float> rows({R, s.hidden_size});
    float* out = rows.mutable_data();
    const float* xp = x.data();
    const std::int64_t* tp = tokens.data();
    const float* wp = weights_obj.is_none() ? nullptr : weights.data();
    run_released([&] { layer.expert_inputs(xp, T, tp, wp, R, out); });
    return rows;
}

py::array_t<float> layer_run_experts(const MoELayer& layer, const py::handle& rows_obj,
                                     const py::handle& experts_obj,
                                     const py::handle& counts_obj) {
    const MoESpec& s = layer.spec();
    const auto rows = require_array<float>(rows_obj, "rows", {-1, s.hidden_size}, dims(s, "(R, H)"));
    const auto experts = require_array<std::int32_t>(experts_obj, "experts", {-1}, "(n,)");
    const Index R = rows.shape(0), n = experts.shape(0);
    const auto counts = require_array<std::int64_t>(counts_obj, "counts", {n},
                                                    "(n=" + std::to_string(n) + ",) like experts");
    py::array_t<float> output({R, s.hidden_size});
    float* out = output.mutable_data();
    const float* rp = rows.data();
    const std::int32_t* ep = experts.data();
    const std::int64_t* cp = counts.data();
    run_released([&] { layer.run_experts(rp, R, ep, cp, n, out); });
    return output;
}

py::array_t<float> layer_combine(const MoELayer& layer, const py::handle& x_obj,
                                 const py::handle& weights_obj, const py::handle& rop_obj,
                                 const py::handle& output_obj) {
    const MoESpec& s = layer.spec();
    py::array_t<float> x = checked_input(x_obj, s.hidden_size);
    const Index T = x.shape(0), k = s.num_experts_per_tok;
    const std::string t = "T=" + std::to_string(T);
    const auto weights = require_array<float>(weights_obj, "weights", {T, k},
                                              "(" + t + ", " + dims(s, "k") + ") like x");
    const auto rop = require_array<std::int64_t>(rop_obj, "row_of_pair", {T * k},
                                                 "(T*k=" + std::to_string(T * k) + ",)");
    const auto output = require_array<float>(output_obj, "expert_output", {-1, s.hidden_size},
                                             dims(s, "(R, H)"));
    const Index R = output.shape(0);
    py::array_t<float> y({T, s.hidden_size});
    float* yp = y.mutable_data();
    const float* xp = x.data();
    const float* wp = weights.data();
    const std::int64_t* rp = rop.data();
    const float* op = output.data();
    run_released([&] { layer.combine(xp, T, wp, rp, op, R, yp); });
    return y;
}

py::tuple layer_routing_losses(const MoELayer& layer, const py::handle& logits_obj,
                               const py::handle& tokens_obj) {
    const MoESpec& s = layer.spec();
    const auto logits = require_array<float>(logits_obj, "logits", {-1, s.num_experts},
                                             dims(s, "(T, E)"));
    const auto tokens = require_array<std::int64_t>(tokens_obj, "tokens_per_expert",
                                                    {s.num_experts}, dims(s, "(E,)"));
    const Index T = logits.shape(0);
    const float* lp = logits.data();
    const std::int64_t* tp = tokens.data();
    std::array<double, 2> l{};
    run_released([&] { l = layer.routing_losses(lp, T, tp); });
    return py::make_tuple(l[0], l[1]);
}

py::array_t<bool> layer_held_experts(const MoELayer& layer) {
    std::vector<bool> held;
    {
        py::gil_scoped_release release;
        held = layer.held_experts();
    }
    py::array_t<bool> out({Index(held.size())});
    bool* p = out.mutable_data();
    for (std::size_t e = 0; e < held.size(); ++e) p[e] = held[e];
    return out;
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
        .def("route", &layer_route, py::arg("x"),
             "forward's step 1: (logits (T, E) float32, ids (T, k) int32, weights (T, k) float32).")
        .def("dispatch", &layer_dispatch, py::arg("ids"),
             "forward's counting sort with capacity(T): (row_of_pair (T*k,) int64, -1 for a "
             "dropped pair; tokens_per_expert (E,) int64; dropped int).")
        .def("expert_inputs", &layer_expert_inputs, py::arg("x"), py::arg("tokens"),
             py::arg("weights") = py::none(),
             "rows (R, H) = x[tokens] (times weights for llama4): what the experts read.")
        .def("run_experts", &layer_run_experts, py::arg("rows"), py::arg("experts"),
             py::arg("counts"),
             "(R, H) expert outputs of rows (R, H) in runs: counts[i] rows for experts[i].")
        .def("combine", &layer_combine, py::arg("x"), py::arg("weights"), py::arg("row_of_pair"),
             py::arg("expert_output"),
             "y (T, H): the kept rows times their weights in slot order, plus the shared experts.")
        .def("routing_losses", &layer_routing_losses, py::arg("logits"),
             py::arg("tokens_per_expert"), "(aux_loss, z_loss).")
        .def_property_readonly("held_experts", &layer_held_experts,
                               "(E,) bool: the routed experts whose weights the layer holds.")
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
