"""ModelConfig: locked defaults, validation messages, the closed-form parameter count and the inventory."""

from __future__ import annotations

import dataclasses
import math

import pytest
from conftest import CONFIG_VARIANTS, make_cfg

from model import MiniGPT, ModelConfig

LOCKED_N_PARAMS = 106_240


def test_locked_defaults():
    """The default config is the locked MiniGPT: d_model 64, 4 heads of 16, 2 layers, d_ff 256, vocab 64, ctx 32."""
    cfg = ModelConfig()
    got = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_layers, cfg.d_ff, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx)
    assert got == (64, 4, 16, 2, 256, 256, 64, 32), f"locked defaults changed: {got}"
    assert (cfg.positional, cfg.norm, cfg.tied_embed, cfg.bias, cfg.attn_only) == ("learned", "pre", True, True, False)


def test_locked_parameter_count_by_hand():
    """The locked config has 106240 parameters, counted tensor by tensor here."""
    d, f, v, n_ctx = 64, 256, 64, 32
    ln = 2 * d
    block = (4 * d * d + 4 * d + ln) + (2 * d * f + f + d + ln)
    by_hand = v * d + n_ctx * d + 2 * block + ln
    assert by_hand == LOCKED_N_PARAMS, "the hand count in this test is wrong"
    assert ModelConfig().n_params == LOCKED_N_PARAMS, "closed-form n_params disagrees with the hand count"


@pytest.mark.parametrize(
    "overrides",
    [*CONFIG_VARIANTS.values(), {"bias": False, "tied_embed": False}, {"norm": "none"}, {"attn_only": True}],
    ids=[*CONFIG_VARIANTS, "no-bias-untied", "no-norm", "attn-only"],
)
def test_n_params_equals_inventory_total(overrides):
    """cfg.n_params equals the sum of the parameter inventory, to the digit."""
    model = MiniGPT(make_cfg(**overrides), seed=0)
    inventory = model.parameter_inventory()
    total = int(inventory["count"].sum())
    assert total == model.cfg.n_params, f"closed form {model.cfg.n_params} != real {total} for {overrides}"
    assert total == sum(p.numel() for p in model.parameters()), "inventory misses or double-counts a tensor"


def test_locked_model_inventory_total():
    """The real locked model has exactly 106240 parameters."""
    inventory = MiniGPT(ModelConfig(), seed=0).parameter_inventory()
    assert int(inventory["count"].sum()) == LOCKED_N_PARAMS, "locked model parameter count changed"


def test_inventory_columns_and_rows():
    """Inventory has columns tensor, shape, count; count is the product of shape; tied models list no W_U."""
    model = MiniGPT(ModelConfig(), seed=0)
    inventory = model.parameter_inventory()
    assert list(inventory.columns) == ["tensor", "shape", "count"], f"columns are {list(inventory.columns)}"
    assert inventory["tensor"].is_unique, "a tensor is listed twice (the tied W_U registered as a parameter?)"
    for row in inventory.itertuples():
        assert row.count == math.prod(row.shape), f"{row.tensor}: count {row.count} != prod{row.shape}"
    names = set(inventory["tensor"])
    assert "blocks.0.attn.W_Q" in names and "embed.W_E" in names, "weights are not named like the maths"
    assert not any("W_U" in n for n in names), "tied unembedding must not be a separate parameter"
    untied = set(MiniGPT(make_cfg(tied_embed=False), seed=0).parameter_inventory()["tensor"])
    assert {"unembed.W_U", "unembed.b_U"} <= untied, "untied model lacks W_U / b_U in the inventory"


@pytest.mark.parametrize("positional", ["sinusoidal", "rotary"])
def test_fixed_positions_have_no_parameters(positional):
    """Sinusoidal and rotary positions are not trainable, so they are not in the inventory."""
    names = set(MiniGPT(make_cfg(positional=positional), seed=0).parameter_inventory()["tensor"])
    assert "pos_embed.W_pos" not in names, f"{positional} positions were counted as parameters"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_heads": 3}, r"d_model=64 is not divisible by n_heads=3; pick n_heads from \[1, 2, 4, 8, 16, 32, 64\]"),
        ({"d_model": 0}, "d_model must be a positive integer, got 0"),
        ({"n_layers": -1}, "n_layers must be a positive integer, got -1"),
        ({"d_vocab": 64.0}, "d_vocab must be a positive integer, got 64.0"),
        ({"n_ctx": True}, "n_ctx must be a positive integer, got True"),
        ({"positional": "alibi"}, r"positional='alibi' is not one of \['learned', 'sinusoidal', 'rotary'\]"),
        ({"norm": "rms"}, r"norm='rms' is not one of \['pre', 'post', 'none'\]"),
        ({"act": "swish"}, r"act='swish' is not one of \['relu', 'gelu', 'gelu_new'\]"),
        ({"positional": "rotary", "d_model": 12, "n_heads": 4}, "rotary embeddings need an even d_head, got d_head=3"),
        ({"ln_eps": 0.0}, "ln_eps must be > 0"),
        ({"init_std": -1.0}, "init_std must be > 0"),
    ],
)
def test_validation_messages(overrides, message):
    """Invalid configs raise ValueError saying what was wrong and what is allowed."""
    with pytest.raises(ValueError, match=message):
        ModelConfig(**overrides)


def test_config_is_frozen_and_replace_validates():
    """ModelConfig cannot be mutated; replace() returns a validated copy."""
    cfg = ModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 128  # type: ignore[misc]
    assert cfg.replace(n_layers=4).n_layers == 4 and cfg.n_layers == 2, "replace changed the original"
    with pytest.raises(ValueError, match="not divisible"):
        cfg.replace(n_heads=5)


def test_dict_round_trip_and_unknown_keys():
    """to_dict/from_dict round-trips; unknown keys and non-dicts get clear errors."""
    cfg = make_cfg(positional="rotary", norm="post", act="relu", tied_embed=False)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg, "from_dict(to_dict(cfg)) != cfg"
    with pytest.raises(ValueError, match=r"unknown config keys \['n_head'\]"):
        ModelConfig.from_dict({"n_head": 4})
    with pytest.raises(TypeError, match="a config must be a dict"):
        ModelConfig.from_dict([("d_model", 64)])  # type: ignore[arg-type]


def test_model_rejects_a_non_config():
    """MiniGPT(cfg) with something other than a ModelConfig raises TypeError."""
    with pytest.raises(TypeError, match="cfg must be a ModelConfig, got dict"):
        MiniGPT({"d_model": 64})  # type: ignore[arg-type]
