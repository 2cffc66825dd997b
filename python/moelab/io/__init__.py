"""Reading model files without torch: safetensors checkpoints, state dicts, ``config.json``.

* :func:`open_checkpoint` -> :class:`Checkpoint` (a folder, sharded or not, or one file):
  ``names()``, ``info(name)``, ``view(name)`` (a read-only view into the memory-mapped file,
  no copy; bfloat16 as raw ``uint16``), ``read_float32(name)`` (a float32 copy), ``close()``.
* :class:`StateDict`: a mapping of names to NumPy arrays or torch tensors with the same
  ``names`` / ``info`` / ``dtype`` / ``shape`` / ``read_float32``: both are a
  :class:`TensorSource`.
* :func:`read_config_json`, :func:`config_dict`: a ``config.json`` (path, folder, dict or
  transformers config) as a dict.

Which tensors make up a layer, and in which layout, is the family's business
(``moelab.registry``) and ``moelab.hf``'s; this package only reads.
"""

from __future__ import annotations

from .config_json import config_dict, read_config_json
from .safetensors import (FLOAT_DTYPES, VIEW_DTYPES, Checkpoint, SafetensorsFile,
                          bf16_to_float32, checkpoint_path, open_checkpoint)
from .source import TensorInfo, TensorSource
from .state_dict import StateDict

__all__ = ["open_checkpoint", "checkpoint_path", "Checkpoint", "SafetensorsFile", "TensorSource", "TensorInfo",
           "StateDict", "read_config_json", "config_dict", "bf16_to_float32", "FLOAT_DTYPES",
           "VIEW_DTYPES"]
