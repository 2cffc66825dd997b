// RopeSpec, AttentionSpec, KvCache and Attention: converted, validated, then run with the GIL
// released.
#include <memory>
#include <optional>

#include "convert.hpp"
#include "moelab/attention.hpp"

namespace moelab::bindings {

namespace {

constexpr Named<RopeType> kRopeTypes[] = {{RopeType::Default, "default"},
                                          {RopeType::Linear, "linear"},
                                          {RopeType::Llama3, "llama3"},
                                          {RopeType::Yarn, "yarn"}};
constexpr Named<QkNorm> kQkNorms[] = {
    {QkNorm::None, "none"}, {QkNorm::Head, "head"}, {QkNorm::Full, "full"}, {QkNorm::L2, "l2"}};
constexpr Named<AttentionMask> kMasks[] = {{AttentionMask::Causal, "causal"},
                                           {AttentionMask::Sliding, "sliding"},
                                           {AttentionMask::Chunked, "chunked"}};

RopeSpec make_rope_spec(const std::string& rope_type, double rope_theta, Index head_dim,
                        double partial_rotary_factor, bool interleaved, double factor,
                        double low_freq_factor, double high_freq_factor,
                        double original_max_position_embeddings, double beta_fast,
                        double beta_slow, double mscale, double mscale_all_dim,
                        double attention_factor, bool truncate) {
    return validated(RopeSpec{parse_name(kRopeTypes, rope_type, "rope_type"), rope_theta, head_dim,
                              partial_rotary_factor, interleaved, factor, low_freq_factor,
                              high_freq_factor, original_max_position_embeddings, beta_fast,
                              beta_slow, mscale, mscale_all_dim, attention_factor, truncate});
}

AttentionSpec make_spec(Index hidden_size, Index num_attention_heads, Index num_key_value_heads,
                        Index head_dim, bool qkv_bias, bool o_bias, const std::string& qk_norm,
                        bool norm_unit_offset, float rms_norm_eps,
                        const std::optional<RopeSpec>& rope, const std::string& mask,
                        Index window, bool sinks, float softcap, float scaling, bool output_gate,
                        bool temperature_tuning, float attn_scale, float floor_scale,
                        Index max_position_embeddings) {
    return validated(AttentionSpec{
        hidden_size, num_attention_heads, num_key_value_heads, head_dim, qkv_bias, o_bias,
        parse_name(kQkNorms, qk_norm, "qk_norm"), norm_unit_offset, rms_norm_eps,
        rope.has_value(), rope.value_or(RopeSpec{}), parse_name(kMasks, mask, "mask"), window,
        sinks, softcap, scaling, output_gate, temperature_tuning, attn_scale, floor_scale,
        max_position_embeddings});
}

py::array_t<float> forward(const Attention& layer, const py::handle& x_obj,
                           std::shared_ptr<KvCache> cache) {
    return forward_rows(x_obj, layer.spec().hidden_size, [&](const float* x, Index T, float* y) {
        layer.forward(x, T, y, cache.get());
    });
}

// x (T, heads, head_dim) rotated at positions pos0 .. (a copy): the RoPE op on its own.
py::array_t<float> rope_apply(const RopeSpec& spec, const py::handle& x_obj, Index pos0) {
    const Rope rope = make_rope(spec);
    py::array_t<float> x = require_f32(x_obj, "x", 3);
    if (x.shape(2) != spec.head_dim)
        throw py::value_error("x: expected (T, heads, head_dim=" + std::to_string(spec.head_dim) +
                              "), got " + shape_string(shape_of(x)));
    if (pos0 < 0) throw py::value_error("pos0: must be >= 0, got " + std::to_string(pos0));
    const Index T = x.shape(0), heads = x.shape(1);
    py::array_t<float> out({T, heads, spec.head_dim});
    float* o = out.mutable_data();
    std::copy(x.data(), x.data() + x.size(), o);
    py::gil_scoped_release release;
    apply_rope(rope, o, T, heads, heads * spec.head_dim, pos0);
    return out;
}

}  // namespace

void register_attention(py::module_& m) {
    py::class_<RopeSpec>(m, "RopeSpec", "HF rope_parameters of one layer (validated).")
        .def(py::init(&make_rope_spec), py::kw_only(), py::arg("rope_type") = "default",
             py::arg("rope_theta") = 10000.0, py::arg("head_dim"),
             py::arg("partial_rotary_factor") = 1.0, py::arg("interleaved") = false,
             py::arg("factor") = 1.0, py::arg("low_freq_factor") = 1.0,
             py::arg("high_freq_factor") = 4.0, py::arg("original_max_position_embeddings") = 0.0,
             py::arg("beta_fast") = 32.0, py::arg("beta_slow") = 1.0, py::arg("mscale") = 0.0,
             py::arg("mscale_all_dim") = 0.0, py::arg("attention_factor") = 0.0,
             py::arg("truncate") = true)
        .def_property_readonly("rope_type", [](const RopeSpec& s) { return name_of(kRopeTypes, s.type); })
        .def_readonly("rope_theta", &RopeSpec::theta)
        .def_readonly("head_dim", &RopeSpec::head_dim)
        .def_readonly("partial_rotary_factor", &RopeSpec::partial_rotary_factor)
        .def_readonly("interleaved", &RopeSpec::interleaved)
        .def("inv_freq", [](const RopeSpec& s) {
                 const Rope r = make_rope(s);
                 py::array_t<float> out(py::ssize_t(r.inv_freq.size()));
                 std::copy(r.inv_freq.begin(), r.inv_freq.end(), out.mutable_data());
                 return out;
             }, "The inverse frequencies (R / 2,) float32, as HF's ROPE_INIT_FUNCTIONS.")
        .def("attention_scaling", [](const RopeSpec& s) { return make_rope(s).attention_scaling; },
             "The factor cos and sin are multiplied by (YaRN's attention factor, else 1).")
        .def("apply", &rope_apply, py::arg("x"), py::arg("pos0") = 0,
             "x (T, heads, head_dim) float32 rotated at positions pos0 .. pos0 + T - 1 (a copy).")
        .def("__repr__", [](const RopeSpec& s) {
            return "RopeSpec(" + name_of(kRopeTypes, s.type) + ", theta=" + py::repr(py::float_(s.theta)).cast<std::string>() +
                   ", head_dim=" + std::to_string(s.head_dim) + ", partial_rotary_factor=" +
                   py::repr(py::float_(s.partial_rotary_factor)).cast<std::string>() + ")";
        });

    spec_class<AttentionSpec>(m, "AttentionSpec", "One softmax-attention layer (validated).")
        .def(py::init(&make_spec), py::kw_only(), py::arg("hidden_size"),
             py::arg("num_attention_heads"), py::arg("num_key_value_heads"), py::arg("head_dim"),
             py::arg("qkv_bias") = false, py::arg("o_bias") = false, py::arg("qk_norm") = "none",
             py::arg("norm_unit_offset") = false, py::arg("rms_norm_eps") = 1e-6f,
             py::arg("rope") = py::none(), py::arg("mask") = "causal", py::arg("window") = 0,
             py::arg("sinks") = false, py::arg("softcap") = 0.0f, py::arg("scaling") = 0.0f,
             py::arg("output_gate") = false, py::arg("temperature_tuning") = false,
             py::arg("attn_scale") = 0.1f, py::arg("floor_scale") = 8192.0f,
             py::arg("max_position_embeddings"))
        .def_readonly("hidden_size", &AttentionSpec::hidden_size)
        .def_readonly("num_attention_heads", &AttentionSpec::num_heads)
        .def_readonly("num_key_value_heads", &AttentionSpec::num_kv_heads)
        .def_readonly("head_dim", &AttentionSpec::head_dim)
        .def_readonly("window", &AttentionSpec::window)
        .def_readonly("max_position_embeddings", &AttentionSpec::max_positions)
        .def_property_readonly("mask", [](const AttentionSpec& s) { return name_of(kMasks, s.mask); })
        .def_property_readonly("qk_norm", [](const AttentionSpec& s) { return name_of(kQkNorms, s.qk_norm); })
        .def_property_readonly("use_rope", [](const AttentionSpec& s) { return s.use_rope; });

    py::class_<KvCache, SequenceState, std::shared_ptr<KvCache>>(
        m, "KvCache", "One sequence's keys and values of one layer.")
        .def_property_readonly("tokens_held", &KvCache::tokens_held)
        .def_property_readonly("window", &KvCache::window)
        .def("read", [](const KvCache& c) {
                 const Index n = c.tokens_held();
                 py::array_t<float> v({n, c.kv_dim()});
                 float* vp = v.mutable_data();
                 py::array_t<float> k = read_released({n, c.kv_dim()}, [&](float* kp) { c.read(kp, vp); });
                 return py::make_tuple(k, v);
             }, "Copies (keys, values), each (tokens_held, n_kv d), oldest token first.")
        .def("__repr__", [](const KvCache& c) {
            return "_core.KvCache(kv_dim=" + std::to_string(c.kv_dim()) + ", window=" +
                   std::to_string(c.window()) + ", length=" + std::to_string(c.length()) +
                   ", nbytes=" + std::to_string(c.nbytes()) + ")";
        });

    py::class_<Attention, TokenMixer, std::shared_ptr<Attention>> layer(m, "Attention",
                                                            "One softmax-attention token mixer.");
    def_token_mixer<Attention, AttentionSpec>(layer, "Attention")
        .def("new_cache", &Attention::new_cache)
        .def("forward", &forward, py::arg("x"), py::arg("cache") = nullptr,
             "y (T, H) for x (T, H) float32, continuing cache (None: a fresh sequence).");
}

}  // namespace moelab::bindings
