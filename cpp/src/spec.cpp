#include "moelab/spec.hpp"

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "moelab/names.hpp"

namespace moelab {

namespace {

// The router's scale and soft-cap are applied in float32: a larger value would become inf.
constexpr double kFloat32Max = double(std::numeric_limits<float>::max());

constexpr Named<Scoring> kScorings[] = {
    {Scoring::Softmax, "softmax"},
    {Scoring::Sigmoid, "sigmoid"},
    {Scoring::TopkSoftmax, "topk_softmax"},
    {Scoring::Llama4, "llama4"},
};
constexpr Named<Activation> kActivations[] = {
    {Activation::Silu, "silu"},
    {Activation::Gelu, "gelu"},
    {Activation::GeluTanh, "gelu_tanh"},
    {Activation::Relu, "relu"},
    {Activation::SwigluOai, "swiglu_oai"},
};

template <class Enum, std::size_t N>
std::vector<std::string> names(const Named<Enum> (&table)[N]) {
    std::vector<std::string> out;
    for (const Named<Enum>& entry : table) out.push_back(entry.name);
    return out;
}

void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument(message);
}

std::string str(Index v) { return std::to_string(v); }

using Wide = unsigned __int128;  // parameter counts of absurd specs, before they are rejected

// Parameters of the tensors of `tensors` that are parameters, counted without overflow.
Wide count_params(const std::vector<TensorSpec>& tensors) {
    Wide total = 0;
    for (const TensorSpec& t : tensors) {
        if (!t.parameter) continue;
        Wide n = 1;
        for (const Index d : t.shape) n *= Wide(d);
        total += n;
    }
    return total;
}

}  // namespace

Scoring parse_scoring(const std::string& name) { return parse_name(kScorings, name, "scoring"); }
Activation parse_activation(const std::string& name) {
    return parse_name(kActivations, name, "activation");
}
std::string to_string(Scoring s) { return name_of(kScorings, s); }
std::string to_string(Activation a) { return name_of(kActivations, a); }
std::vector<std::string> scoring_names() { return names(kScorings); }
std::vector<std::string> activation_names() { return names(kActivations); }

Index MoESpec::shared_width() const {
    if (n_shared_experts == 0) return 0;
    return shared_intermediate_size ? *shared_intermediate_size
                                    : n_shared_experts * moe_intermediate_size;
}

std::vector<TensorSpec> MoESpec::tensors() const {
    const Index H = hidden_size, E = num_experts, I = moe_intermediate_size, S = shared_width();
    using T = LayerTensor;
    // present?, then: kind, name, shape, fan-in, in the weight dtype?, a parameter?
    const std::pair<bool, TensorSpec> table[] = {
        {true, {T::RouterWeight, "router.weight", {E, H}, H, false, true}},
        {router_bias, {T::RouterBias, "router.bias", {E}, H, false, true}},
        {correction_bias, {T::CorrectionBias, "router.e_score_correction_bias", {E}, H, false, false}},
        {true, {T::GateUp, "experts.gate_up_proj", {E, 2 * I, H}, H, true, true}},
        {true, {T::Down, "experts.down_proj", {E, H, I}, I, true, true}},
        {expert_bias, {T::GateUpBias, "experts.gate_up_proj_bias", {E, 2 * I}, H, false, true}},
        {expert_bias, {T::DownBias, "experts.down_proj_bias", {E, H}, I, false, true}},
        {S > 0, {T::SharedGateUp, "shared_experts.gate_up_proj", {2 * S, H}, H, true, true}},
        {S > 0, {T::SharedDown, "shared_experts.down_proj", {H, S}, S, true, true}},
        {shared_expert_gate, {T::SharedGate, "shared_expert_gate.weight", {1, H}, H, false, true}},
    };
    std::vector<TensorSpec> out;
    for (const auto& [present, tensor] : table)
        if (present) out.push_back(tensor);
    return out;
}

Index MoESpec::num_params() const { return Index(count_params(tensors())); }

