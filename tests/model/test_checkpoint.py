"""model.storage.checkpoint: safetensors + JSON round trips and the expected layout.

Bad files, the schema, atomic checkpoint writes and uploads: tests/model/checkpoint_safety/.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from model import MiniGPT, load_checkpoint
from model.storage.checkpoint import expected_shapes
from model.storage.schema import FORMAT_VERSION
from model.training.resume import load_train_state, save_train_state


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


def test_train_state_round_trip(tmp_path):
    """Training state tensors and info survive save/load; a damaged file is a ValueError."""
    tensors = {"optim.0.step": torch.tensor(3.0), "data_generator": torch.Generator().get_state()}
    path = save_train_state(tmp_path / "m.safetensors", tensors, {"step": 3, "history": []})
    back, info = load_train_state(tmp_path / "m.safetensors")
    assert info == {"step": 3, "history": []} and torch.equal(back["data_generator"], tensors["data_generator"])
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        load_train_state(tmp_path / "m.safetensors")
