"""``python -m moelab demo``: one layer per router kind on random tokens, with routing
statistics and the time per forward."""

from __future__ import annotations

import argparse
import time
from typing import List, Optional

import numpy as np

from .config import MoEConfig
from .layer import MoELayer

__all__ = ["demo_configs", "main"]


def demo_configs(hidden_size: int = 256) -> dict:
    """One small layer per router kind, shaped after the model family that uses it."""
    H = hidden_size
    return {
        "softmax (Qwen3-MoE)": MoEConfig(H, 32, 4, H // 2, scoring="softmax"),
        "softmax+softcap (Grok-2)": MoEConfig(H, 8, 2, H, scoring="softmax", norm_topk_prob=False,
                                              router_logit_softcap=30.0, activation="gelu_tanh"),
        "sigmoid grouped (DeepSeek-V3)": MoEConfig(
            H, 32, 4, H // 4, scoring="sigmoid", n_group=4, topk_group=2, correction_bias=True,
            routed_scaling_factor=2.5, n_shared_experts=1),
        "topk_softmax (gpt-oss)": MoEConfig(H, 16, 4, H, scoring="topk_softmax", router_bias=True,
                                            activation="swiglu_oai", expert_bias=True),
        "llama4 (Llama 4)": MoEConfig(H, 16, 1, H, scoring="llama4", norm_topk_prob=False,
                                      n_shared_experts=1),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moelab demo", description=__doc__)
    parser.add_argument("--tokens", type=int, default=256, help="tokens per forward (default 256)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size H (default 256)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tokens < 1 or args.hidden < 8 or args.repeats < 1:
        parser.error("--tokens and --repeats must be >= 1, --hidden >= 8")
    from . import build_info

    info = build_info()
    print(f"moelab demo: T={args.tokens} tokens, H={args.hidden}, threads={info['num_threads']}, "
          f"simd={info['simd']}")
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.tokens, args.hidden)).astype(np.float32)  # (T, H)
    header = f"{'router':32s} {'E':>4s} {'k':>3s} {'max/mean load':>14s} {'idle':>5s} " \
             f"{'aux':>7s} {'z':>7s} {'ms/forward':>11s}"
    print(header)
    print("-" * len(header))
    for name, cfg in demo_configs(args.hidden).items():
        layer = MoELayer(cfg, seed=args.seed)
        y, stats = layer(x, return_stats=True)  # warm-up, and the statistics
        start = time.perf_counter()
        for _ in range(args.repeats):
            layer(x)
        ms = (time.perf_counter() - start) / args.repeats * 1e3
        load = stats.tokens_per_expert
        imbalance = load.max() / load.mean()
        idle = int((load == 0).sum())
        print(f"{name:32s} {cfg.num_experts:4d} {cfg.num_experts_per_tok:3d} {imbalance:14.2f} "
              f"{idle:5d} {stats.aux_loss:7.3f} {stats.z_loss:7.3f} {ms:11.3f}")
    print("aux: each family's load-balancing loss (docs/semantics.md, Statistics):\n"
          "  softmax, topk_softmax, llama4: transformers' load_balancing_loss_func, k when "
          "balanced\n    (llama4: moelab's choice, transformers computes none);\n"
          "  sigmoid: DeepSeek-V3's sequence-wise balance loss without alpha, 1 when balanced.")
    return 0
