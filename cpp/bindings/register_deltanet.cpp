// DeltaNetSpec, DeltaNetState and GatedDeltaNet: converted, validated, then run with the GIL
// released.
#include <memory>

#include "convert.hpp"
#include "moelab/delta_rule.hpp"
#include "moelab/deltanet.hpp"

namespace moelab::bindings {

namespace {

DeltaNetSpec make_spec(Index hidden_size, Index num_key_heads, Index num_value_heads,
                       Index key_head_dim, Index value_head_dim, Index conv_kernel,
                       float rms_norm_eps) {
    return validated(DeltaNetSpec{hidden_size, num_key_heads, num_value_heads, key_head_dim,
                                  value_head_dim, conv_kernel, rms_norm_eps});
}

py::array_t<float> forward(const GatedDeltaNet& layer, const py::handle& x_obj,
                           std::shared_ptr<DeltaNetState> state) {
    return forward_rows(x_obj, layer.spec().hidden_size, [&](const float* x, Index T, float* y) {
        layer.forward(x, T, y, state.get());
    });
}

std::string state_repr(const DeltaNetState& st) {
    return "_core.DeltaNetState(" + st.spec().describe() + ", length=" +
           std::to_string(st.length()) + ", nbytes=" + std::to_string(st.nbytes()) + ")";
}

}  // namespace

void register_deltanet(py::module_& m) {
    m.attr("DELTA_CHUNK") = kDeltaChunk;
    spec_class<DeltaNetSpec>(m, "DeltaNetSpec", "The dimensions of one Gated DeltaNet layer.")
        .def(py::init(&make_spec), py::kw_only(), py::arg("hidden_size"),
             py::arg("linear_num_key_heads"), py::arg("linear_num_value_heads"),
             py::arg("linear_key_head_dim"), py::arg("linear_value_head_dim"),
             py::arg("linear_conv_kernel_dim"), py::arg("rms_norm_eps"))
        .def_readonly("hidden_size", &DeltaNetSpec::hidden_size)
        .def_readonly("linear_num_key_heads", &DeltaNetSpec::num_key_heads)
        .def_readonly("linear_num_value_heads", &DeltaNetSpec::num_value_heads)
        .def_readonly("linear_key_head_dim", &DeltaNetSpec::key_head_dim)
        .def_readonly("linear_value_head_dim", &DeltaNetSpec::value_head_dim)
        .def_readonly("linear_conv_kernel_dim", &DeltaNetSpec::conv_kernel)
        .def_readonly("rms_norm_eps", &DeltaNetSpec::norm_eps);

    py::class_<DeltaNetState, SequenceState, std::shared_ptr<DeltaNetState>>(
        m, "DeltaNetState", "One sequence's state of one Gated DeltaNet layer.")
        .def("recurrent_state", [](const DeltaNetState& st) {
                 const DeltaNetSpec& s = st.spec();
                 return read_released({s.num_value_heads, s.key_head_dim, s.value_head_dim},
                                      [&](float* p) { st.read_recurrent(p); });
             }, "A copy (n_v, d_k, d_v) of the recurrent matrices.")
        .def("conv_state", [](const DeltaNetState& st) {
                 const DeltaNetSpec& s = st.spec();
                 return read_released({s.conv_kernel - 1, s.conv_dim()},
                                      [&](float* p) { st.read_conv(p); });
             }, "A copy (K - 1, conv_dim) of the last conv inputs, oldest first.")
        .def("__repr__", &state_repr);

    py::class_<GatedDeltaNet, TokenMixer, std::shared_ptr<GatedDeltaNet>> layer(
        m, "GatedDeltaNet", "One Gated DeltaNet token mixer.");
    def_token_mixer<GatedDeltaNet, DeltaNetSpec>(layer, "GatedDeltaNet")
        .def("new_state", &GatedDeltaNet::new_state)
        .def("forward", &forward, py::arg("x"), py::arg("state") = nullptr,
             "y (T, H) for x (T, H) float32, continuing state (None: a fresh sequence).");
}

}  // namespace moelab::bindings
