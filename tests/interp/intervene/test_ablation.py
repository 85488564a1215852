"""Ablation specs, ablate(), metrics and the batched head and neuron sweeps (each row = the single ablation alone)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from interp import (
    AttnLayerAblation,
    HeadAblation,
    LogitDiff,
    Loss,
    LossAt,
    MLPAblation,
    NeuronAblation,
    PositionAblation,
    TargetProb,
    ablate,
    ablation_hooks,
    as_metric,
    compare_ablation,
    corpus_reference,
    head_sweep,
    neuron_sweep,
    parse_pairs,
    resample_rows,
)

METHODS = ["zero", "mean", "resample"]
METRICS = {"loss": Loss(), "logit_diff": LogitDiff(answer=3, wrong=5, pos=-2), "loss_at": LossAt([4, 9])}


@pytest.fixture
def reference() -> torch.Tensor:
    return torch.randint(0, 64, (5, 14), generator=torch.Generator().manual_seed(1))


def ref_for(method: str, reference: torch.Tensor) -> torch.Tensor | None:
    return reference if method != "zero" else None


def test_specs_say_in_words_what_they_do():
    """str(spec) names the method, the component and the positions."""
    assert str(HeadAblation(1, 2, method="mean")).startswith("mean-ablate head L1H2")
    assert "at positions [3, 4]" in str(HeadAblation(0, 1, positions=[3, 4]))
    assert "attention output of layer 1" in str(AttnLayerAblation(1, method="resample"))
    assert "MLP output of layer 0" in str(MLPAblation(0))
    assert "neuron 37 of MLP 1" in str(NeuronAblation(1, 37))
    assert "residual stream entering layer 0 at position 5" in str(PositionAblation(0, 5))


def test_specs_are_frozen_values():
    """Specs compare and hash by value and cannot be changed in place."""
    assert HeadAblation(1, 2) == HeadAblation(1, 2, method="zero")
    assert len({HeadAblation(1, 2), HeadAblation(1, 2), HeadAblation(1, 3)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        HeadAblation(1, 2).head = 3


def test_ablating_nothing_gives_bit_identical_logits(variant_model, tokens):
    """ablate() with no components returns the plain forward's logits bit for bit."""
    with torch.no_grad():
        plain, loss = variant_model(tokens, return_type="both")
    result = ablate(variant_model, tokens)
    assert torch.equal(result.logits, plain), "an empty ablation changed the logits: a hook fired that should not"
    assert result.loss == pytest.approx(float(loss), abs=1e-6)


def test_zero_head_hooks_equal_zeroing_z_by_hand(tiny_model, tokens):
    """ablation_hooks(model, [HeadAblation(l, h)]) does exactly what zeroing z[:, :, h] by hand does."""

    def by_hand(z, hook):
        z = z.clone()
        z[:, :, 2] = 0.0
        return z

    with torch.no_grad():
        expected = tiny_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", by_hand)])
        got = tiny_model.run_with_hooks(tokens, fwd_hooks=ablation_hooks(tiny_model, [HeadAblation(1, 2)]))
        plain = tiny_model(tokens)
    assert torch.equal(got, expected), "the head spec hooks the wrong head or hook point"
    assert not torch.equal(got, plain), "zero-ablating a head changed nothing: the test would be blind"


def test_head_positions_leave_earlier_logits_alone(tiny_model, tokens):
    """Ablating a head only at positions >= 5 leaves the logits at positions < 5 unchanged (causality)."""
    with torch.no_grad():
        plain = tiny_model(tokens)
    result = ablate(tiny_model, tokens, HeadAblation(0, 1, positions=[5, -1]))
    assert torch.equal(result.logits[:, :5], plain[:, :5]), "a positional ablation leaked to earlier positions"
    assert not torch.allclose(result.logits[:, 5], plain[:, 5]), "ablating at position 5 changed nothing there"