void MoESpec::validate() const {
    const Index H = hidden_size, E = num_experts, k = num_experts_per_tok,
                I = moe_intermediate_size;
    // The value rules of a MoE layer: moelab.MoEConfig validates by building a MoESpec and shows
    // these messages after "MoEConfig.".
    for (const auto& [name, v] : {std::pair<const char*, Index>{"hidden_size", H},
                                  {"num_experts", E}, {"moe_intermediate_size", I}})
        require(v >= 1, std::string(name) + " must be >= 1, got " + str(v));
    require(1 <= k && k <= E,
            "num_experts_per_tok must be in [1, num_experts=" + str(E) + "], got " + str(k));
    const double rsf = routed_scaling_factor;
    require(std::isfinite(rsf) && rsf > 0,
            "routed_scaling_factor must be finite and > 0, got " + python_repr(rsf));
    require(rsf <= kFloat32Max, "routed_scaling_factor must be <= " + python_repr(kFloat32Max) +
                                    " (the float32 maximum), got " + python_repr(rsf));
    require(scoring == Scoring::Softmax || scoring == Scoring::Sigmoid || rsf == 1.0,
            "routed_scaling_factor=" + python_repr(rsf) +
                " applies to the 'softmax' and 'sigmoid' routers only, not " +
                python_repr(to_string(scoring)));
    require(n_group >= 1 && topk_group >= 1, "n_group and topk_group must be >= 1, got " +
                                                 str(n_group) + " / " + str(topk_group));
    require(topk_group <= n_group,
            "topk_group=" + str(topk_group) + " exceeds n_group=" + str(n_group));
    if (n_group > 1) {
        require(scoring == Scoring::Sigmoid,
                "n_group > 1 (group-limited routing) needs scoring='sigmoid', got " +
                    python_repr(to_string(scoring)));
        require(E % n_group == 0, "num_experts=" + str(E) + " is not divisible by n_group=" +
                                      str(n_group));
        require(group_size() >= 2, "n_group=" + str(n_group) + " makes groups of " +
                                       str(group_size()) +
                                       " expert(s); the group score sums the two best "
                                       "experts, so a group needs at least 2");
        require(k <= topk_group * group_size(),
                "num_experts_per_tok=" + str(k) + " exceeds the " + str(topk_group * group_size()) +
                    " experts of the topk_group=" + str(topk_group) + " allowed groups");
    }
    require(!correction_bias || scoring == Scoring::Sigmoid,
            "correction_bias (e_score_correction_bias) is a selection bias of the 'sigmoid' "
            "router, not " + python_repr(to_string(scoring)));
    if (router_logit_softcap)
        require(std::isfinite(*router_logit_softcap) && *router_logit_softcap > 0,
                "router_logit_softcap must be None or finite and > 0, got " +
                    python_repr(*router_logit_softcap));
    if (router_logit_softcap)
        require(*router_logit_softcap <= kFloat32Max,
                "router_logit_softcap must be <= " + python_repr(kFloat32Max) +
                    " (the float32 maximum), got " + python_repr(*router_logit_softcap));
    require(n_shared_experts >= 0,
            "n_shared_experts must be >= 0, got " + str(n_shared_experts));
    if (n_shared_experts == 0) {
        require(!shared_intermediate_size,
                "shared_intermediate_size is set but n_shared_experts=0");
        require(!shared_expert_gate, "shared_expert_gate=True needs n_shared_experts >= 1");
    } else if (shared_intermediate_size) {
        require(*shared_intermediate_size >= 1, "shared_intermediate_size must be >= 1, got " +
                                                    str(*shared_intermediate_size));
    }
    if (capacity_factor)
        require(std::isfinite(*capacity_factor) && *capacity_factor > 0,
                "capacity_factor must be None (dropless) or finite and > 0, got " +
                    python_repr(*capacity_factor));
    // What only the core bounds: every dimension, so that no size below overflows.
    for (const auto& [name, v] : {std::pair<const char*, Index>{"hidden_size", H},
                                  {"num_experts", E}, {"moe_intermediate_size", I},
                                  {"n_shared_experts", n_shared_experts}})
        require(v <= kMaxDimension,
                std::string(name) + " must be <= 2^24 = " + str(kMaxDimension) + ", got " + str(v));
    require(shared_width() <= kMaxDimension, "the shared expert width (shared_intermediate_size, "
                                             "or n_shared_experts * moe_intermediate_size) must "
                                             "be <= 2^24 = " + str(kMaxDimension) + ", got " +
                                                 str(shared_width()));
    const Wide params = count_params(tensors());
    require(params <= Wide(kMaxLayerParams),
            "num_params=" + with_commas(params) + " exceeds the limit of " +
                with_commas(Wide(kMaxLayerParams)) +
                " parameters in one layer: the dimensions are absurd");
}

Index MoESpec::capacity(Index num_tokens) const {
    if (!capacity_factor) return -1;
    // Same expression and evaluation order as the Python reference: ceil(T * k / E * cf);
    // never above the T * k pairs there are (no expert can keep more), so that a huge factor
    // stays an Index.
    const double pairs = double(num_tokens * num_experts_per_tok);
    const double c = std::ceil(pairs / double(num_experts) * *capacity_factor);
    return c < pairs ? Index(c) : num_tokens * num_experts_per_tok;
}

std::string MoESpec::describe() const {
    std::ostringstream s;
    s << "H=" << hidden_size << ", E=" << num_experts << ", k=" << num_experts_per_tok
      << ", I=" << moe_intermediate_size << ", scoring=" << to_string(scoring)
      << ", activation=" << to_string(activation);
    if (shared_width()) s << ", shared=" << shared_width();
    return s.str();
}

}  // namespace moelab
