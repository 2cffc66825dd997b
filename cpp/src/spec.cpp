#include "moelab/spec.hpp"

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace moelab {

Scoring parse_scoring(const std::string& name) {
    if (name == "softmax") return Scoring::Softmax;
    if (name == "sigmoid") return Scoring::Sigmoid;
    if (name == "topk_softmax") return Scoring::TopkSoftmax;
    if (name == "llama4") return Scoring::Llama4;
    throw std::invalid_argument("scoring: expected one of 'softmax', 'sigmoid', 'topk_softmax', "
                                "'llama4', got '" + name + "'");
}

Activation parse_activation(const std::string& name) {
    if (name == "silu") return Activation::Silu;
    if (name == "gelu") return Activation::Gelu;
    if (name == "gelu_tanh") return Activation::GeluTanh;
    if (name == "relu") return Activation::Relu;
    if (name == "swiglu_oai") return Activation::SwigluOai;
    throw std::invalid_argument("activation: expected one of 'silu', 'gelu', 'gelu_tanh', "
                                "'relu', 'swiglu_oai', got '" + name + "'");
}

std::string to_string(Scoring s) {
    switch (s) {
        case Scoring::Softmax: return "softmax";
        case Scoring::Sigmoid: return "sigmoid";
        case Scoring::TopkSoftmax: return "topk_softmax";
        case Scoring::Llama4: return "llama4";
    }
    return "?";
}

std::string to_string(Activation a) {
    switch (a) {
        case Activation::Silu: return "silu";
        case Activation::Gelu: return "gelu";
        case Activation::GeluTanh: return "gelu_tanh";
        case Activation::Relu: return "relu";
        case Activation::SwigluOai: return "swiglu_oai";
    }
    return "?";
}

namespace {
void require(bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument("MoESpec: " + message);
}
}  // namespace

void MoESpec::validate() const {
    require(hidden_size >= 1 && hidden_size <= kMaxDimension, "hidden_size out of range");
    require(num_experts >= 1 && num_experts <= kMaxDimension, "num_experts out of range");
    require(intermediate_size >= 1 && intermediate_size <= kMaxDimension,
            "intermediate_size out of range");
    require(top_k >= 1 && top_k <= num_experts, "top_k must be in [1, num_experts]");
    require(std::isfinite(routed_scaling_factor) && routed_scaling_factor > 0.0f,
            "routed_scaling_factor must be finite and > 0");
    require(n_group >= 1 && topk_group >= 1 && topk_group <= n_group,
            "need 1 <= topk_group <= n_group");
    if (n_group > 1) {
        require(scoring == Scoring::Sigmoid, "n_group > 1 needs the sigmoid router");
        require(num_experts % n_group == 0, "num_experts must be divisible by n_group");
        require(group_size() >= 2, "groups need at least 2 experts");
        require(top_k <= topk_group * group_size(), "top_k exceeds the experts of topk_group groups");
    }
    require(!correction_bias || scoring == Scoring::Sigmoid,
            "correction_bias needs the sigmoid router");
    require(scoring == Scoring::Softmax || scoring == Scoring::Sigmoid ||
                routed_scaling_factor == 1.0f,
            "routed_scaling_factor applies to softmax and sigmoid routers only");
    require(std::isfinite(router_logit_softcap) && router_logit_softcap >= 0.0f,
            "router_logit_softcap must be 0 (none) or finite and > 0");
    require(shared_intermediate_size >= 0 && shared_intermediate_size <= kMaxDimension,
            "shared_intermediate_size out of range");
    require(!shared_expert_gate || shared_intermediate_size > 0,
            "shared_expert_gate needs a shared expert");
    require(std::isfinite(capacity_factor) && capacity_factor >= 0.0,
            "capacity_factor must be 0 (dropless) or finite and > 0");
    const double params = double(num_experts) * 3.0 * double(hidden_size) * double(intermediate_size) +
                          3.0 * double(hidden_size) * double(shared_intermediate_size);
    require(params <= kMaxLayerParams, "more than 2^36 parameters in one layer");
}

Index MoESpec::capacity(Index num_tokens) const {
    if (capacity_factor <= 0.0) return -1;
    // Same expression and evaluation order as the Python reference: ceil(T * k / E * cf).
    const double c = std::ceil(double(num_tokens * top_k) / double(num_experts) * capacity_factor);
    return Index(c);
}

std::string MoESpec::describe() const {
    std::ostringstream s;
    s << "H=" << hidden_size << ", E=" << num_experts << ", k=" << top_k
      << ", I=" << intermediate_size << ", scoring=" << to_string(scoring)
      << ", activation=" << to_string(activation);
    if (shared_intermediate_size) s << ", shared=" << shared_intermediate_size;
    return s.str();
}

}  // namespace moelab
