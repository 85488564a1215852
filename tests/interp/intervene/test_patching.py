"""Activation patching (batched grids equal single hooked patches) and attribution patching (exact where linear)."""

from __future__ import annotations

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from interp import LogitDiff, Loss, activation_patching, attribution_patching, contrast_metric
from interp.intervene.patching import GRIDS

CORRUPT_POS = 4


@pytest.fixture
def prompts() -> tuple[torch.Tensor, torch.Tensor]:
    """Clean tokens and a copy differing only at position CORRUPT_POS."""
    clean = torch.randint(3, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    corrupted = clean.clone()
    corrupted[:, CORRUPT_POS] = (clean[:, CORRUPT_POS] + 7) % 61 + 3
    return clean, corrupted


def patch_one(model, clean, corrupted, grid: str, layer: int, cell: tuple[int, ...], metric) -> float:
    """The metric of the corrupted run with one cell patched from the clean run, by a hook (the slow, obvious way)."""
    name = {
        "resid_pre": f"blocks.{layer}.hook_resid_pre",
        "attn_out": f"blocks.{layer}.hook_attn_out",
        "mlp_out": f"blocks.{layer}.hook_mlp_out",
    }.get(grid, f"blocks.{layer}.attn.hook_z")
    _, cache = model.run_with_cache(clean, names_filter=name)
    if grid == "heads":
        index = (slice(None), slice(None), cell[0])
    elif grid == "heads_by_pos":
        index = (slice(None), cell[1], cell[0])
    else:
        index = (slice(None), cell[0])

    def hook(act, hook):
        act = act.clone()
        act[index] = cache[name][index]
        return act

    with torch.no_grad():
        return float(metric(model.run_with_hooks(corrupted, fwd_hooks=[(name, hook)]), corrupted))


def cells(frame, grid: str) -> list[tuple[int, tuple[int, ...], float]]:
    keys = {"heads": ["head"], "heads_by_pos": ["head", "pos"]}.get(grid, ["pos"])
    return [(row.layer, tuple(getattr(row, k) for k in keys), row.metric_patched) for row in frame.itertuples()]


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("metric", [Loss(), LogitDiff(3, 5)], ids=["loss", "logit_diff"])
def test_patching_grid_equals_single_hooked_patches(variant_model, prompts, grid, metric):
    """Every grid cell equals patching that one activation with a hook (within 1e-5); no MLP grid without MLPs."""
    clean, corrupted = prompts
    if grid == "mlp_out" and variant_model.cfg.attn_only:
        with pytest.raises(ValueError, match="attention-only"):
            activation_patching(variant_model, clean, corrupted, metric, grid)
        return
    frame = activation_patching(variant_model, clean, corrupted, metric, grid, chunk_size=5)
    index = {"heads": ["layer", "head"], "heads_by_pos": ["layer", "head", "pos"]}.get(grid, ["layer", "pos"])
    assert list(frame.columns) == [*index, "metric_patched", "normalized", "metric_clean", "metric_corrupted"]
    for layer, cell, value in cells(frame.sample(min(len(frame), 10), random_state=0), grid):
        expected = patch_one(variant_model, clean, corrupted, grid, layer, cell, metric)
        assert value == pytest.approx(expected, abs=1e-5), f"{grid} L{layer} {cell}: batched != hooked patch"


def test_patching_is_normalised_zero_corrupted_one_clean(tiny_model, prompts):
    """Patching the corrupted position into layer 0 restores the clean metric (1); earlier positions do nothing (0)."""
    clean, corrupted = prompts
    frame = activation_patching(tiny_model, clean, corrupted, LogitDiff(3, 5), "resid_pre").set_index(["layer", "pos"])
    assert frame.normalized[(0, CORRUPT_POS)] == pytest.approx(1.0, abs=1e-5), "patching the only difference != 1"
    for pos in range(CORRUPT_POS):
        assert frame.normalized[(0, pos)] == pytest.approx(0.0, abs=1e-5), "an identical position changed the metric"
    assert frame.metric_clean.iloc[0] != frame.metric_corrupted.iloc[0]


@pytest.mark.parametrize("grid", ["heads", "heads_by_pos", "attn_out"])
def test_attribution_is_exact_where_the_metric_is_linear(prompts, grid):
    """One layer, no LayerNorm, attention only, logit difference: logits are linear in z, so attribution = patching."""
    model = make_model(n_layers=1, norm="none", attn_only=True)
    clean, corrupted = prompts
    metric = LogitDiff(3, 5)
    real = activation_patching(model, clean, corrupted, metric, grid)
    estimate = attribution_patching(model, clean, corrupted, metric, grid)
    assert list(estimate.columns) == list(real.columns)
    torch.testing.assert_close(
        torch.tensor(estimate.normalized.values), torch.tensor(real.normalized.values), atol=1e-4, rtol=1e-4,
        msg="attribution is not (clean - corrupted) . gradient at the corrupted run",
    )  # fmt: skip


@pytest.mark.parametrize("config", ["locked", "post-norm", "rotary-no-bias"])
def test_attribution_tracks_real_patching_on_random_models(config, prompts):
    """On small random models attribution patching of heads by position correlates with real patching (> 0.9)."""
    model = make_model(**CONFIG_VARIANTS[config])
    clean, corrupted = prompts
    real = activation_patching(model, clean, corrupted, LogitDiff(3, 5), "heads_by_pos")
    estimate = attribution_patching(model, clean, corrupted, LogitDiff(3, 5), "heads_by_pos")
    corr = real.normalized.corr(estimate.normalized)
    assert corr > 0.9, f"attribution vs real correlation {corr:.3f}: wrong sign or wrong run for the gradient?"


def test_attribution_leaves_grad_mode_and_weights_alone(tiny_model, prompts):
    """Attribution works under no_grad and with frozen weights, restores grad mode and leaves no .grad behind."""
    clean, corrupted = prompts
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        frozen = attribution_patching(tiny_model, clean, corrupted, Loss(), "resid_pre")
        assert not torch.is_grad_enabled(), "attribution patching left gradients switched on"
    for p in tiny_model.parameters():
        p.requires_grad_(True)
    live = attribution_patching(tiny_model, clean, corrupted, Loss(), "resid_pre")
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in tiny_model.parameters()), "attribution accumulated weight gradients"
    torch.testing.assert_close(torch.tensor(frozen.normalized.values), torch.tensor(live.normalized.values))
    with torch.inference_mode(), pytest.raises(ValueError, match=r"outside torch\.inference_mode"):
        attribution_patching(tiny_model, clean, corrupted, Loss(), "heads")


