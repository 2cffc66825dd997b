"""The one place where the tests' numerical tolerances are stated, each with its reason.

The C++ core computes in float32 (sums of many terms in double); ``moelab.reference`` computes
the same thing in float64. What separates them is float32 rounding, whose unit roundoff is
u = 2**-24 ~ 6.0e-8 (machine epsilon 2u ~ 1.2e-7). The tests use small dimensions
(H, I, E <= 64), so every dot product has at most 64 terms.

Unless said otherwise a tolerance is *scale-relative*: the largest absolute difference over an
array must be at most ``atol + rtol * max|expected|``. Rounding errors of dot products are
bounded by the magnitudes of their terms, not of their (possibly cancelling) results, so an
elementwise relative test would be wrong near zero; the scale of the whole array is the honest
yardstick. Any wrong formula, index or weight produces errors of order 1e-3 .. 1 of that scale,
four or more orders of magnitude above these bounds.

Other test files import from here; nobody states a tolerance anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = [
    "Tolerance",
    "FLOAT32_EPS",
    "OUTPUT",
    "LOGITS",
    "ROUTING_WEIGHTS",
    "LOSS",
    "ACTIVATION",
    "PERMUTATION",
    "WEIGHT_SUM",
    "FLOAT64_FORMULA",
    "BF16_STORAGE",
    "DELTANET",
    "LINEAR",
    "RMS_NORM",
    "SOFTCAP",
    "ATTENTION",
    "ROPE",
    "ROPE_FAR_POSITIONS",
    "DECODER_LOGITS",
    "DECODER_LOGITS_DELTANET",
    "BF16_DECODER_LOGITS",
    "SAMPLED_MEAN_SIGMAS",
    "max_abs_err",
    "rel_err",
    "assert_close",
]

#: float32 machine epsilon, 2**-23.
FLOAT32_EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Tolerance:
    """``|actual - expected| <= atol + rtol * scale``; ``scale`` is max|expected| by default."""

    rtol: float
    atol: float


#: Layer / MLP outputs, float32 core vs float64 reference. An output element is a chain of
#: float32 dot products (router: H terms; gate_up: H; down: I) plus a k-term combine and the
#: shared expert. A length-n dot product errs by at most ~n*u*sum|terms| and typically by
#: ~sqrt(n)*u*sum|terms|; with n <= 64 and sum|terms| a few times the output scale this is
#: ~1e-6 of the scale, with rare worst cases near 4e-6. 1e-5 (~80 eps) keeps a margin over the
#: worst case. atol covers arrays that are zero or nearly so (T = 0, all-dropped tokens).
OUTPUT = Tolerance(rtol=1e-5, atol=1e-6)

#: Router logits: one length-H float32 dot product (+ bias) and the 1-Lipschitz soft-cap
#: c*tanh(l/c): the same analysis as OUTPUT with one stage instead of three.
LOGITS = Tolerance(rtol=1e-5, atol=1e-6)

#: Routing weights in [0, routed_scaling_factor]: exp / sigmoid of the logits, normalised. A
#: logit error dl changes a softmax or sigmoid weight by at most |w| * dl (relative), and dl is
#: bounded by LOGITS; float32 exp/sigmoid add a few eps. Same numbers as LOGITS, measured against
#: the largest weight.
ROUTING_WEIGHTS = Tolerance(rtol=1e-5, atol=1e-6)

#: aux_loss and z_loss (scalars): means over T of probabilities (softmax, or sigmoid scores
#: normalised per token) / logsumexps of float32 logits, summed in double by the core. Their relative error is that of the probabilities / logits, ~ a few eps
#: up to the LOGITS bound; 1e-5 relative (scale = |expected|).
LOSS = Tolerance(rtol=1e-5, atol=1e-7)

#: ops.activation, checked ELEMENTWISE with scale = (1 + |gate|) * (1 + |up|), a bound on the
#: magnitude of every intermediate term of every kind. Vectorised float32 exp / tanh / erf
#: (Eigen, libm) are accurate to a few ulp (<= ~10); 1 + erf(g) and 1 + tanh(.) for g << 0
#: cancel, leaving an absolute error of ~1 ulp of 1 times |g*u|/2. 5e-6 ~ 40 eps of the term
#: scale covers both with margin; relative to |act(g) * u| it would be wrong where act is tiny.
ACTIVATION = Tolerance(rtol=5e-6, atol=1e-7)

#: Permuting the tokens: the core computes each token independently of the others, so a
#: permutation should give bitwise-identical rows. The kernels may pick different blocking for
#: a row depending on its position in a tile (vectorised main loop vs remainder), which changes
#: the summation order of a dot product: a few eps of the output scale. Stated as OUTPUT's
#: budget, so that only routing or mixing errors (order 1e-2) fail.
PERMUTATION = OUTPUT

#: The sum of one token's k renormalised float32 weights vs routed_scaling_factor (scale =
#: the factor): each weight is a float32 quotient (<= 2 eps relative) and the k-term sum adds
#: <= k eps/2; with k <= 64 that is <= ~4e-6. Hypothesis draws logits up to |l| = 30.
WEIGHT_SUM = Tolerance(rtol=1e-5, atol=0.0)

#: Two float64 spellings of the same formula (checks of the reference against its definition):
#: they differ by the rounding of a handful of float64 operations, a few ulp of the scale
#: (float64 eps = 2.2e-16); 1e-14 is ~45 ulp.
FLOAT64_FORMULA = Tolerance(rtol=1e-14, atol=0.0)


#: Gated DeltaNet outputs and states (float32 vs the float64 recurrent reference, float32 vs
#: Hugging Face's float32 torch path, and moelab's chunked prefill vs its own recurrent steps).
#: Per token: two H-term projections, a K-term conv, d_k-term L2 norms and d_v-term RMS norms
#: (the OUTPUT analysis), plus the recurrence: the state carries the rounding of every earlier
#: update, damped by the decay e^g per token, so a head with e^g ~ 0.999 sums ~1000 updates'
#: worth of rounding (a random walk: ~30 u of the state's scale). The chunked form rounds the
#: state once per chunk instead of once per token, and its unit-lower-triangular solve has an
#: inverse with entries of order 1 (|A_ij| <= 1 for normalised keys and beta < 1): no growth.
#: Measured (outputs, scale-relative): on the tests' shapes ~4e-7 for moelab (either form) and
#: up to ~1.1e-6 for transformers' chunked path; at real head dims (d_k = d_v = 128) over 2000
#: tokens with e^g = 0.9999, 3.4e-7 for the chunked form and 7.4e-7 for token-by-token steps
#: (states: 2.2e-7 and 1.3e-6). 1e-5 keeps a margin of 8x over the worst seen; a wrong head,
#: channel, decay or ordering is off by 1e-2 or more.
DELTANET = Tolerance(rtol=1e-5, atol=1e-6)


def max_abs_err(actual, expected) -> float:
    """max |actual - expected| over all elements (0.0 for empty arrays), in float64."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.size == 0 and b.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)))


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected|: the scale-relative error (0.0 when both are
    empty or equal; inf when expected is all zeros and actual is not)."""
    err = max_abs_err(actual, expected)
    if err == 0.0:
        return 0.0
    scale = float(np.max(np.abs(np.asarray(expected, dtype=np.float64))))
    return err / scale if scale > 0 else float("inf")


def assert_close(actual, expected, tol: Tolerance, what: str, scale: Optional[object] = None
                 ) -> None:
    """Assert ``|actual - expected| <= tol.atol + tol.rtol * scale`` elementwise.

    scale : None means the scalar max|expected| (the scale-relative test of this module); an
    array broadcastable to the shapes gives an elementwise bound. Shapes must be equal.
    ``what`` names the compared quantity in the failure message.
    """
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != expected {b.shape}"
    if a.size == 0:
        return
    assert np.all(np.isfinite(a)), f"{what}: non-finite values in the result"
    if scale is None:
        scale = float(np.max(np.abs(b)))
    bound = tol.atol + tol.rtol * np.asarray(scale, dtype=np.float64)
    diff = np.abs(a - b)
    bad = diff > bound
    if np.any(bad):
        worst = np.unravel_index(np.argmax(diff - bound), diff.shape) if diff.ndim else ()
        raise AssertionError(
            f"{what}: {int(np.sum(bad))} of {a.size} elements outside the tolerance "
            f"(rtol={tol.rtol:g}, atol={tol.atol:g}); worst at {tuple(int(i) for i in worst)}: "
            f"got {a[worst]!r}, expected {b[worst]!r}, |diff|={diff[worst]:.3g} > "
            f"{np.broadcast_to(bound, diff.shape)[worst]:.3g}; scale-relative error "
            f"{rel_err(a, b):.3g}")


#: A layer with bfloat16 expert matrices against the same layer in float32. Each stored weight
#: is rounded to 8 significant bits (relative error <= 2**-9 ~ 2e-3, mean 0); the rounding
#: errors of a dot product add like a random walk, so outputs move by a few 1e-3 of their scale.
#: 2e-2 bounds that with margin; a wrong conversion (truncated mantissa bits misread, bytes
#: swapped) is off by O(1).
BF16_STORAGE = Tolerance(rtol=2e-2, atol=1e-6)


#: ops.linear, float32 core vs float64 reference on the same (possibly bfloat16-rounded)
#: weights: one float32 dot product of K terms per element, with K up to 4100 here (beyond
#: OUTPUT's 64). The kernels sum in k order (in 16 lanes, or 8 partial sums), so the error grows
#: like sqrt(K) u times the terms' magnitude: ~4e-6 of the output scale at K = 4100 for the
#: largest of ~1e4 elements (2.8e-6 measured). 2e-5 keeps a 5x margin; a wrong row, column or
#: bias is off by O(1) of the scale.
LINEAR = Tolerance(rtol=2e-5, atol=1e-6)


#: ops.rms_norm vs its float64 twin, and vs transformers' Qwen3RMSNorm / Gemma3RMSNorm (float32
#: torch). The mean of squares is summed in double and rounded once; then 1/sqrt(mean + eps),
#: x * r and the weight product (offset 1: 1 + w first) each round once: at most ~5 float32
#: roundings per element, 5u ~ 3e-7 of the element itself, so of the scale. torch sums the
#: squares in float32 (vectorised, blocked): ~sqrt(H) u relative on the mean, halved by the
#: square root. Measured (H = 128 .. 4096, float32 and bfloat16 weights, either math): 1.0e-7 ..
#: 1.7e-7 of the scale vs transformers and <= 1.5e-7 vs the twin; elementwise at most 3.1e-7.
#: 1e-6 keeps a 3x margin over the elementwise worst; a wrong eps, offset, axis or weight index
#: is off by >= 1e-4.
RMS_NORM = Tolerance(rtol=1e-6, atol=0.0)

#: ops.logit_softcap vs the float64 twin and vs torch: x / c, tanh and * c in float32 round
#: three times and libm's / SLEEF's tanhf err by <= 1-2 ulp: ~5u ~ 3e-7 of the cap (measured:
#: 1.3e-7 of the scale vs torch, 81-90 % of the logits bitwise equal; 1.4e-7 vs the twin).
#: 1e-6 of the scale. A missing division or a wrong cap is off by O(1).
SOFTCAP = Tolerance(rtol=1e-6, atol=0.0)

#: Softmax attention outputs (float32 core vs float64 reference, vs Hugging Face's float32
#: eager path, and prefill vs cached decode of the core itself). Per token: H-term q/k/v
#: projections, d-term norms, RoPE (cos/sin of float32 angles, as HF forms them), d-term
#: scores, a softmax over at most T keys (denominator in double) and T-term value sums, then an
#: n_h d-term o_proj: the OUTPUT analysis with one more stage. The softmax is 1-Lipschitz in the
#: logits, whose error is a few u of |q||k| scaling. Measured against transformers on the 11
#: families' tiny layers: at most 7.5e-7 of the output scale (Qwen3-Next, decode). 1e-5 (~80
#: eps) of the output scale; a wrong mask, position, head mapping or norm is off by 1e-3 or more.
ATTENTION = Tolerance(rtol=1e-5, atol=1e-6)

#: RoPE inverse frequencies and rotations, core vs HF's float32 torch path. The core forms
#: inv_freq with HF's float32 operations in HF's order: equal floats except where torch's pow
#: rounds differently (1 ulp; 3 of 128 test frequencies), so both sides rotate by the same
#: float32 angles or by angles an ulp apart, and differ by cos/sin rounding (~1 ulp) plus, at
#: positions ~1000, that ulp of the frequency times the position. Measured: 6e-8 where every
#: frequency agrees, 1.3e-6 at p ~ 1000 where one differs. 2e-6 (~17 eps); a wrong pair,
#: position or frequency is off by 1e-2 or more.
ROPE = Tolerance(rtol=2e-6, atol=1e-7)

#: The float64 RoPE twin vs float32 angles (HF's, and the core's, which are the same floats) at
#: positions p < 2048: a float32 angle p * inv_freq is rounded to half an ulp of itself,
#: <= 2048 * 2**-24 ~ 1.2e-4 rad for inv_freq <= 1, which moves a rotated value by as much of
#: its scale (3.4e-5 measured at p ~ 1000). 1.5e-4; a wrong pair or position is off by 1e-2.
ROPE_FAR_POSITIONS = Tolerance(rtol=1.5e-4, atol=1e-7)

#: Whole-decoder logits, core vs transformers' float32 eager model (tests/reference/
#: test_hf_decoder.py): 2-4 layers each of an ATTENTION-bounded mixer and an OUTPUT-bounded FFN
#: on the residual stream, norms (RMS_NORM) between, then a final norm and an H-term LM head.
#: Errors add per stage; the residual stream carries them forward without growth at these
#: depths. Measured over 3 seeds on 11 families' tiny models, MLA included (40-token prompt,
#: 8 cached steps): at most 1.14e-6 of the logit scale (OLMo 2 prompt), typically 4e-7 .. 9e-7;
#: OLMoE, Qwen2-MoE, Qwen2 and Llama at most 6.8e-7.
#: 1e-5 of the logit scale (~80 eps); a wrong norm placement, offset, mask or weight moves
#: logits by 1e-3 or more.
DECODER_LOGITS = Tolerance(rtol=1e-5, atol=1e-6)

#: The same with Qwen3-Next's Gated DeltaNet layers. transformers runs a whole sequence through
#: its chunked gated delta rule (float32 cumulative log-decays, a triangular solve per chunk),
#: while the core runs the recurrence token by token; the two float32 orders differ by ~1e-5 of
#: the scale before the LM head. Measured over 3 seeds: 9.1e-6 (prompt) and 1.0e-5 (decode) of
#: the logit scale. 3e-5 (~250 eps); a wrong decay, gate or state update is off by 1e-3 or more.
DECODER_LOGITS_DELTANET = Tolerance(rtol=3e-5, atol=1e-6)

#: Whole-decoder logits of a bfloat16 checkpoint: moelab (bfloat16 weights, float32 math) vs
#: transformers' model loaded with ``dtype=torch.bfloat16`` (eager), tests/reference/
#: test_hf_decoder.py. Both use the same bfloat16 weights; transformers also rounds every
#: activation to bfloat16 (u = 2**-9 ~ 2e-3): the residual stream, each projection's output,
#: the norms, the attention probabilities and the LM head's logits, while moelab keeps them in
#: float32. The difference is therefore transformers' own rounding (it equals transformers'
#: bfloat16 model vs its float32 model on the same weights, which moelab matches within
#: DECODER_LOGITS): a few u per stage, compounded over 2-4 layers. Measured over 3 seeds on 15
#: families' tiny models (48 tokens, no DeltaNet): 6.4e-3 .. 2.8e-2 of the logit scale over the
#: tokens that both models route to the same experts. 5e-2 keeps a 1.8x margin. A token whose
#: experts differ (transformers' rounded router scores reorder a near-tie: 0 to 2 of 48 tokens
#: in 6 of 36 MoE runs) is off by up to 0.27 of the scale; the test counts those and leaves
#: them out. The core's own accuracy is held to DECODER_LOGITS by the float32 tests.
BF16_DECODER_LOGITS = Tolerance(rtol=5e-2, atol=0.0)

#: A mean over n simulated random draws against its exact expectation (the expert-parallel cost
#: model against routed random tokens, tests/test_expert_parallel_costs.py): the allowed gap is
#: this many standard errors (sample standard deviation / sqrt(n)). By the central limit
#: theorem an unbiased mean strays beyond 5 standard errors with probability ~6e-7; the draws
#: are seeded, so the test is deterministic anyway. A formula that ignores uneven token slices
#: or expert blocks is off by ~9 standard errors on the tests' draws, a wrong row or metadata
#: count by hundreds.
SAMPLED_MEAN_SIGMAS = 5.0
