#include "moelab/deltanet.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "moelab/activation.hpp"
#include "moelab/check.hpp"
#include "moelab/delta_rule.hpp"
#include "moelab/init.hpp"
#include "moelab/parallel.hpp"
#include "moelab/linear.hpp"
#include "moelab/spec.hpp"
#include "moelab/workspace.hpp"

namespace moelab {

namespace {

// Tokens a forward processes at once (a multiple of kDeltaChunk): projections, conv and the
// delta rule run block after block, so the work buffers are O(block), not O(T).
constexpr Index kBlockTokens = 4 * kDeltaChunk;

// Largest conv kernel accepted (HF's models use 4): a guard against absurd configs.
constexpr Index kMaxConvKernel = 1024;

// torch's softplus: log(1 + e^x), and x itself above 20.
inline float softplus(float x) noexcept { return x > 20.0f ? x : std::log1p(std::exp(x)); }

LinearWeight linear_weight(const Tensor& w) {
    LinearWeight l;
    l.weight = weight_ptr(w);
    l.out_features = w.shape[0];
    l.in_features = w.shape[1];
    return l;
}

}  // namespace

// ---- spec ------------------------------------------------------------------------------------

void DeltaNetSpec::validate() const {
    require_dimension("hidden_size", hidden_size, kMaxDimension);
    require_dimension("linear_num_key_heads", num_key_heads, kMaxDimension);
    require_dimension("linear_num_value_heads", num_value_heads, kMaxDimension);
    require_dimension("linear_key_head_dim", key_head_dim, kMaxDimension);
    require_dimension("linear_value_head_dim", value_head_dim, kMaxDimension);
    require_dimension("linear_conv_kernel_dim", conv_kernel, kMaxConvKernel);
    if (num_value_heads % num_key_heads != 0)
        throw std::invalid_argument("linear_num_value_heads: " + std::to_string(num_value_heads) +
                                    " is not a multiple of linear_num_key_heads=" +
                                    std::to_string(num_key_heads));
    if (value_dim() > kMaxDimension)  // out_proj's input width, as linear() bounds it
        throw std::invalid_argument("linear_num_value_heads * linear_value_head_dim: must be <= " +
                                    std::to_string(kMaxDimension) + ", got " +
                                    std::to_string(value_dim()));
    if (!(std::isfinite(norm_eps) && norm_eps > 0.0f))
        throw std::invalid_argument("rms_norm_eps: must be finite and > 0, got " +
                                    std::to_string(norm_eps));
    const double H = double(hidden_size), kd = double(num_key_heads) * double(key_head_dim),
                 vd = double(num_value_heads) * double(value_head_dim);
    const double params = H * (2 * kd + 2 * vd) + H * 2 * double(num_value_heads) + vd * H +
                          (2 * kd + vd) * double(conv_kernel);
    const double state = double(num_value_heads) * double(key_head_dim) * double(value_head_dim) +
                         (2 * kd + vd) * double(conv_kernel);
    if (params > kMaxLayerParams || state > kMaxLayerParams)
        throw std::invalid_argument("GatedDeltaNet: more than 2^36 parameters or state values (" +
                                    describe() + ")");
}

std::string DeltaNetSpec::describe() const {
    std::ostringstream s;
    s << "H=" << hidden_size << ", n_k=" << num_key_heads << ", n_v=" << num_value_heads
      << ", d_k=" << key_head_dim << ", d_v=" << value_head_dim << ", K=" << conv_kernel;
    return s.str();
}

// ---- state -----------------------------------------------------------------------------------

DeltaNetState::DeltaNetState(const DeltaNetSpec& spec, std::uint64_t owner)
    : SequenceState(owner), spec_(spec) {
    recurrent_.assign(std::size_t(spec.recurrent_floats()), 0.0f);
    conv_.assign(std::size_t(spec.conv_floats()), 0.0f);
}

std::size_t DeltaNetState::nbytes() const {
    return std::size_t(spec_.recurrent_floats() + spec_.conv_floats()) * sizeof(float);
}

void DeltaNetState::read_recurrent(float* dst) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::copy(recurrent_.begin(), recurrent_.end(), dst);
}

