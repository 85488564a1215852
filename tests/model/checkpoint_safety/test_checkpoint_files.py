"""Checkpoints users hand us: missing, pickled, truncated, corrupt or mismatched files get a clear typed error."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, make_model
from safetensors.torch import save_file

from model import MiniGPT, TrainConfig, load_checkpoint, save_checkpoint, train
from model.storage.registry import SHIPPED
from model.training.resume import save_train_state


def write_pair(weights: Path, config: dict, tensors: dict) -> Path:
    """A checkpoint pair written by hand with a matching hash: only the layout can be wrong."""
    save_file(tensors, str(weights))
    doc = {
        "format": "minigpt-lens-checkpoint", "format_version": 1, "config": config, "tokenizer": None,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "provenance": {},
    }  # fmt: skip
    weights.with_suffix(".json").write_text(json.dumps(doc))
    return weights


def rehash(weights: Path) -> None:
    """Record the current file's hash in its JSON, so only the structural checks can catch the damage."""
    meta = weights.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta.write_text(json.dumps(doc))


# ------------------------------------------------------------------------------------------- missing and pickled
def test_missing_weights_or_json_name_the_path_and_the_shipped_names(saved, tmp_path):
    """A missing .safetensors or .json is a FileNotFoundError naming the path and listing the shipped names."""
    shipped = str(sorted(SHIPPED))
    with pytest.raises(FileNotFoundError, match=r"gone\.safetensors.*" + shipped.replace("[", r"\[")):
        MiniGPT.from_pretrained(str(tmp_path / "gone.safetensors"))
    _, path = saved
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match=r"m\.json is missing.*induction-2l"):
        MiniGPT.from_pretrained(str(path))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt", ".PT"])
def test_pickle_suffixes_are_refused_with_the_reason_and_the_conversion(tmp_path, suffix, monkeypatch):
    """A pickle-based file is refused before it is opened: the message says why and how to convert it."""
    path = tmp_path / f"model{suffix}"
    torch.save(make_model().state_dict(), path)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the pickle was opened"))
    with pytest.raises(ValueError, match=r"pickle.*unpickling can run arbitrary code.*save_pretrained") as info:
        MiniGPT.from_pretrained(str(path))
    assert "weights_only=True" in str(info.value), "the message must show a safe way to convert"


def test_a_pickle_renamed_to_safetensors_is_refused(saved, monkeypatch):
    """torch.save output renamed to .safetensors (JSON hash matching) is recognised and refused, never unpickled."""
    model, path = saved
    torch.save(model.state_dict(), path)
    rehash(path)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the pickle was opened"))
    with pytest.raises(ValueError, match=r"PyTorch/pickle file, not safetensors.*arbitrary code"):
        load_checkpoint(path)


# ------------------------------------------------------------------------------------------- damaged files
def _cut(data: bytes, n: int) -> bytes:
    return data[:n]


def _flip(data: bytes, at: int, mask: int = 0xFF) -> bytes:
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]