def test_mean_ablation_puts_the_reference_mean_in(tiny_model, tokens, reference):
    """Mean ablation replaces z of the head by its per-position mean over the reference batch."""
    hooks = ablation_hooks(tiny_model, [HeadAblation(1, 3, method="mean")], tokens, reference)
    _, cache = tiny_model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_z", fwd_hooks=hooks)
    _, ref_cache = tiny_model.run_with_cache(reference[:, : tokens.shape[1]], names_filter="blocks.1.attn.hook_z")
    expected = ref_cache["z", 1][:, :, 3].mean(0).expand(tokens.shape[0], -1, -1)
    torch.testing.assert_close(cache["z", 1][:, :, 3], expected, msg="mean is not over the reference batch axis")


def test_resample_takes_each_row_from_another_row(tiny_model, tokens):
    """Resampling without a reference gives each sequence the z of a different sequence, reproducibly by seed."""
    rows = resample_rows(tokens.shape[0], tokens.shape[0], seed=3, from_self=True)
    assert (rows != torch.arange(tokens.shape[0])).all(), f"a row kept its own activations: {rows.tolist()}"
    assert torch.equal(rows, resample_rows(tokens.shape[0], tokens.shape[0], seed=3, from_self=True))
    hooks = ablation_hooks(tiny_model, [HeadAblation(0, 1, method="resample")], tokens, seed=3)
    _, cache = tiny_model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_z", fwd_hooks=hooks)
    _, clean = tiny_model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_z")
    torch.testing.assert_close(cache["z", 0][:, :, 1], clean["z", 0][rows][:, :, 1], msg="rows not taken as drawn")


def test_whole_attention_layer_equals_all_heads_without_bias(tokens):
    """Zero-ablating the attention output equals zero-ablating all its heads when there is no b_O."""
    model = make_model(bias=False)
    heads = ablate(model, tokens, heads=[(1, h) for h in range(4)])
    layer = ablate(model, tokens, attn_layers=[1])
    torch.testing.assert_close(layer.logits, heads.logits, atol=1e-5, rtol=0, msg="attn_out is not the sum of heads")


def test_whole_mlp_equals_all_neurons_without_bias(tokens):
    """Zero-ablating an MLP equals zero-ablating all of its neurons when there is no b_out."""
    model = make_model(bias=False)
    neurons = ablate(model, tokens, neurons=[(0, n) for n in range(model.cfg.d_mlp)])
    mlp = ablate(model, tokens, mlps="0")
    torch.testing.assert_close(mlp.logits, neurons.logits, atol=1e-5, rtol=0, msg="neuron hook not after the act")


def test_position_ablation_changes_only_that_position_onwards(tiny_model, tokens):
    """Zeroing the residual entering layer 1 at position 6 leaves positions < 6 untouched and changes position 6."""
    with torch.no_grad():
        plain = tiny_model(tokens)
    result = ablate(tiny_model, tokens, positions="1.6")
    assert torch.equal(result.logits[:, :6], plain[:, :6]), "a residual-position ablation leaked backwards"
    assert not torch.allclose(result.logits[:, 6], plain[:, 6]), "zeroing the residual at position 6 did nothing"


def test_combined_ablation_equals_both_hooks_together(tiny_model, tokens):
    """Ablating a head and a neuron together equals applying both specs' hooks in one run."""
    specs = [HeadAblation(0, 1), NeuronAblation(1, 7, method="resample")]
    result = ablate(tiny_model, tokens, *specs)
    hooks = ablation_hooks(tiny_model, specs[:1], tokens) + ablation_hooks(tiny_model, specs[1:], tokens)
    with torch.no_grad():
        expected = tiny_model.run_with_hooks(tokens, fwd_hooks=hooks)
    assert torch.equal(result.logits, expected), "ablate() does not apply its specs together"
    assert result.ablations == tuple(specs)


