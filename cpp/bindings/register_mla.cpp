// MlaSpec, MlaCache and MultiHeadLatentAttention: converted, validated, then run with the GIL
// released. (RopeSpec is register_attention's.)
#include <memory>

#include "convert.hpp"
#include "moelab/mla.hpp"

namespace moelab::bindings {

namespace {

constexpr Named<MlaForm> kForms[] = {
    {MlaForm::Auto, "auto"}, {MlaForm::Expanded, "expanded"}, {MlaForm::Absorbed, "absorbed"}};

MlaSpec make_spec(Index hidden_size, Index num_attention_heads, Index q_lora_rank,
                  Index kv_lora_rank, Index qk_nope_head_dim, Index qk_rope_head_dim,
                  Index v_head_dim, bool attention_bias, float rms_norm_eps,
                  const RopeSpec& rope, bool rope_interleave, float scaling,
                  Index max_position_embeddings) {
    return validated(MlaSpec{hidden_size, num_attention_heads, q_lora_rank, kv_lora_rank,
                             qk_nope_head_dim, qk_rope_head_dim, v_head_dim, attention_bias,
                             rms_norm_eps, rope, rope_interleave, scaling,
                             max_position_embeddings});
}

}  // namespace

void register_mla(py::module_& m) {
    spec_class<MlaSpec>(m, "MlaSpec", "One multi-head latent attention layer (validated).")
        .def(py::init(&make_spec), py::kw_only(), py::arg("hidden_size"),
             py::arg("num_attention_heads"), py::arg("q_lora_rank"), py::arg("kv_lora_rank"),
             py::arg("qk_nope_head_dim"), py::arg("qk_rope_head_dim"), py::arg("v_head_dim"),
             py::arg("attention_bias") = false, py::arg("rms_norm_eps") = 1e-6f, py::arg("rope"),
             py::arg("rope_interleave") = true, py::arg("scaling") = 0.0f,
             py::arg("max_position_embeddings"))
        .def_readonly("hidden_size", &MlaSpec::hidden_size)
        .def_readonly("kv_lora_rank", &MlaSpec::kv_lora_rank)
        .def_readonly("qk_rope_head_dim", &MlaSpec::qk_rope_head_dim)
        .def_property_readonly("logit_scale", &MlaSpec::logit_scale);

    py::class_<MlaCache, SequenceState, std::shared_ptr<MlaCache>>(
        m, "MlaCache", "One sequence's latent rows of one MLA layer.")
        .def_property_readonly("row_dim", &MlaCache::row_dim)
        .def("read", [](const MlaCache& c) {
                 return read_released({c.length(), c.row_dim()}, [&](float* p) { c.read(p); });
             }, "A copy of the rows [c | k_r], (length, kv_lora_rank + qk_rope_head_dim).")
        .def("__repr__", [](const MlaCache& c) {
            return "_core.MlaCache(row_dim=" + std::to_string(c.row_dim()) + ", length=" +
                   std::to_string(c.length()) + ", nbytes=" + std::to_string(c.nbytes()) + ")";
        });

    py::class_<MultiHeadLatentAttention, TokenMixer, std::shared_ptr<MultiHeadLatentAttention>> layer(
        m, "MultiHeadLatentAttention", "DeepSeek's multi-head latent attention.");
    def_token_mixer<MultiHeadLatentAttention, MlaSpec>(layer, "MultiHeadLatentAttention")
        .def("new_cache", &MultiHeadLatentAttention::new_cache)
        .def("forward", [](const MultiHeadLatentAttention& l, const py::handle& x,
                           std::shared_ptr<MlaCache> cache, const std::string& form) {
                 const MlaForm f = parse_name(kForms, form, "form");
                 return forward_rows(x, l.spec().hidden_size, [&](const float* xp, Index T, float* y) {
                     l.forward(xp, T, y, cache.get(), f);
                 });
             }, py::arg("x"), py::arg("cache") = nullptr, py::arg("form") = "auto",
             "y (T, H) for x (T, H) float32, continuing cache (None: a fresh sequence).");
}

}  // namespace moelab::bindings
