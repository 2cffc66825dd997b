"""The parity fixtures of the registry, as the reference tests select them (no torch here).

Every family module registers its tiny transformers models (``ParityFixture``); the tests take
their lists from here, so a family that registers is tested without editing them, and a list
stays non-empty (its tests then fail, not vanish) when torch or transformers is missing.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import moelab
from moelab.registry import PARITY_BASE, MoEBlockNames, ParityFixture

H = PARITY_BASE["hidden_size"]  # hidden size of every tiny model

#: Every parity fixture of the registry, by name: a family's own (named by its model_type) and
#: its variants (``llama4_k2``).
FIXTURES: Dict[str, ParityFixture] = {p.name: p for fam in moelab.families() for p in fam.parity}
#: The family (model_type) of each fixture.
FAMILY_OF: Dict[str, str] = {p.name: fam.model_type for fam in moelab.families()
                             for p in fam.parity}
#: The fixtures of the families whose MoE layers moelab.hf loads.
LOADABLE = tuple(name for name, fam in FAMILY_OF.items()
                 if moelab.registry.family(fam).checkpoint is not None)
#: One fixture per loadable family (its own), for the tests that need one per family.
ONE_PER_FAMILY = tuple(fam.parity[0].name for fam in moelab.families()
                       if fam.checkpoint is not None and fam.parity)
#: Families whose transformers module defines ``load_balancing_loss_func``.
AUX_LOSS_FAMILIES = tuple(name for name, p in FIXTURES.items() if p.aux_loss)


def one_per(key: Callable[[MoEBlockNames], object]) -> Tuple[str, ...]:
    """The first of ONE_PER_FAMILY for each value of ``key`` on its family's MoE block names:
    one fixture per distinct storage (layout, per-expert names...), so that a family that
    stores its weights in a new way is covered as soon as it registers."""
    seen, out = set(), []
    for name in ONE_PER_FAMILY:
        k = key(registry_moe(name))
        if k not in seen:
            seen.add(k)
            out.append(name)
    return tuple(out)


def registry_moe(fixture: str) -> MoEBlockNames:
    """The MoE block names of a fixture's family."""
    return moelab.registry.family(FAMILY_OF[fixture]).checkpoint.moe
