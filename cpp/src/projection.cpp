#include "moelab/projection.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "moelab/aligned.hpp"
#include "moelab/gemm.hpp"
#include "moelab/parallel.hpp"

namespace moelab {

namespace {

// Fewer rows than this take the dot kernel (gemm_nt, weights streamed once: decode); more are
// packed into token panels of kPanel (AVX-512), where a 16-lane half panel is the smallest unit.
constexpr Index kPanelMinRows = 16;
constexpr Index kDotRows = 64;   // dot path: rows per task
constexpr Index kDotCols = 64;   // dot path: weight rows (outputs) per task
constexpr Index kPanelCols = 96; // panel path: weight rows per task (8 blocks of kPanelRows)
// Panels per task: each block of weight rows is read from memory by the first panel and from
// L2 by the others, so the group (K x kPanel floats each) stays within this much of L2.
constexpr Index kPanelGroupBytes = Index(1) << 20;

struct PackBuffer {
    AlignedVector<float> panels;
    std::vector<std::int32_t> offsets;
};

PackBuffer& pack_buffer() {
    static thread_local PackBuffer b;
    return b;
}

void project_dot(const float* x, Index n, const Tensor& W, float* y, Index ldy) {
    const Index N = W.shape[0], K = W.shape[1];
    const Index row_blocks = (n + kDotRows - 1) / kDotRows, tiles = (N + kDotCols - 1) / kDotCols;
    const Index tasks = row_blocks * tiles;
    const int threads = threads_for(double(n) * double(N) * double(K), num_threads());
    MOELAB_OMP(parallel for num_threads(threads) schedule(dynamic, 1) if(threads > 1))
    for (Index task = 0; task < tasks; ++task) {
        const Index r0 = (task / tiles) * kDotRows, c0 = (task % tiles) * kDotCols;
        const Index rn = std::min(kDotRows, n - r0), cn = std::min(kDotCols, N - c0);
        if (W.dtype == DType::F32)
            gemm_nt(x + r0 * K, K, W.f32.data() + c0 * K, K, y + r0 * ldy + c0, ldy, rn, cn, K);
        else
            gemm_nt_bf16(x + r0 * K, K, W.bf16.data() + c0 * K, K, y + r0 * ldy + c0, ldy, rn,
                         cn, K);
    }
}

void project_panels(const float* x, Index n, const Tensor& W, float* y, Index ldy) {
    const Index N = W.shape[0], K = W.shape[1];
    const Index panels = (n + kPanel - 1) / kPanel;
    PackBuffer& buf = pack_buffer();
    if (buf.panels.size() < std::size_t(panels * K * kPanel))
        buf.panels.resize(std::size_t(panels * K * kPanel));
    buf.offsets.resize(std::size_t(kPanel));
    for (Index l = 0; l < kPanel; ++l) buf.offsets[std::size_t(l)] = std::int32_t(l * K);
    float* packed = buf.panels.data();
    const std::int32_t* offsets = buf.offsets.data();
    const Index group = std::max<Index>(1, kPanelGroupBytes / (K * kPanel * Index(sizeof(float))));
    const Index groups = (panels + group - 1) / group, tiles = (N + kPanelCols - 1) / kPanelCols;
    const Index tasks = groups * tiles;
    const float* Wf = W.dtype == DType::F32 ? W.f32.data() : nullptr;
    const std::uint16_t* Wh = W.dtype == DType::BF16 ? W.bf16.data() : nullptr;
    const int threads = threads_for(double(n) * double(N) * double(K), num_threads());
    MOELAB_OMP(parallel num_threads(threads) if(threads > 1))
    {
        MOELAB_OMP(for schedule(static))
        for (Index p = 0; p < panels; ++p)
            pack_panel(x + p * kPanel * K, offsets, std::min(kPanel, n - p * kPanel), K,
                       packed + p * K * kPanel);
        MOELAB_OMP(for schedule(dynamic, 1))
        for (Index task = 0; task < tasks; ++task) {
            const Index p0 = (task / tiles) * group, c0 = (task % tiles) * kPanelCols;
            const Index p1 = std::min(panels, p0 + group), c1 = std::min(N, c0 + kPanelCols);
            alignas(64) float out[kPanelRows * kPanel];
            for (Index j = c0; j < c1; j += kPanelRows) {
                const Index R = std::min(kPanelRows, c1 - j);
                // bfloat16 rows are prefetched a block ahead (their widening is too short for
                // the hardware prefetchers to ramp up); float32 rows stream on their own.
                PanelPrefetch next;
                if (Wh && j + kPanelRows < N)
                    next = {Wh + (j + kPanelRows) * K, std::min(kPanelRows, N - j - kPanelRows)};
                for (Index p = p0; p < p1; ++p) {
                    const Index lanes = std::min(kPanel, n - p * kPanel);
                    panel_gemm(Wf ? Wf + j * K : nullptr, Wh ? Wh + j * K : nullptr, K, R,
                               packed + p * K * kPanel, K, lanes, out,
                               p == p0 ? next : PanelPrefetch{});
                    panel_store(out, R, lanes, nullptr, y + p * kPanel * ldy + j, ldy);
                }
            }
        }
    }
}

}  // namespace

void project(const float* x, Index n, const Tensor& W, float* y, Index ldy) {
    if (n <= 0) return;
    const Index K = W.shape[1];
    // the packer addresses a panel's rows with int32 offsets (l * K < 2^31)
    const bool panels_fit = double(kPanel) * double(K) < double(std::numeric_limits<std::int32_t>::max());
    if (n >= kPanelMinRows && panels_available() && panels_fit)
        project_panels(x, n, W, y, ldy);
    else
        project_dot(x, n, W, y, ldy);
}

}  // namespace moelab