void DeltaNetState::read_conv(float* dst) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::copy(conv_.begin(), conv_.end(), dst);
}

void DeltaNetState::reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::fill(recurrent_.begin(), recurrent_.end(), 0.0f);
    std::fill(conv_.begin(), conv_.end(), 0.0f);
    length_ = 0;
}

// ---- layer -----------------------------------------------------------------------------------

GatedDeltaNet::GatedDeltaNet(const DeltaNetSpec& spec, DType weight_dtype)
    : TokenMixerOf(spec, {"GatedDeltaNet", "state", "new_state"}, weight_dtype) {
    const Index H = spec.hidden_size, nv = spec.num_value_heads;
    qkvz_ = weights_.add("in_proj_qkvz.weight", {spec.qkvz_dim(), H}, H, weight_dtype);
    ba_ = weights_.add("in_proj_ba.weight", {2 * nv, H}, H, weight_dtype);
    conv_ = weights_.add("conv1d.weight", {spec.conv_dim(), 1, spec.conv_kernel}, spec.conv_kernel);
    dt_bias_ = weights_.add("dt_bias", {nv}, 1);
    a_log_ = weights_.add("A_log", {nv}, 1);
    norm_ = add_norm("norm.weight", {spec.value_head_dim}, 1.0f);
    out_ = weights_.add("out_proj.weight", {H, spec.value_dim()}, spec.value_dim(), weight_dtype);
}

std::shared_ptr<DeltaNetState> GatedDeltaNet::new_state() const {
    return std::shared_ptr<DeltaNetState>(new DeltaNetState(spec_, id()));
}