def test_cli_strings_parse_to_specs(tiny_model, tokens):
    """'1.2,0.3' parses to heads (1, 2) and (0, 3), and ablate() accepts the same string with a method."""
    assert parse_pairs("1.2,0.3") == [(1, 2), (0, 3)]
    result = ablate(tiny_model, tokens, heads="1.2, 0.3", method="resample")
    assert result.ablations == (HeadAblation(1, 2, method="resample"), HeadAblation(0, 3, method="resample"))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"heads": "2.0"}, IndexError, "valid layers 0..1"),
        ({"heads": "1.4"}, IndexError, "valid heads 0..3"),
        ({"neurons": "0.64"}, IndexError, "valid neurons 0..63"),
        ({"positions": "0.12"}, IndexError, "valid 0..11"),
        ({"heads": "1.x"}, ValueError, "is not a component label; write it like L1H3 (or 1.3)"),
        ({"heads": "1.2", "method": "median"}, ValueError, "use one of ['zero', 'mean', 'resample']"),
        ({"heads": "1.2", "method": "mean"}, ValueError, "mean ablation needs a reference batch"),
        ({"heads": [(1, -1)]}, ValueError, "head must be >= 0"),
        ({"mlps": "0,a"}, ValueError, "expected comma-separated layer numbers"),
    ],
    ids=["layer", "head", "neuron", "position", "parse", "method", "mean-no-ref", "negative", "mlp-parse"],
)
def test_malformed_specs_raise_clear_errors(tiny_model, tokens, kwargs, error, message):
    """Bad indices, unknown methods and a mean without reference raise typed errors naming what is valid."""
    with pytest.raises(error) as info:
        ablate(tiny_model, tokens, **kwargs)
    assert message in str(info.value), f"unhelpful message: {info.value}"


def test_mlp_ablation_on_attention_only_model_is_refused(tokens):
    """Ablating an MLP of an attention-only model raises a ValueError saying it has no MLPs."""
    with pytest.raises(ValueError, match="attention-only"):
        ablate(make_model(attn_only=True), tokens, mlps=[0])


def test_resample_without_reference_needs_two_rows(tiny_model, tokens):
    """Resampling a single sequence from its own batch is refused with a hint to pass a reference."""
    with pytest.raises(ValueError, match="at least 2 sequences"):
        ablate(tiny_model, tokens[:1], heads="0.0", method="resample")


def test_metrics_match_their_definitions(tiny_model, tokens):
    """Loss, LossAt, LogitDiff and TargetProb equal their formulas on full logits."""
    with torch.no_grad():
        logits = tiny_model(tokens)
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    torch.testing.assert_close(Loss()(logits, tokens), per_token.mean())
    torch.testing.assert_close(LossAt([4, 9])(logits, tokens), per_token[:, [3, 8]].mean(), msg="off by one?")
    torch.testing.assert_close(LogitDiff(3, 5, pos=-2)(logits, tokens), (logits[:, -2, 3] - logits[:, -2, 5]).mean())
    per_row = LogitDiff([3, 4, 6], [5, 5, 7])(logits, tokens)
    torch.testing.assert_close(
        per_row, (logits[:, -1, [3, 4, 6]].diagonal() - logits[:, -1, [5, 5, 7]].diagonal()).mean()
    )
    torch.testing.assert_close(TargetProb(9, pos=2)(logits, tokens), logits[:, 2].softmax(-1)[:, 9].mean())


def test_metrics_vectorise_over_variant_axes(tiny_model, tokens):
    """A metric on [variant, batch, pos, vocab] logits equals the metric of each variant alone."""
    logits = torch.randn(4, *tokens.shape, 64, generator=torch.Generator().manual_seed(0))
    for metric in [*METRICS.values(), TargetProb(2), as_metric(lambda lg, tk: lg[:, 0, 0].mean())]:
        batched = metric(logits, tokens)
        alone = torch.stack([metric(v, tokens) for v in logits])
        torch.testing.assert_close(batched, alone, msg=f"{metric} mixes variants")


