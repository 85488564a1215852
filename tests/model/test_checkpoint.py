"""model.storage.checkpoint: safetensors + JSON round trips, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from model import MiniGPT, load_checkpoint, save_checkpoint
from model.storage.checkpoint import expected_shapes
from model.storage.schema import FORMAT_VERSION
from model.training.resume import load_train_state, save_train_state


@pytest.fixture
def saved(tmp_path):
    model = make_model()
    path = save_checkpoint(tmp_path / "m", model.cfg, model.state_dict(), model.tokenizer.to_dict(), {"steps": 7})
    return model, path


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS), ids=list(CONFIG_VARIANTS))
def test_expected_shapes_match_the_model(variant):
    """expected_shapes(cfg) lists exactly the model's state-dict keys and shapes for every config variant."""
    model = make_model(**CONFIG_VARIANTS[variant])
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert expected_shapes(model.cfg) == actual, "checkpoint.expected_shapes drifted from the model's layout"


def test_round_trip_is_exact(saved):
    """Weights, config, tokenizer and provenance come back unchanged; the model's logits are identical."""
    model, path = saved
    ckpt = load_checkpoint(path)
    assert ckpt.cfg == model.cfg and ckpt.path == path
    assert ckpt.tokenizer == model.tokenizer.to_dict()
    assert ckpt.provenance["steps"] == 7 and "date" in ckpt.provenance, "provenance lost or no date added"
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.state_dict[k], v), f"{k} changed in the round trip"
    loaded = MiniGPT.from_pretrained(str(path))
    tokens = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded(tokens), model(tokens)), "from_pretrained gives different logits"


def test_json_has_format_config_and_hash(saved):
    """The JSON beside the weights holds format version, config, tokenizer table and a weights hash."""
    _, path = saved
    doc = json.loads(path.with_suffix(".json").read_text())
    assert doc["format_version"] == FORMAT_VERSION and doc["config"]["d_model"] == 32
    assert doc["tokenizer"]["kind"] == "char" and len(doc["weights_sha256"]) == 64


@pytest.mark.parametrize("spelling", ["", ".safetensors", ".json"])
def test_path_spellings_resolve(saved, spelling):
    """A path loads with or without .safetensors, or via its .json."""
    _, path = saved
    assert load_checkpoint(str(path.with_suffix("")) + spelling).path == path


def test_save_leaves_no_temp_files_and_is_readable(saved):
    """After a save only the two final files exist, with ordinary (not 0600) permissions."""
    _, path = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json", "m.safetensors"], "temp files left behind"
    assert path.stat().st_mode & 0o044, "checkpoint is not readable by group/others (mkstemp's 0600 kept?)"


def test_failed_save_keeps_the_old_checkpoint(saved):
    """A save that fails (unserialisable provenance) leaves the previous pair intact and no temp files."""
    model, path = saved
    before = path.read_bytes(), path.with_suffix(".json").read_bytes()
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(path, model.cfg, {k: v * 2 for k, v in model.state_dict().items()}, None, {"bad": object()})
    assert (path.read_bytes(), path.with_suffix(".json").read_bytes()) == before, "a failed save changed the files"
    assert len(list(path.parent.iterdir())) == 2, "temp files left behind"


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


def test_train_state_round_trip(tmp_path):
    """Training state tensors and info survive save/load; a damaged file is a ValueError."""
    tensors = {"optim.0.step": torch.tensor(3.0), "data_generator": torch.Generator().get_state()}
    path = save_train_state(tmp_path / "m.safetensors", tensors, {"step": 3, "history": []})
    back, info = load_train_state(tmp_path / "m.safetensors")
    assert info == {"step": 3, "history": []} and torch.equal(back["data_generator"], tensors["data_generator"])
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        load_train_state(tmp_path / "m.safetensors")