void GatedDeltaNet::forward(const float* x, Index T, float* y, DeltaNetState* state) const {
    const ForwardLocks locks = begin_forward(x, T, state);
    if (T == 0) return;

    const DeltaNetSpec& s = spec_;
    const Index H = s.hidden_size, nk = s.num_key_heads, nv = s.num_value_heads,
                dk = s.key_head_dim, dv = s.value_head_dim, K = s.conv_kernel, r = s.heads_per_key();
    const Index key_dim = s.key_dim(), value_dim = s.value_dim(), C = s.conv_dim(),
                P = s.qkvz_dim(), group = 2 * dk + 2 * r * dv;
    const Index B = std::min(T, kBlockTokens);
    const bool decode = T == 1;

    // the planning step: every buffer sized before anything runs (std::bad_alloc here only)
    const LinearWeight qkvz_w = linear_weight(weights_.at(qkvz_)),
                       ba_w = linear_weight(weights_.at(ba_)),
                       out_w = linear_weight(weights_.at(out_));
    Workspace& thread_ws = thread_workspace();
    DeltaNetScratch& ws = thread_ws.deltanet;
    for (const LinearWeight* w : {&qkvz_w, &ba_w, &out_w}) reserve_linear(*w, B, thread_ws.experts);
    grow_to(ws.qkvz, B * P);
    grow_to(ws.ba, B * 2 * nv);
    grow_to(ws.window, (K - 1 + B) * C);
    grow_to(ws.qkv, B * C);
    grow_to(ws.z, B * value_dim);
    grow_to(ws.g, B * nv);
    grow_to(ws.beta, B * nv);
    grow_to(ws.o, B * value_dim);
    grow_to(ws.conv_t, K * C);
    if (ws.ones.size() < std::size_t(std::max(dv, C))) ws.ones.assign(std::size_t(std::max(dv, C)), 1.0f);
    // exactly that size and capacity: it is swapped into the state, whose nbytes it must be
    const std::size_t state_floats = std::size_t(s.recurrent_floats());
    if (ws.state.size() != state_floats || ws.state.capacity() != state_floats)
        ws.state = AlignedVector<float>(state_floats);
    const Index per_head = decode ? delta_step_scratch(dk, dv) : delta_chunk_scratch(dk, dv);
    const int threads = num_threads();
    const int head_threads = threads_for(double(B) * double(nv) * double(dk) * double(dv) * 4.0, threads);
    grow_to(ws.head, Index(head_threads) * per_head);
    const auto project = [&](const float* in, Index rows, const LinearWeight& w, float* out) {
        if (!linear(in, rows, w, out, threads, thread_ws.experts))
            throw std::logic_error("GatedDeltaNet: the planning step left too little scratch");
    };

    // weights used in place (float32)
    const float* conv_w = weights_.at(conv_).f32_data();   // (C, 1, K)
    const float* dt_bias = weights_.at(dt_bias_).f32_data();
    const float* a_log = weights_.at(a_log_).f32_data();
    const float* norm_w = weights_.at(norm_).f32_data();
    for (Index c = 0; c < C; ++c)
        for (Index j = 0; j < K; ++j) ws.conv_t[j * C + c] = conv_w[c * K + j];

    // The state is read from `state` and written to ws.state, which becomes the state only
    // when everything succeeded (a swap): an error leaves the state as it was.
    float* S_new = ws.state.data();
    const float* S_old = state ? state->recurrent_.data() : S_new;
    if (!state) std::fill(ws.state.begin(), ws.state.end(), 0.0f);
    if (K > 1) {
        if (state)
            std::copy(state->conv_.begin(), state->conv_.end(), ws.window.begin());
        else
            std::fill(ws.window.begin(), ws.window.begin() + (K - 1) * C, 0.0f);
    }
    bool finite = true;
    const float q_scale = float(1.0 / std::sqrt(double(dk)));

    for (Index b0 = 0; b0 < T; b0 += B) {
        const Index n = std::min(B, T - b0);
        project(x + b0 * H, n, qkvz_w, ws.qkvz.data());  // (n, P)
        project(x + b0 * H, n, ba_w, ws.ba.data());      // (n, 2 n_v)

        // split HF's grouped layout; decay and write strength per value head
        float* window = ws.window.data();
        const int tok_threads = threads_for(double(n) * double(C) * double(K) * 4.0, threads);
        MOELAB_OMP(parallel for num_threads(tok_threads) schedule(static) if(tok_threads > 1))
        for (Index t = 0; t < n; ++t) {
            const float* src = ws.qkvz.data() + t * P;
            float* w_row = window + (K - 1 + t) * C;
            float* z_row = ws.z.data() + t * value_dim;
            for (Index gk = 0; gk < nk; ++gk) {
                const float* grp = src + gk * group;  // [q | k | v (r d_v) | z (r d_v)]
                std::copy(grp, grp + dk, w_row + gk * dk);
                std::copy(grp + dk, grp + 2 * dk, w_row + key_dim + gk * dk);
                std::copy(grp + 2 * dk, grp + 2 * dk + r * dv, w_row + 2 * key_dim + gk * r * dv);
                std::copy(grp + 2 * dk + r * dv, grp + group, z_row + gk * r * dv);
            }
            const float* ba = ws.ba.data() + t * 2 * nv;
            for (Index gk = 0; gk < nk; ++gk)
                for (Index j = 0; j < r; ++j) {
                    const Index h = gk * r + j;
                    ws.beta[t * nv + h] = sigmoidf(ba[gk * 2 * r + j]);
                    ws.g[t * nv + h] = -std::exp(a_log[h]) * softplus(ba[gk * 2 * r + r + j] + dt_bias[h]);
                }
        }

        // causal depthwise conv + SiLU, then L2-normalised (and scaled) q and k
        MOELAB_OMP(parallel for num_threads(tok_threads) schedule(static) if(tok_threads > 1))
        for (Index t = 0; t < n; ++t) {
            float* out = ws.qkv.data() + t * C;
            for (Index c = 0; c < C; ++c) out[c] = 0.0f;
            for (Index j = 0; j < K; ++j) {
                const float* in = window + (t + j) * C;
                const float* w = ws.conv_t.data() + j * C;
                for (Index c = 0; c < C; ++c) out[c] += w[c] * in[c];
            }
            apply_gated_activation(Activation::Silu, out, ws.ones.data(), out, C);
            for (Index hk = 0; hk < 2 * nk; ++hk) {  // q heads, then k heads
                float* v = out + hk * dk;
                double ss = 0.0;
                for (Index i = 0; i < dk; ++i) ss += double(v[i]) * double(v[i]);
                const float inv = float(1.0 / std::sqrt(ss + double(kDeltaNetL2Eps)));
                const float scale = hk < nk ? q_scale : 1.0f;
                for (Index i = 0; i < dk; ++i) v[i] = v[i] * inv * scale;
            }
        }

        // the delta rule, one value head per task, then its gated RMSNorm
        const float* S_in = b0 == 0 ? S_old : S_new;
        int bad = 0;
        MOELAB_OMP(parallel for num_threads(head_threads) schedule(static) if(head_threads > 1) reduction(|:bad))
        for (Index h = 0; h < nv; ++h) {
            float* scratch = ws.head.data() + Index(thread_id()) * per_head;
            const Index hk = h / r;
            DeltaHead in;
            in.q = ws.qkv.data() + hk * dk;
            in.k = ws.qkv.data() + key_dim + hk * dk;
            in.v = ws.qkv.data() + 2 * key_dim + h * dv;
            in.ld = C;
            in.g = ws.g.data() + h;
            in.beta = ws.beta.data() + h;
            in.ld_gate = nv;
            in.d_k = dk;
            in.d_v = dv;
            const float* s_in = S_in + h * dk * dv;
            float* s_out = S_new + h * dk * dv;
            float* o = ws.o.data() + h * dv;
            bool ok = true;
            if (decode) {
                ok = delta_rule_step(in, s_in, s_out, o, scratch);
            } else {
                for (Index t0 = 0; t0 < n; t0 += kDeltaChunk) {
                    DeltaHead c = in;
                    c.q += t0 * C;
                    c.k += t0 * C;
                    c.v += t0 * C;
                    c.g += t0 * nv;
                    c.beta += t0 * nv;
                    ok = delta_rule_chunk(c, std::min(kDeltaChunk, n - t0), s_in, s_out,
                                          o + t0 * value_dim, value_dim, scratch) && ok;
                    s_in = s_out;
                }
            }
            bad |= ok ? 0 : 1;
            for (Index t = 0; t < n; ++t) {  // w * rmsnorm(o) * silu(z), in place
                float* row = o + t * value_dim;
                double ss = 0.0;
                for (Index c = 0; c < dv; ++c) ss += double(row[c]) * double(row[c]);
                const float inv = float(1.0 / std::sqrt(ss / double(dv) + double(s.norm_eps)));
                for (Index c = 0; c < dv; ++c) row[c] = norm_w[c] * (row[c] * inv);
                apply_gated_activation(Activation::Silu, ws.z.data() + t * value_dim + h * dv,
                                       row, row, dv);
            }
        }
        finite = finite && !bad;

        project(ws.o.data(), n, out_w, y + b0 * H);      // (n, H)
        if (K > 1)  // the last K - 1 conv inputs open the next block's window
            std::memmove(window, window + n * C, std::size_t((K - 1) * C) * sizeof(float));
    }

    require_finite_result(y, T * H, finite);
    if (state) {
        std::swap(state->recurrent_, ws.state);
        std::copy(ws.window.begin(), ws.window.begin() + (K - 1) * C, state->conv_.begin());
        state->length_ += T;
    }
}

}  // namespace moelab