def test_metric_errors_are_clear(tokens):
    """Unknown metric names, out-of-range positions and per-row ids of the wrong length raise clear errors."""
    logits = torch.zeros(*tokens.shape, 64)
    with pytest.raises(ValueError, match="unknown metric 'los'"):
        as_metric("los")
    with pytest.raises(IndexError, match=r"valid positions are 1\.\.11"):
        LossAt([0])(logits, tokens)
    with pytest.raises(ValueError, match="one id per row"):
        LogitDiff([1, 2], 3)(logits, tokens)
    with pytest.raises(ValueError, match="vocabulary has 64 tokens"):
        LogitDiff(70, 3)(logits, tokens)


SWEEP_CASES = [  # every method with two of the three metrics, every metric with two methods
    ("zero", "loss"), ("zero", "logit_diff"), ("mean", "loss_at"),
    ("mean", "logit_diff"), ("resample", "loss"), ("resample", "loss_at"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "metric_name"), SWEEP_CASES, ids=[f"{m}-{n}" for m, n in SWEEP_CASES])
def test_head_sweep_rows_equal_single_ablations(variant_model, tokens, reference, method, metric_name):
    """Every head_sweep row equals ablating that head alone with ablate() (within 1e-5)."""
    metric = METRICS[metric_name]
    frame = head_sweep(variant_model, tokens, method, metric, reference=ref_for(method, reference), seed=1)
    cfg = variant_model.cfg
    assert list(frame.columns) == ["layer", "head", "metric_clean", "metric_ablated", "delta"]
    assert len(frame) == cfg.n_layers * cfg.n_heads
    with torch.no_grad():
        clean = float(metric(variant_model(tokens), tokens))
    assert frame.metric_clean.iloc[0] == pytest.approx(clean, abs=1e-5), "the sweep's clean pass is off"
    for row in frame.itertuples():
        spec = HeadAblation(row.layer, row.head, method=method)
        alone = ablate(variant_model, tokens, spec, reference=ref_for(method, reference), seed=1).metric(metric)
        assert row.metric_ablated == pytest.approx(alone, abs=1e-5), f"L{row.layer}H{row.head}: sweep != single run"
    assert (frame.delta == frame.metric_ablated - frame.metric_clean).all()
    assert frame.delta.abs().max() > 1e-4, "no head matters: the comparison would be blind"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("config", ["locked", "post-norm", "rotary-no-bias", "untied-gelu-new-3-layers"])
def test_neuron_sweep_rows_equal_single_ablations(config, tokens, reference, method):
    """Every neuron_sweep row equals ablating that neuron alone, with chunks smaller than a layer."""
    model = make_model(**CONFIG_VARIANTS[config])
    neurons = [0, 5, 17, 63]
    frame = neuron_sweep(
        model, tokens, method, Loss(), neurons=neurons, chunk_size=7, reference=ref_for(method, reference)
    )
    assert list(frame.columns) == ["layer", "neuron", "metric_clean", "metric_ablated", "delta"]
    assert frame.neuron.tolist() == neurons * model.cfg.n_layers
    for row in frame.itertuples():
        spec = NeuronAblation(row.layer, row.neuron, method=method)
        alone = ablate(model, tokens, spec, reference=ref_for(method, reference)).metric(Loss())
        assert row.metric_ablated == pytest.approx(alone, abs=1e-5), f"neuron {row.layer}.{row.neuron}: sweep != alone"


def test_chunk_size_does_not_change_sweeps(tiny_model, tokens):
    """One head per chunk and all heads in one chunk give the same sweep."""
    small = head_sweep(tiny_model, tokens, chunk_size=1)
    large = head_sweep(tiny_model, tokens, chunk_size=10_000)
    torch.testing.assert_close(
        torch.tensor(small.metric_ablated), torch.tensor(large.metric_ablated), atol=1e-5, rtol=0
    )


def test_sweep_positions_and_layers_restrict_the_ablation(tiny_model, tokens):
    """head_sweep(layers=[1], positions=[-1]) matches ablating each layer-1 head at the last position only."""
    frame = head_sweep(tiny_model, tokens, "zero", LogitDiff(3, 5), layers=[1], positions=[-1])
    assert frame.layer.tolist() == [1] * 4
    for row in frame.itertuples():
        alone = ablate(tiny_model, tokens, HeadAblation(1, row.head, positions=[-1])).metric(LogitDiff(3, 5))
        assert row.metric_ablated == pytest.approx(alone, abs=1e-5)


