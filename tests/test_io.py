"""moelab.io without torch: views into mapped safetensors files, dtypes, folders, the state-dict
source and the config.json reader. (How moelab.hf uses them, and every loader error: the
tests in tests/reference/test_hf_checkpoint.py.)"""

from __future__ import annotations

import json
import mmap
import os
import struct

import numpy as np
import pytest
import safetensors.numpy

import moelab
from moelab.io import (Checkpoint, SafetensorsFile, StateDict, TensorInfo, TensorSource,
                       bf16_to_float32, config_dict, open_checkpoint, read_config_json)
from safetensors_writer import write_raw_safetensors


def _mapped_files() -> str:
    """This process's memory map (Linux), to see which files are mapped."""
    with open("/proc/self/maps") as f:
        return f.read()


def _owner(arr: np.ndarray):
    """The object that owns an array's memory (through views and memoryviews)."""
    while isinstance(arr, (np.ndarray, memoryview)):
        arr = arr.base if isinstance(arr, np.ndarray) else arr.obj
    return arr


@pytest.fixture
def checkpoint(rng, tmp_path):
    """A folder with one file: w (4, 8) float32, b (5,) float64, h (3,) float16."""
    arrays = {"w": rng.standard_normal((4, 8)).astype(np.float32),
              "b": rng.standard_normal(5), "h": rng.standard_normal(3).astype(np.float16)}
    safetensors.numpy.save_file(arrays, str(tmp_path / "model.safetensors"))
    return tmp_path, arrays


def test_view_is_a_read_only_view_into_the_mapped_file(checkpoint):
    folder, arrays = checkpoint
    with open_checkpoint(folder) as ckpt:
        v = ckpt.view("w")
        assert v.dtype == np.float32 and v.shape == (4, 8) and not v.flags.writeable
        np.testing.assert_array_equal(v, arrays["w"])
        assert isinstance(_owner(v), mmap.mmap)               # over the mapping: no copy
        assert np.shares_memory(v, ckpt.view("w"))           # the same bytes every time
        with pytest.raises(ValueError, match="read-only"):
            v[0, 0] = 1.0
        assert ckpt.view("b").dtype == np.float64 and ckpt.view("h").dtype == np.float16
        copy = ckpt.read_float32("h")
        assert copy.dtype == np.float32 and copy.flags.writeable and copy.flags.c_contiguous
        assert not np.shares_memory(copy, ckpt.view("h"))
        np.testing.assert_array_equal(copy, arrays["h"].astype(np.float32))


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux /proc")
def test_close_unmaps_once_no_view_is_left(checkpoint):
    folder, arrays = checkpoint
    path = str(folder / "model.safetensors")
    ckpt = open_checkpoint(folder)
    assert path not in _mapped_files()                       # headers are read, not mapped
    v = ckpt.view("w")
    assert path in _mapped_files()
    ckpt.close()
    assert path in _mapped_files()                           # the view keeps it alive ...
    np.testing.assert_array_equal(v, arrays["w"])
    del v
    assert path not in _mapped_files()                       # ... and only the view
    ckpt.read_float32("b")                                   # a closed checkpoint maps again
    ckpt.close()
    assert path not in _mapped_files()


