"""Make a bfloat16 Hugging Face checkpoint of a realistic width with transformers, for the
load-time and memory measurement (bench_load.py).

    python benchmarks/make_checkpoint.py OUT_DIR            # qwen3_moe at Qwen3-30B-A3B's width:
                                                           # H=2048, 128 experts of I=768, 3
                                                           # layers: about 4.6 GiB of bf16
    python benchmarks/make_checkpoint.py OUT_DIR --quick    # the same family, tiny (the smoke test)

The weights are random (transformers' own init, seeded); what is measured is how they are read,
not what they compute. transformers' ``save_pretrained`` stores each expert's gate, up and down
as separate tensors (``mlp.experts.{e}.gate_proj.weight`` ...), as the released checkpoints do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

__all__ = ["FULL", "QUICK", "make_checkpoint", "checkpoint_bytes"]

#: Qwen3-30B-A3B's widths (its config.json on the Hub) with 3 of its 48 layers.
FULL: Dict[str, object] = dict(
    model_type="qwen3_moe", hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
    num_experts=128, num_experts_per_tok=8, num_hidden_layers=3, num_attention_heads=32,
    num_key_value_heads=4, head_dim=128, vocab_size=151936, max_position_embeddings=4096,
    rms_norm_eps=1e-6, rope_theta=1000000.0, norm_topk_prob=True, tie_word_embeddings=False,
    decoder_sparse_step=1, mlp_only_layers=[])
#: The same design, tiny.
QUICK: Dict[str, object] = dict(FULL, hidden_size=64, intermediate_size=96,
                                moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2,
                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                head_dim=16, vocab_size=512)


def make_checkpoint(out_dir, config: Dict[str, object], seed: int = 0) -> Path:
    """Writes a bfloat16 checkpoint of ``config`` (transformers' Qwen3MoeForCausalLM, random
    init of ``seed``) into ``out_dir`` with ``save_pretrained``; returns the folder."""
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = Qwen3MoeConfig(**{k: v for k, v in config.items() if k != "model_type"})
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in bfloat16: no float32 copy of 4 GiB
    try:
        model = Qwen3MoeForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(out, max_shard_size="2GB")
    return out


def checkpoint_bytes(folder) -> int:
    """Bytes of the ``*.safetensors`` files of a checkpoint folder."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def main(argv: List[str] = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--quick", action="store_true", help="a tiny checkpoint (seconds)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    config = QUICK if args.quick else FULL
    start = time.perf_counter()
    folder = make_checkpoint(args.out_dir, config, args.seed)
    print(json.dumps({"folder": str(folder), "bytes": checkpoint_bytes(folder),
                      "seconds": round(time.perf_counter() - start, 1)}))
    return folder


if __name__ == "__main__":
    main(sys.argv[1:])
