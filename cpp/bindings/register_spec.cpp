// MoESpec: moelab.MoEConfig's fields, checked by the core's rules; the names of the routers and
// activations.
#include <optional>

#include "convert.hpp"
#include "moelab/spec.hpp"

namespace moelab::bindings {

namespace {

MoESpec make_spec(Index hidden_size, Index num_experts, Index num_experts_per_tok,
                  Index moe_intermediate_size, const std::string& scoring, bool norm_topk_prob,
                  double routed_scaling_factor, Index n_group, Index topk_group,
                  bool correction_bias, bool router_bias,
                  std::optional<double> router_logit_softcap, const std::string& activation,
                  bool expert_bias, Index n_shared_experts,
                  std::optional<Index> shared_intermediate_size, bool shared_expert_gate,
                  std::optional<double> capacity_factor) {
    const MoESpec spec{hidden_size, num_experts, num_experts_per_tok, moe_intermediate_size,
                       parse_scoring(scoring), norm_topk_prob, routed_scaling_factor, n_group,
                       topk_group, correction_bias, router_bias, router_logit_softcap,
                       parse_activation(activation), expert_bias, n_shared_experts,
                       shared_intermediate_size, shared_expert_gate, capacity_factor};
    spec.validate();
    return spec;
}

py::list weight_shapes(const MoESpec& spec) {
    py::list out;
    for (const TensorSpec& t : spec.tensors())
        out.append(py::make_tuple(t.name, py::tuple(py::cast(t.shape))));
    return out;
}

}  // namespace

void register_spec(py::module_& m) {
    m.attr("SCORINGS") = py::tuple(py::cast(scoring_names()));
    m.attr("ACTIVATIONS") = py::tuple(py::cast(activation_names()));

    spec_class<MoESpec>(m, "MoESpec",
                        "One MoE layer's dimensions and switches: moelab.MoEConfig's fields, with "
                        "its meanings and value rules (ValueError with its messages).")
        .def(py::init(&make_spec), py::kw_only(), py::arg("hidden_size"), py::arg("num_experts"),
             py::arg("num_experts_per_tok"), py::arg("moe_intermediate_size"),
             py::arg("scoring") = "softmax", py::arg("norm_topk_prob") = true,
             py::arg("routed_scaling_factor") = 1.0, py::arg("n_group") = 1,
             py::arg("topk_group") = 1, py::arg("correction_bias") = false,
             py::arg("router_bias") = false, py::arg("router_logit_softcap") = py::none(),
             py::arg("activation") = "silu", py::arg("expert_bias") = false,
             py::arg("n_shared_experts") = 0, py::arg("shared_intermediate_size") = py::none(),
             py::arg("shared_expert_gate") = false, py::arg("capacity_factor") = py::none())
        .def_readonly("hidden_size", &MoESpec::hidden_size)
        .def_readonly("num_experts", &MoESpec::num_experts)
        .def_readonly("num_experts_per_tok", &MoESpec::num_experts_per_tok)
        .def_readonly("moe_intermediate_size", &MoESpec::moe_intermediate_size)
        .def_property_readonly("shared_width", &MoESpec::shared_width,
                               "S, the width of the shared expert block (0 without one).")
        .def_property_readonly("num_params", &MoESpec::num_params,
                               "The layer's parameters: every weight but the correction bias.")
        .def("weight_shapes", &weight_shapes,
             "[(name, shape)] of the layer's weights, in canonical order (docs/semantics.md, "
             "\"Weights\").")
        .def("capacity", &MoESpec::capacity, py::arg("num_tokens"),
             "Pairs each expert keeps for T tokens; -1 when dropless.");
}

}  // namespace moelab::bindings