def test_bfloat16_as_raw_bits_and_float8_as_bytes(rng, tmp_path):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    bits = (x.view(np.uint32) >> np.uint32(16)).astype("<u2")  # (3, 4) bfloat16 bit patterns
    write_raw_safetensors(tmp_path / "a.safetensors", {
        "bf": ("BF16", (3, 4), bits.tobytes()), "f8": ("F8_E4M3", (2, 2), bytes([1, 2, 3, 4])),
        "i": ("I32", (2,), np.array([7, -1], "<i4").tobytes()), "e": ("F32", (0, 3), b"")})
    f = SafetensorsFile(tmp_path / "a.safetensors")
    assert f.names() == ["bf", "f8", "i", "e"] and f.info("bf") == TensorInfo("BF16", (3, 4))
    raw = f.view("bf")
    assert raw.dtype == np.uint16 and not raw.flags.writeable
    np.testing.assert_array_equal(raw, bits)
    expected = (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    np.testing.assert_array_equal(f.read_float32("bf"), expected)
    np.testing.assert_array_equal(bf16_to_float32(raw), expected)
    assert f.view("f8").tolist() == [[1, 2], [3, 4]] and f.view("f8").dtype == np.uint8
    assert f.view("i").tolist() == [7, -1]
    assert f.view("e").shape == (0, 3) and f.read_float32("e").shape == (0, 3)
    with pytest.raises(TypeError, match="i: dtype I32 cannot be read as float32"):
        f.read_float32("i")
    with pytest.raises(KeyError, match="no tensor 'nope'"):
        f.view("nope")
    f.close()


def test_sharded_folder_and_single_file(rng, tmp_path):
    arrays = {f"t{i}": rng.standard_normal((2, i + 1)).astype(np.float32) for i in range(4)}
    weight_map = {}
    for s, names in enumerate((["t0", "t2"], ["t1", "t3"])):
        shard = f"model-{s + 1:05d}-of-00002.safetensors"
        safetensors.numpy.save_file({n: arrays[n] for n in names}, str(tmp_path / shard))
        weight_map.update({n: shard for n in names})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_checkpoint(str(tmp_path)) as ckpt:
        assert isinstance(ckpt, Checkpoint) and isinstance(ckpt, TensorSource)
        assert sorted(ckpt.names()) == sorted(arrays) and "t3" in ckpt
        assert ckpt.file_of("t3").name == "model-00002-of-00002.safetensors"
        for name, value in arrays.items():
            assert (ckpt.dtype(name), ckpt.shape(name)) == ("F32", value.shape)
            np.testing.assert_array_equal(ckpt.view(name), value)
        assert "tensors=4, files=2" in repr(ckpt)
        with pytest.raises(KeyError, match="no tensor 'nope'"):
            ckpt.info("nope")
    one = tmp_path / "model-00001-of-00002.safetensors"
    with open_checkpoint(one) as ckpt:
        assert ckpt.names() == ["t0", "t2"]
    with pytest.raises(ValueError, match="neither a checkpoint folder nor a .safetensors file"):
        open_checkpoint(tmp_path / "model.safetensors.index.json")
    with pytest.raises(TypeError, match="path must be a str or a path"):
        open_checkpoint(3)


def test_an_index_that_names_the_wrong_shard(rng, tmp_path):
    safetensors.numpy.save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "x.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "x.safetensors", "b": "x.safetensors"}}))
    ckpt = Checkpoint(tmp_path)
    assert ckpt.info("a") == TensorInfo("F32", (2,))
    with pytest.raises(ValueError, match="'b' is listed in the index for x.safetensors but"):
        ckpt.info("b")


def test_state_dict_source(rng):
    state = {"a": rng.standard_normal((2, 3)).astype(np.float16), "i": np.arange(4, dtype=np.int8)}
    src = StateDict(state)
    assert isinstance(src, TensorSource) and src.names() == ["a", "i"]
    assert src.info("a") == TensorInfo("F16", (2, 3)) and src.dtype("i") == "int8"
    out = src.read_float32("a")
    assert out.dtype == np.float32 and not np.shares_memory(out, state["a"])
    with pytest.raises(TypeError, match="state dict keys must be str"):
        StateDict({1: state["a"]})
    with pytest.raises(TypeError, match="x: expected a NumPy array or a torch tensor"):
        StateDict({"x": [1.0]}).info("x")


def test_config_json_reader(tmp_path):
    d = {"model_type": "mixtral", "hidden_size": 8}
    (tmp_path / "config.json").write_text(json.dumps(d))
    assert read_config_json(tmp_path) == read_config_json(tmp_path / "config.json") == d

    class HasToDict:
        def to_dict(self):
            return dict(d)

    for config in (d, tmp_path, str(tmp_path / "config.json"), HasToDict()):
        got = config_dict(config)
        assert got == d and got is not d
    with pytest.raises(ValueError, match=r"config: '.*missing.json' does not exist \(no such "):
        read_config_json(tmp_path / "missing.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config file at .* \\(no such file\\)"):
        read_config_json(tmp_path / "empty")  # a folder without config.json
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_config_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="holds a list, not a JSON object"):
        read_config_json(tmp_path / "list.json")
    with pytest.raises(TypeError, match="config must be a mapping"):
        config_dict(3)


def test_io_is_reachable_from_moelab():
    assert moelab.io.open_checkpoint is open_checkpoint


@pytest.mark.parametrize("bad", [1.5, float("inf"), "4", True, None],
                         ids=["fraction", "infinity", "string", "bool", "null"])
@pytest.mark.parametrize("field", ["shape", "data_offsets"])
def test_header_numbers_must_be_json_integers(tmp_path, field, bad):
    """A dimension or offset that is not a JSON integer is a broken entry (1.5 was truncated to
    1, Infinity raised OverflowError), named with the file and the tensor."""
    entry = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    entry[field] = [bad, 2] if field == "shape" else [0, bad]
    header = json.dumps({"w": entry}).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(ValueError, match=r"model\.safetensors: broken header entry for tensor 'w'"):
        moelab.io.open_checkpoint(path)
