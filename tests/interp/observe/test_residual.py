"""Residual decomposition: the writes sum to the final residual, per head and per sublayer."""

from __future__ import annotations

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from interp import accumulated_resid, residual_stack, write_norms

ADDITIVE = [name for name in CONFIG_VARIANTS if CONFIG_VARIANTS[name].get("norm") != "post"]


def final_resid(model, cache):
    return cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]


@pytest.mark.parametrize("variant", ADDITIVE)
@pytest.mark.parametrize("per_head", [True, False])
def test_residual_stack_sums_to_final_residual(variant, per_head, tokens):
    """The stacked writes sum to the last resid_post (before ln_final) to 1e-5."""
    model = make_model(**CONFIG_VARIANTS[variant])
    _, cache = model.run_with_cache(tokens)
    stack, labels = residual_stack(model, tokens, cache, per_head=per_head)
    assert stack.shape[0] == len(labels), "one label row per stacked component"
    err = (stack.sum(0) - final_resid(model, cache)).abs().max().item()
    assert err < 1e-5, f"writes do not sum to the final residual (max err {err}); a missing bias or component?"


def test_residual_stack_labels_name_every_component(tiny_model, tokens):
    """Labels list embed, pos_embed, every head, each attn bias and MLP, in residual order."""
    _, cache = tiny_model.run_with_cache(tokens)
    _, labels = residual_stack(tiny_model, tokens, cache)
    expected = ["embed", "pos_embed"]
    for layer in range(2):
        expected += [f"L{layer}H{h}" for h in range(4)] + [f"L{layer}.attn_bias", f"L{layer}.mlp"]
    assert list(labels.component) == expected, "component names or order changed"
    assert list(labels.columns) == ["component", "layer", "head", "component_type"]
    heads = labels[labels.component_type == "head"]
    assert list(heads["head"]) == [0, 1, 2, 3] * 2 and list(heads.layer) == [0] * 4 + [1] * 4, "head/layer labels off"
    assert labels[labels.component_type != "head"]["head"].isna().all(), "non-head rows must have head <NA>"


def test_head_writes_from_hook_result_match_hook_z(tiny_model, tokens):
    """Per-head writes computed from hook_z and W_O equal the recorded hook_result."""
    _, plain = tiny_model.run_with_cache(tokens)
    _, with_result = tiny_model.run_with_cache(tokens, names_filter=lambda n: True)
    assert "blocks.0.attn.hook_result" not in plain and "blocks.0.attn.hook_result" in with_result
    a, _ = residual_stack(tiny_model, tokens, plain)
    b, _ = residual_stack(tiny_model, tokens, with_result)
    assert torch.allclose(a, b, atol=1e-6), "z @ W_O disagrees with hook_result: wrong einsum axes?"


def test_heads_plus_bias_equal_attn_out(tiny_model, tokens):
    """Summing a layer's head rows and its attn_bias row gives that layer's hook_attn_out."""
    _, cache = tiny_model.run_with_cache(tokens)
    stack, labels = residual_stack(tiny_model, tokens, cache)
    for layer in range(2):
        rows = ((labels.layer == layer) & labels.component_type.isin(["head", "attn_bias"])).to_numpy()
        total = stack[torch.tensor(rows)].sum(0)
        assert torch.allclose(total, cache["attn_out", layer], atol=1e-6), f"layer {layer} heads + b_O != attn_out"


def test_post_norm_residual_stack_refuses():
    """norm='post' has no additive decomposition: residual_stack raises a ValueError that says why."""
    model = make_model(norm="post")
    tokens = torch.zeros(1, 4, dtype=torch.long)
    _, cache = model.run_with_cache(tokens)
    with pytest.raises(ValueError, match="post"):
        residual_stack(model, tokens, cache)


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_write_norms_are_norms_of_the_writes(variant, tokens):
    """write_norms gives ||write|| per (batch, pos, component), for every config including post-norm."""
    model = make_model(**CONFIG_VARIANTS[variant])
    _, cache = model.run_with_cache(tokens)
    df = write_norms(model, tokens, cache)
    assert list(df.columns) == ["batch", "pos", "pos_str", "component", "layer", "head", "component_type", "norm"]
    row = df[(df.batch == 2) & (df.pos == 5) & (df.component == "embed")]
    expected = cache["hook_embed"][2, 5].norm().item()
    assert len(row) == 1 and abs(row["norm"].item() - expected) < 1e-5, "norm of the embed write at (2, 5) is off"
    n_components = df.component.nunique()
    assert len(df) == tokens.numel() * n_components, "one row per (batch, pos, component)"
    assert (df["norm"] >= 0).all()


def test_accumulated_resid_stages_match_the_cache(tiny_model, tokens):
    """Stage l is resid_pre[l]; the last stage is the final resid_post; labels say so."""
    _, cache = tiny_model.run_with_cache(tokens)
    stages, labels = accumulated_resid(tiny_model, tokens, cache)
    assert labels == ["L0.resid_pre", "L1.resid_pre", "L1.resid_post"]
    assert torch.equal(stages[1], cache["resid_pre", 1]), "stage 1 must be resid_pre of block 1"
    assert torch.equal(stages[-1], cache["resid_post", 1]), "last stage must be the final residual"
    stack, _ = residual_stack(tiny_model, tokens, cache, per_head=False)
    assert torch.allclose(stages[1], stack[:4].sum(0), atol=1e-5), "resid_pre[1] != embed + pos + L0 writes"