DAMAGE = {
    "cut-in-half": lambda d: _cut(d, len(d) // 2),
    "cut-to-header": lambda d: _cut(d, 8 + int.from_bytes(d[:8], "little")),
    "cut-inside-header": lambda d: _cut(d, 40),
    "cut-to-4-bytes": lambda d: _cut(d, 4),
    "empty": lambda d: b"",
    "flip-length-byte": lambda d: _flip(d, 0),
    "flip-high-length-byte": lambda d: _flip(d, 7, 0x01),
    "flip-opening-brace": lambda d: d[:8] + b"[" + d[9:],
    "flip-shape-digit": lambda d: d.replace(b'"shape":[4,32,8]', b'"shape":[4,32,9]', 1),
    "flip-offset-digit": lambda d: d.replace(b'"data_offsets":[0,', b'"data_offsets":[1,', 1),
    "padded": lambda d: d + b"\0" * 16,
}


@pytest.mark.parametrize("rehashed", [False, True], ids=["hash-stale", "hash-updated"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_weights_are_a_value_error_saying_so(saved, damage, rehashed):
    """A cut, flipped or padded safetensors file is a ValueError saying the file is damaged (never a crash)."""
    _, path = saved
    data = path.read_bytes()
    damaged = DAMAGE[damage](data)
    assert damaged != data, "the damage did not change the file (test bug)"
    path.write_bytes(damaged)
    if rehashed:  # the JSON even agrees with the damaged file: the structure alone must catch it
        rehash(path)
    with pytest.raises(ValueError, match=r"m\.safetensors .*damaged") as info:
        MiniGPT.from_pretrained(str(path))
    assert "save" in str(info.value), "the message must say what to do"


def test_flipped_data_byte_is_caught_by_the_hash(saved):
    """One flipped bit in the tensor data keeps the layout valid; the recorded hash catches it."""
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    with pytest.raises(ValueError, match=r"does not match the hash recorded in m\.json: the weights are damaged"):
        load_checkpoint(path)


def test_nan_weights_are_refused(saved):
    """Weights holding NaN or inf (a diverged run) are a ValueError naming the tensors."""
    model, path = saved
    state = dict(model.state_dict())
    state["blocks.1.attn.W_Q"] = state["blocks.1.attn.W_Q"].clone()
    state["blocks.1.attn.W_Q"][0, 0, 0] = float("nan")
    save_checkpoint(path, model.cfg, state, model.tokenizer.to_dict())
    with pytest.raises(ValueError, match=r"'?blocks\.1\.attn\.W_Q'?.* NaN or inf"):
        load_checkpoint(path)


# ------------------------------------------------------------------------------------------- mismatched pairs
def test_weights_of_another_config_list_every_kind_of_mismatch(tmp_path):
    """d_model-32 weights beside a d_model-64 config: every wrong shape is listed (with the count beyond 6)."""
    small = make_model()
    config = small.cfg.replace(d_model=64).to_dict()
    path = write_pair(tmp_path / "w.safetensors", config, small.state_dict())
    with pytest.raises(ValueError, match=r"does not match its config") as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "wrong shapes: embed.W_E (64, 32) (config says (64, 64))" in message, message
    assert re.search(r"\(\+\d+ more\)", message), f"the number of further mismatches is not given: {message}"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("drop", "missing ['blocks.0.ln1.w']"),
        ("add", "unexpected ['blocks.0.attn.W_X']"),
        ("reshape", "wrong shapes: blocks.1.mlp.W_in (64, 32) (config says (32, 64))"),
        ("int", "not floating point (expected F64/F32/F16/BF16): blocks.0.attn.b_O I64"),
        ("layers", "missing ['blocks.2.attn.W_K'"),
    ],
    ids=["missing", "extra", "wrong-shape", "wrong-dtype", "json-config-disagrees"],
)
def test_mismatched_checkpoints_list_the_mismatches(tmp_path, change, expected):
    """Missing, extra, wrongly shaped or integer tensors, or a JSON config that disagrees: all named in the error."""
    model = make_model()
    state, config = dict(model.state_dict()), model.cfg.to_dict()
    if change == "drop":
        state.pop("blocks.0.ln1.w")
    elif change == "add":
        state["blocks.0.attn.W_X"] = torch.zeros(2)
    elif change == "reshape":
        state["blocks.1.mlp.W_in"] = state["blocks.1.mlp.W_in"].T.contiguous()
    elif change == "int":
        state["blocks.0.attn.b_O"] = torch.zeros(32, dtype=torch.long)
    else:
        config["n_layers"] = 3
    path = write_pair(tmp_path / "w.safetensors", config, state)
    with pytest.raises(ValueError, match="does not match its config") as info:
        MiniGPT.from_pretrained(str(path))
    assert expected in str(info.value), str(info.value)


def test_pair_from_two_saves_is_refused(tmp_path):
    """The weights of one save with the JSON of another (same config) are refused by the hash, saying so."""
    a, b = make_model(seed=0), make_model(seed=1)
    path = save_checkpoint(tmp_path / "a", a.cfg, a.state_dict())
    save_checkpoint(tmp_path / "b", b.cfg, b.state_dict())
    (tmp_path / "b.safetensors").replace(path)
    with pytest.raises(ValueError, match="the two files come from different saves"):
        load_checkpoint(path)


def test_resume_refuses_training_state_from_another_save(tmp_path):
    """Resuming with a .train.safetensors that is not at the checkpoint's step is refused before training."""
    cfg = make_cfg(n_ctx=32, attn_only=True, n_heads=2)
    tiny = TrainConfig(task="induction", steps=8, batch_size=4, warmup_steps=2, eval_every=4, log_every=2, ckpt_every=0)
    result = train(cfg, tiny, tmp_path / "m", progress=False, command="test", until_step=4)
    save_train_state(result.path, {"data_generator": torch.Generator().get_state()}, {"step": 2, "param_groups": []})
    with pytest.raises(ValueError, match=r"is at step 2 but m\.safetensors at step 4: they come from different saves"):
        train(cfg, tiny, tmp_path / "m", resume=str(tmp_path / "m"), progress=False)


def test_wrong_argument_types_are_type_errors(tmp_path):
    """from_pretrained / save_pretrained with a non-path argument: TypeError naming the type, nothing written."""
    with pytest.raises(TypeError, match="expected a checkpoint name or path, got int"):
        MiniGPT.from_pretrained(123)
    with pytest.raises(TypeError, match="path must be a str or a path, got NoneType"):
        make_model().save_pretrained(None)
    with pytest.raises(TypeError, match="cfg must be a ModelConfig, got dict"):
        save_checkpoint(tmp_path / "m", {}, {})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- more missing and damaged
def test_unknown_name_and_missing_files(tmp_path):
    """An unknown name lists the shipped ones; a missing file or JSON is a FileNotFoundError naming it."""
    with pytest.raises(FileNotFoundError, match=r"no shipped checkpoint named 'nope'.*induction-2l"):
        load_checkpoint("nope")
    with pytest.raises(FileNotFoundError, match=r"gone\.safetensors"):
        load_checkpoint(tmp_path / "gone.safetensors")
    model = make_model()
    path = save_checkpoint(tmp_path / "m", model.cfg, model.state_dict())
    os.remove(path.with_suffix(".json"))
    with pytest.raises(FileNotFoundError, match=r"m\.json is missing"):
        load_checkpoint(path)


def test_pickle_files_are_refused(tmp_path):
    """A .pt file is refused with the reason (pickle runs code), before it is opened."""
    with pytest.raises(ValueError, match=r"pickle.*arbitrary code"):
        load_checkpoint(tmp_path / "model.pt")


def test_truncated_weights_are_caught(saved):
    """A truncated safetensors file is a ValueError naming the file, not a crash inside safetensors."""
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"m\.safetensors.*(damaged|truncated)"):
        load_checkpoint(path)


def test_corrupt_json_is_caught(saved):
    """Invalid JSON, a missing key or a wrong type each give a ValueError naming the JSON file."""
    _, path = saved
    meta = path.with_suffix(".json")
    good = json.loads(meta.read_text())
    meta.write_text("{not json")
    with pytest.raises(ValueError, match=r"m\.json is not valid JSON"):
        load_checkpoint(path)
    for key, value in [("config", None), ("format_version", "1"), ("provenance", [])]:
        meta.write_text(json.dumps({**good, key: value}))
        with pytest.raises(ValueError, match=f"'{key}' must be"):
            load_checkpoint(path)
    meta.write_text(json.dumps({**good, "config": {**good["config"], "d_model": 48}}))
    with pytest.raises(ValueError, match="does not match its config"):
        load_checkpoint(path)


def test_mismatched_state_dict_is_refused(tmp_path):
    """Saving weights that do not fit the config names the missing and misshapen tensors."""
    model = make_model()
    state = dict(model.state_dict())
    state.pop("embed.W_E")
    state["blocks.0.attn.W_Q"] = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"missing \['embed.W_E'\].*blocks.0.attn.W_Q \(2, 2\)"):
        save_checkpoint(tmp_path / "m", model.cfg, state)