def test_sweep_shows_a_progress_bar_on_request(tiny_model, tokens, capsys):
    """progress=True draws a tqdm bar on stderr; progress=False draws nothing."""
    head_sweep(tiny_model, tokens, progress=False)
    assert "head sweep" not in capsys.readouterr().err
    neuron_sweep(tiny_model, tokens, neurons=range(8), progress=True)
    assert "neuron sweep" in capsys.readouterr().err, "no progress bar for a long sweep"


def test_sweep_errors_are_clear(tokens):
    """Sweeping neurons of an attention-only model or an unknown layer raises a clear error."""
    with pytest.raises(ValueError, match="attention-only"):
        neuron_sweep(make_model(attn_only=True), tokens)
    with pytest.raises(IndexError, match=r"valid 0\.\.1"):
        head_sweep(make_model(), tokens, layers=[2])
    with pytest.raises(ValueError, match="unknown ablation method"):
        head_sweep(make_model(), tokens, method="mode")


# ---------------------------------------------------------------------------------------- compare_ablation
@pytest.mark.parametrize("method", METHODS)
def test_comparison_is_the_clean_forward_beside_ablate(variant_model, tokens, reference, method):
    """compare_ablation's prob_clean is softmax(model(tokens)), its prob_ablated and loss are ablate()'s, one run."""
    one, ref = tokens[:1], reference if method != "zero" else None
    heads, pos = [(1, 0), (0, 2)], 7
    result = compare_ablation(variant_model, one, heads=heads, method=method, reference=ref, pos=pos, seed=3)
    with torch.no_grad():
        logits, loss = variant_model(one, return_type="both")
    after = ablate(variant_model, one, heads=heads, method=method, reference=ref, seed=3)
    clean, ablated = (torch.tensor(result.frame[c].to_numpy()) for c in ("prob_clean", "prob_ablated"))
    torch.testing.assert_close(
        clean,
        logits[0, pos].double().softmax(-1),
        atol=1e-6,
        rtol=0,
        msg="prob_clean must be the plain forward's softmax (the clean row was ablated?)",
    )
    torch.testing.assert_close(
        ablated,
        after.logits[0, pos].double().softmax(-1),
        atol=1e-6,
        rtol=0,
        msg="prob_ablated must equal ablate()'s (the hooks touched the wrong row?)",
    )
    assert abs(result.loss_ablated - after.loss) < 1e-5 and result.ablations == after.ablations
    assert abs(result.loss_clean - float(loss)) < 1e-5
    assert result.frame.target.tolist() == list(range(64)) and (result.frame.target_str.str.len() > 0).all()


def test_comparison_of_nothing_is_one_run_of_identical_rows(tiny_model, tokens):
    """Ablating nothing: both columns and both losses are the plain forward's, bit for bit."""
    result = compare_ablation(tiny_model, tokens[:1], pos=-1)
    assert result.frame.prob_clean.equals(result.frame.prob_ablated) and result.loss_clean == result.loss_ablated
    assert result.ablations == ()


def test_corpus_reference_is_seeded_windows_of_the_corpus(tiny_model):
    """corpus_reference: <bos> + corpus text, n_ctx long by default, the same windows for the same seed."""
    from model.training.data import builtin_corpus, text_batch

    ref = corpus_reference(tiny_model, size=8, n_pos=12, seed=5)
    expected = text_batch(builtin_corpus().val, 8, 12, torch.Generator().manual_seed(5))
    assert torch.equal(ref, expected), "the windows must be text_batch's with the seed (what the CLI always used)"
    assert corpus_reference(tiny_model, size=2).shape == (2, tiny_model.cfg.n_ctx) and (ref[:, 0] == 0).all()
