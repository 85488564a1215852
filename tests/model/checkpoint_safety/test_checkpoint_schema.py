"""The checkpoint JSON schema: every violation, a missing key or a tokenizer of the wrong size is a ValueError naming
the file, the key, what it was and what was expected; nothing that could not be loaded is ever saved."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from conftest import listing, make_model

from model import MiniGPT, ModelConfig, load_checkpoint, save_checkpoint
from model.storage.schema import CONFIG_SCHEMA


def test_config_schema_covers_every_config_field():
    """CONFIG_SCHEMA has exactly the ModelConfig fields (a new field must get a schema entry)."""
    assert list(CONFIG_SCHEMA) == [f.name for f in dataclasses.fields(ModelConfig)], "schema and config drifted"


SCHEMA_CASES = [
    ("format", "pickle", "'format' must be 'minigpt-lens-checkpoint', got 'pickle'"),
    ("format_version", 2, "'format_version' must be an integer from 1 to 1"),
    ("format_version", True, "'format_version' must be an integer .* got True \\(bool\\)"),
    ("config.d_model", "64", "'config.d_model' must be an integer >= 1, got '64' \\(str\\)"),
    ("config.n_layers", 0, "'config.n_layers' must be an integer >= 1, got 0"),
    ("config.positional", "lerned", "'config.positional' must be one of \\['learned', 'sinusoidal', 'rotary'\\]"),
    ("config.attn_only", "yes", "'config.attn_only' must be true or false, got 'yes'"),
    ("config.ln_eps", -1.0, "'config.ln_eps' must be a number > 0"),
    ("config.act", None, "'config.act' must be one of"),
    ("config.dropout", 0.1, "unknown key 'config.dropout'"),
    ("config.n_heads", 3, "not a valid model config: d_model=32 is not divisible by n_heads=3"),
    ("tokenizer.kind", "bpe", "'tokenizer.kind' must be 'char'"),
    ("tokenizer.symbols", ["a", "a"], "'tokenizer.symbols' must be a list of unique strings"),
    ("tokenizer", [], "'tokenizer' must be an object with the tokenizer table, or null"),
    ("weights_sha256", "abc", "'weights_sha256' must be 64 lower-case hex digits"),
    ("provenance", "x", "'provenance' must be an object"),
    ("provenance.steps", -1, "'provenance.steps' must be an integer >= 0"),
    ("extra", 1, "unknown key 'extra'"),
]


def _edit(doc: dict, dotted: str, value) -> None:
    *parents, key = dotted.split(".")
    for p in parents:
        doc = doc[p]
    doc[key] = value


@pytest.mark.parametrize(("key", "value", "message"), SCHEMA_CASES, ids=[f"{k}={v!r}" for k, v, _ in SCHEMA_CASES])
def test_schema_violation_names_key_value_and_expectation(saved, key, value, message):
    """Each schema violation in the JSON is a ValueError naming the file, the key, what it was and what was expected."""
    _, path = saved
    meta = path.with_suffix(".json")
    doc = json.loads(meta.read_text())
    _edit(doc, key, value)
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"m\.json: .*" + message):
        MiniGPT.from_pretrained(str(path))


@pytest.mark.parametrize("key", ["weights_sha256", "config", "config.act", "tokenizer"])
def test_missing_required_key_is_named(saved, key):
    """A required key missing from the JSON is a ValueError naming it and what belongs there."""
    _, path = saved
    meta = path.with_suffix(".json")
    doc = json.loads(meta.read_text())
    *parents, last = key.split(".")
    (doc[parents[0]] if parents else doc).pop(last)
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=rf"key '{re.escape(key)}' is missing; expected"):
        load_checkpoint(path)


def test_tokenizer_must_match_the_vocabulary(saved):
    """A tokenizer table whose size differs from config.d_vocab is refused, naming both numbers."""
    _, path = saved
    meta = path.with_suffix(".json")
    doc = json.loads(meta.read_text())
    doc["tokenizer"]["symbols"] = doc["tokenizer"]["symbols"][:-1]
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"'tokenizer\.symbols' has 63 symbols, expected config\.d_vocab = 64"):
        load_checkpoint(path)


def test_save_refuses_metadata_that_could_not_be_loaded(tmp_path):
    """Saving provenance that breaks the schema fails before anything is written."""
    model = make_model()
    with pytest.raises(ValueError, match=r"'provenance\.steps' must be an integer >= 0, got -1"):
        save_checkpoint(tmp_path / "m", model.cfg, model.state_dict(), None, {"steps": -1})
    assert listing(tmp_path) == [], "a checkpoint that cannot be loaded was written"