def test_patching_errors_are_clear(tiny_model, prompts):
    """Mismatched shapes, unknown grids, MLP grids without MLPs and indistinguishable prompts raise ValueErrors."""
    clean, corrupted = prompts
    with pytest.raises(ValueError, match="must have the same shape"):
        activation_patching(tiny_model, clean, corrupted[:, :-1], Loss())
    with pytest.raises(ValueError, match="is not one of"):
        attribution_patching(tiny_model, clean, corrupted, Loss(), grid="neurons")
    with pytest.raises(ValueError, match="attention-only"):
        activation_patching(make_model(attn_only=True), clean, corrupted, Loss(), grid="mlp_out")
    with pytest.raises(ValueError, match="cannot be normalised"):
        activation_patching(tiny_model, clean, clean.clone(), Loss())


@pytest.mark.parametrize("variant", list(CONFIG_VARIANTS))
def test_contrast_metric_contrasts_the_top_guesses_of_full_forwards(variant, prompts):
    """contrast_metric's answer and wrong are the argmaxes of full forwards at the last position (or Loss on a tie)."""
    model = make_model(**CONFIG_VARIANTS[variant])
    for row in range(2):
        clean, corrupted = prompts[0][row : row + 1], prompts[1][row : row + 1]
        with torch.no_grad():
            answer, wrong = (int(model(t)[0, -1].argmax()) for t in (clean, corrupted))
        metric, words = contrast_metric(model, clean, corrupted)
        if answer == wrong:
            assert metric == Loss() and "same top guess" in words
        else:
            assert metric == LogitDiff(answer=answer, wrong=wrong), (
                "the one batched forward must give the same argmaxes"
            )
            assert words.startswith(f"logit of {model.to_str_tokens([answer])[0]!r} (clean top guess)"), words


def test_contrast_metric_of_a_prompt_with_itself_is_the_loss(tiny_model, prompts):
    """Two identical prompts have one top guess: a logit difference of a token with itself is 0, so the loss."""
    metric, words = contrast_metric(tiny_model, prompts[0][:1], prompts[0][:1])
    assert metric == Loss() and words == "next-token loss (both prompts have the same top guess)"
