"""Bad input to the interventions of interp/: specs, parsing, replacements, ablate, sweeps, metrics, patching, engine.

The second half of the matrix of tests/interp/test_bad_input_interp.py (which also walks interp/ so that no
public function lacks a row); see tests/bad_input_matrix.py for what every row checks.
"""

from __future__ import annotations

import pytest
import torch
from bad_input_matrix import Case, assert_clean_failure, build_env, in_hooks, nan_hook, params

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
)
from interp.common import metrics
from interp.intervene import ablate as ablation
from interp.intervene import engine as batched
from interp.intervene import flow as flow_patch
from interp.intervene import parsing, patching, replace, sweeps
from interp.intervene import specs as ablation_specs
from interp.observe.flow import information_flow


def _ablation_cases() -> list[Case]:
    B, BS = "interp.intervene.ablate.", "interp.intervene.specs."
    RP, PA = "interp.intervene.replace.", "interp.intervene.parsing."

    def abl(*specs, model=None, tokens=None, **kw):
        return lambda e: ablation.ablate(model or e.model, e.tokens if tokens is None else tokens, *specs, **kw)

    return [
        Case(BS + "HeadAblation", "negative layer", lambda e: HeadAblation(-1, 0), ValueError, "layer must be >= 0"),
        Case(BS + "HeadAblation", "float head", lambda e: HeadAblation(0, 1.5), TypeError,
             "head must be an int, got 1.5 (float)"),
        Case(BS + "HeadAblation", "unknown method", lambda e: HeadAblation(0, 0, method="avg"), ValueError,
             "unknown ablation method 'avg'; use one of ['zero', 'mean', 'resample']"),
        Case(BS + "HeadAblation", "float position", lambda e: HeadAblation(0, 0, positions=[1.5]), TypeError,
             "positions must be ints, got 1.5"),
        Case(BS + "AttnLayerAblation", "str layer", lambda e: AttnLayerAblation("1"), TypeError,
             "layer must be an int, got '1'"),
        Case(BS + "MLPAblation", "bool layer", lambda e: MLPAblation(True), TypeError, "(bool)"),
        Case(BS + "NeuronAblation", "negative neuron", lambda e: NeuronAblation(0, -3), ValueError,
             "neuron must be >= 0, got -3"),
        Case(BS + "PositionAblation", "float pos", lambda e: PositionAblation(0, 1.5), TypeError,
             "pos must be an int, got 1.5"),
        Case(B + "ablate", "head 4", abl(HeadAblation(0, 4)), IndexError,
             "head 4 is out of range: the model has 4 heads per layer (valid heads 0..3)"),
        Case(B + "ablate", "layer 2", abl(MLPAblation(2)), IndexError, "layer 2 is out of range"),
        Case(B + "ablate", "neuron 64", abl(NeuronAblation(0, 64)), IndexError, "valid neurons 0..63"),
        Case(B + "ablate", "MLP of attention-only model", lambda e: ablation.ablate(e.attn_only, e.tokens,
             MLPAblation(0)), ValueError, "this model is attention-only"),
        Case(B + "ablate", "position 6 of 6", abl(PositionAblation(0, 6)), IndexError,
             "position 6 is out of range for 6 tokens"),
        Case(B + "ablate", "positions [-7]", abl(HeadAblation(0, 0, positions=[-7])), IndexError, "-6..-1"),
        Case(B + "ablate", "unknown method", abl(heads="0.1", method="median"), ValueError, "unknown ablation method"),
        Case(B + "ablate", "heads '0-1'", abl(heads="0-1"), ValueError,
             "is not a component label; write it like L1H3 (or 1.3)"),
        Case(B + "ablate", "heads '0.1.2'", abl(heads="0.1.2"), ValueError,
             "'0.1.2' is not a component label; write it like L1H3 (or 1.3)"),
        Case(B + "ablate", "heads = 3", abl(heads=3), TypeError, "cannot make a HeadAblation from 3"),
        Case(B + "ablate", "mlps '-1'", abl(mlps="-1"), ValueError, "expected comma-separated layer numbers"),
        Case(B + "ablate", "spec as a str", abl("0.1"), TypeError, "expected ablation specs (HeadAblation"),
        Case(B + "ablate", "MLP spec given as heads", abl(heads=[MLPAblation(0)]), TypeError,
             "was given where HeadAblation specs are expected"),
        Case(B + "ablate", "mean without reference", abl(heads="0.1", method="mean"), ValueError,
             "mean ablation needs a reference batch"),
        Case(B + "ablate", "mean, reference too short", lambda e: ablation.ablate(e.model, e.tokens, heads="0.1",
             method="mean", reference=e.reference[:, :3]), ValueError, "the reference has 3 positions but the tokens"),
        Case(B + "ablate", "mean, 3-d reference", lambda e: ablation.ablate(e.model, e.tokens, heads="0.1",
             method="mean", reference=e.reference[None]), ValueError, "must have shape [batch, pos] or [pos]"),
        Case(B + "ablate", "mean, float reference", lambda e: ablation.ablate(e.model, e.tokens, heads="0.1",
             method="mean", reference=e.reference.float()), ValueError, "tokens must be integer ids"),
        Case(B + "ablate", "mean, empty reference", lambda e: ablation.ablate(e.model, e.tokens, heads="0.1",
             method="mean", reference=e.reference[:0]), ValueError, "tokens are empty"),
        Case(B + "ablate", "resample of one sequence", abl(heads="0.1", method="resample", tokens=torch.ones(
            1, 4, dtype=torch.long)), ValueError, "it needs at least 2 sequences"),
        Case(B + "ablate", "str seed", abl(heads="0.1", method="resample", seed="a"), TypeError,
             "seed must be an int, got 'a'"),
        Case(B + "ablate", "negative seed", abl(heads="0.1", seed=-2), ValueError, "seed must be >= 0"),
        Case(B + "ablate", "float tokens", abl(heads="0.1", tokens=torch.rand(1, 4)), ValueError,
             "tokens must be integer ids"),
        Case(B + "ablate", "model is a str", lambda e: ablation.ablate("gpt2", e.tokens), TypeError,
             "model must be a MiniGPT"),
        Case(B + "ablate", "NaN weight", lambda e: ablation.ablate(e.nan_model, e.tokens, heads="0.1"), ValueError,
            "ablate needs finite values, but parameter 'blocks.1.attn.W_Q' holds 1 NaN/inf"),
        Case(B + "ablate", "NaN from an active hook", lambda e: in_hooks(e.model, [("blocks.1.hook_mlp_out",
             nan_hook)], lambda: ablation.ablate(e.model, e.tokens, heads="0.1")), ValueError,
             "activation 'blocks.1.hook_mlp_out'"),
        Case(RP + "ablation_hooks", "not a spec", lambda e: replace.ablation_hooks(e.model, [3]), TypeError,
             "expected ablation specs"),
        Case(RP + "ablation_hooks", "specs not iterable", lambda e: replace.ablation_hooks(e.model, 3), TypeError,
             "specs must be a list of ablation specs"),
        Case(RP + "ablation_hooks", "model is a str", lambda e: replace.ablation_hooks("gpt2", [HeadAblation(0, 0)]),
             TypeError, "model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got str"),
        Case(RP + "ablation_hooks", "float tokens", lambda e: replace.ablation_hooks(e.model, [HeadAblation(
            0, 0, method="mean")], e.tokens.float(), e.reference), ValueError, "tokens must be integer ids"),
        Case(RP + "ablation_hooks", "str seed", lambda e: replace.ablation_hooks(e.model, [HeadAblation(
            0, 0, method="resample")], e.tokens, seed="a"), TypeError, "seed must be an int, got 'a'"),
        Case(RP + "ablation_hooks", "mean without tokens", lambda e: replace.ablation_hooks(e.model, [HeadAblation(
            0, 0, method="mean")], reference=e.reference), ValueError, "needs the tokens it will run on"),
        Case(RP + "ablation_hooks", "run on other positions", lambda e: e.model.run_with_hooks(e.tokens[:, :4],
             fwd_hooks=replace.ablation_hooks(e.model, [HeadAblation(0, 0, method="mean")], e.tokens, e.reference)),
             ValueError,
             "were built for 6 positions but run on 4"),
        Case(RP + "resample_rows", "one row from itself", lambda e: replace.resample_rows(1, 1, 0, True),
             ValueError, "needs at least 2 sequences"),
        Case(RP + "resample_rows", "empty source", lambda e: replace.resample_rows(2, 0, 0, False), ValueError,
             "n_source must be >= 1, got 0"),
        Case(RP + "resample_rows", "negative batch", lambda e: replace.resample_rows(-1, 3, 0, False), ValueError,
             "batch must be >= 1"),
        Case(RP + "resample_rows", "float seed", lambda e: replace.resample_rows(2, 3, 0.5, False), TypeError,
             "seed must be an int, got 0.5"),
        Case(RP + "replacements", "unknown method", lambda e: replace.replacements(e.model, "x", ["hook_embed"],
             e.tokens), ValueError, "unknown ablation method 'x'"),
        Case(RP + "replacements", "unknown hook name", lambda e: replace.replacements(e.model, "mean",
             ["hook_embd"], e.tokens, e.reference), KeyError, "did you mean 'hook_embed'"),
        Case(RP + "replacements", "float tokens", lambda e: replace.replacements(e.model, "mean", ["hook_embed"],
             e.tokens.float(), e.reference), ValueError, "tokens must be integer ids"),
        Case(BS + "resolve_positions", "float position", lambda e: ablation_specs.resolve_positions([1.5], 4),
             TypeError, "every position must be an int, got 1.5"),
        Case(BS + "resolve_positions", "str positions", lambda e: ablation_specs.resolve_positions("12", 4),
             TypeError, "positions must be an int or a list of ints, got str"),
        Case(BS + "resolve_positions", "position 5 of 4", lambda e: ablation_specs.resolve_positions([5], 4),
             IndexError, "position 5 is out of range for 4 tokens (valid 0..3, or -4..-1)"),
        Case(PA + "parse_pairs", "int", lambda e: parsing.parse_pairs(3), TypeError,
             "expected a string of heads like 'L1H2,L0H3', got int"),
        Case(PA + "parse_pairs", "empty", lambda e: parsing.parse_pairs(""), ValueError,
             "'' is not a component label; write it like L1H3"),
        Case(PA + "parse_pairs", "a neuron for a head", lambda e: parsing.parse_pairs("L1N3"), ValueError,
             "'L1N3' is a neuron, but a head is expected here: write it like L1H3 (or 1.3)"),
        Case(PA + "parse_layers", "None", lambda e: parsing.parse_layers(None), TypeError,
             "expected a string of comma-separated layer numbers"),
        Case(PA + "parse_layers", "negative layer", lambda e: parsing.parse_layers("-1"), ValueError,
             "could not parse layers '-1'"),
        Case(BS + "check_method", "None", lambda e: ablation_specs.check_method(None), ValueError,
             "unknown ablation method None"),
        Case(PA + "specs_from", "a bare int where (layer, head) pairs are expected",
             lambda e: parsing.specs_from([3], HeadAblation, "zero", "head"), TypeError,
             "cannot make a HeadAblation from 3"),
        Case(PA + "specs_from", "a NeuronAblation given as heads",
             lambda e: parsing.specs_from([NeuronAblation(0, 1)], HeadAblation, "zero", "head"), TypeError,
             "where HeadAblation specs are expected"),
        Case(B + "AblationResult.metric", "unknown metric", lambda e: ablation.ablate(e.model, e.tokens).metric(
            "accuracy"), ValueError, "unknown metric 'accuracy'"),
        Case(B + "AblationResult.metric", "int metric", lambda e: ablation.ablate(e.model, e.tokens).metric(3),
             TypeError, "metric must be a Metric, a name or a callable"),
        Case(B + "compare_ablation", "a batch of 2", lambda e: ablation.compare_ablation(e.model, e.tokens,
             heads="0.1"), ValueError, "compare_ablation compares one sequence, got a batch of 2"),
        Case(B + "compare_ablation", "pos 6 of 6", lambda e: ablation.compare_ablation(e.model, e.tokens[:1], pos=6),
             IndexError, "pos 6 is out of range for 6 tokens; valid positions are -6..5"),
        Case(B + "compare_ablation", "float pos", lambda e: ablation.compare_ablation(e.model, e.tokens[:1], pos=1.5),
             TypeError, "pos must be an int, got 1.5"),
        Case(B + "compare_ablation", "mean without reference", lambda e: ablation.compare_ablation(e.model,
             e.tokens[:1], heads="0.1", method="mean"), ValueError, "mean ablation needs a reference batch"),
        Case(B + "compare_ablation", "head 4", lambda e: ablation.compare_ablation(e.model, e.tokens[:1],
             HeadAblation(0, 4)), IndexError, "head 4 is out of range"),
        Case(B + "compare_ablation", "model is a str", lambda e: ablation.compare_ablation("gpt2", e.tokens[:1]),
             TypeError, "model must be a MiniGPT"),
        Case(B + "compare_ablation", "NaN weight", lambda e: ablation.compare_ablation(e.nan_model, e.tokens[:1],
             heads="0.1"), ValueError, "parameter 'blocks.1.attn.W_Q' holds"),
        Case(B + "AblationComparison", "frame is a dict", lambda e: ablation.AblationComparison({}, None, None, ()),
             TypeError, "an AblationComparison's frame must be a DataFrame with the columns"),
        Case(RP + "corpus_reference", "n_pos over n_ctx", lambda e: replace.corpus_reference(e.model, n_pos=999),
             ValueError, "n_pos=999 is longer than the model's context"),
        Case(RP + "corpus_reference", "size 0", lambda e: replace.corpus_reference(e.model, size=0), ValueError,
             "size must be >= 1, got 0"),
        Case(RP + "corpus_reference", "float seed", lambda e: replace.corpus_reference(e.model, seed=0.5), TypeError,
             "seed must be an int"),
        Case(RP + "corpus_reference", "model is a str", lambda e: replace.corpus_reference("gpt2"), TypeError,
             "model must be a MiniGPT"),
    ]  # fmt: skip


def _sweep_cases() -> list[Case]:
    S = "interp.intervene.sweeps."

    def hs(**kw):
        return lambda e: sweeps.head_sweep(e.model, e.tokens, **kw)

    def ns(**kw):
        return lambda e: sweeps.neuron_sweep(e.model, e.tokens, **kw)

    return [
        Case(S + "head_sweep", "unknown method", hs(method="avg"), ValueError, "unknown ablation method 'avg'"),
        Case(S + "head_sweep", "misspelt metric", hs(metric="los"), ValueError, "unknown metric 'los'"),
        Case(S + "head_sweep", "int metric", hs(metric=3), TypeError, "metric must be a Metric"),
        Case(S + "head_sweep", "layer 5", hs(layers=[5]), IndexError, "valid 0..1"),
        Case(S + "head_sweep", "layer -1", hs(layers=[-1]), IndexError, "layer -1 is out of range"),
        Case(S + "head_sweep", "no layers", hs(layers=[]), ValueError, "layers is empty"),
        Case(S + "head_sweep", "layer '0'", hs(layers=["0"]), TypeError, "layer must be an int"),
        Case(S + "head_sweep", "position 9 of 6", hs(positions=[9]), IndexError, "position 9 is out of range"),
        Case(S + "head_sweep", "float position", hs(positions=[1.5]), TypeError, "every position must be an int"),
        Case(S + "head_sweep", "chunk_size 0", hs(chunk_size=0), ValueError, "chunk_size must be a positive"),
        Case(S + "head_sweep", "mean without reference", hs(method="mean"), ValueError, "needs a reference batch"),
        Case(S + "head_sweep", "mean, reference too short", lambda e: sweeps.head_sweep(e.model, e.tokens, "mean",
             reference=e.reference[:, :2]), ValueError, "the reference has 2 positions"),
        Case(S + "head_sweep", "resample of one sequence", lambda e: sweeps.head_sweep(e.model, e.tokens[:1],
             "resample"), ValueError, "at least 2 sequences"),
        Case(S + "head_sweep", "loss of one token", lambda e: sweeps.head_sweep(e.model, e.tokens[:, :1]),
             ValueError, "the next-token loss needs at least 2 tokens"),
        Case(S + "head_sweep", "NaN weight", lambda e: sweeps.head_sweep(e.nan_model, e.tokens), ValueError,
             "head_sweep needs finite values, but parameter 'blocks.1.attn.W_Q'"),
        Case(S + "head_sweep", "metric returns NaN", hs(metric=lambda logits, tokens: torch.tensor(float("nan")),
             ), ValueError, "although every parameter and activation is finite; check the metric"),
        Case(S + "head_sweep", "metric returns a vector", hs(metric=lambda logits, tokens: logits.sum((1, 2))),
             ValueError, "a metric must return a scalar"),
        Case(S + "head_sweep", "metric returns a str", hs(metric=lambda logits, tokens: "good"), TypeError,
             "returned str; a metric must return a number"),
        Case(S + "head_sweep", "LogitDiff id 64", hs(metric=LogitDiff(64, 3)), ValueError,
             "reads token ids (3, 64), outside the vocabulary of 64"),
        Case(S + "head_sweep", "LogitDiff ids per row", hs(metric=LogitDiff([1, 2, 3], 3)), ValueError,
             "answer has 3 ids but the batch has 2 rows"),
        Case(S + "head_sweep", "LogitDiff pos 6 of 6", hs(metric=LogitDiff(1, 3, pos=6)), IndexError,
             "logit-difference position 6 is out of range for 6 tokens"),
        Case(S + "head_sweep", "LossAt position 0", hs(metric=LossAt([0])), IndexError, "valid positions are 1..5"),
        Case(S + "head_sweep", "TargetProb id 64", hs(metric=TargetProb(64)), ValueError,
             "target 64 is outside the vocabulary"),
        Case(S + "neuron_sweep", "attention-only model", lambda e: sweeps.neuron_sweep(e.attn_only, e.tokens),
             ValueError, "neuron_sweep needs MLPs, but this model is attention-only"),
        Case(S + "neuron_sweep", "neuron 64", ns(neurons=[64]), IndexError,
             "neurons must be a non-empty list in 0..63"),
        Case(S + "neuron_sweep", "neuron -1", ns(neurons=[-1]), IndexError, "got [-1]"),
        Case(S + "neuron_sweep", "float neuron", ns(neurons=[1.5]), TypeError, "every neuron must be an int, got 1.5"),
        Case(S + "neuron_sweep", "neurons as a str", ns(neurons="12"), TypeError,
             "neurons must be an int or a list of ints, got str"),
        Case(S + "neuron_sweep", "no neurons", ns(neurons=[]), IndexError, "non-empty"),
        Case(S + "neuron_sweep", "NaN weight", lambda e: sweeps.neuron_sweep(e.inf_model, e.tokens), ValueError,
             "neuron_sweep needs finite values, but parameter 'blocks.0.mlp.W_in'"),
        Case(S + "neuron_sweep", "str seed", ns(method="resample", seed="x"), TypeError, "seed must be an int"),
    ]  # fmt: skip


def _metric_cases() -> list[Case]:
    M = "interp.common.metrics."
    logits, ids = torch.zeros(1, 3, 64), torch.zeros(1, 3, dtype=torch.long)
    return [
        Case(M + "LossAt", "no positions", lambda e: LossAt([]), ValueError, "LossAt needs at least one position"),
        Case(M + "LossAt", "str position", lambda e: LossAt(["a"]), TypeError,
             "LossAt positions must be an int or a list of ints"),
        Case(M + "LossAt", "float position", lambda e: LossAt([1.5]), TypeError, "got [1.5]"),
        Case(M + "LogitDiff", "negative answer", lambda e: LogitDiff(-1, 2), ValueError,
             "answer must be a token id >= 0, got -1"),
        Case(M + "LogitDiff", "float answer", lambda e: LogitDiff(1.5, 2), TypeError, "answer must be a token id"),
        Case(M + "LogitDiff", "bool wrong", lambda e: LogitDiff(1, True), TypeError, "wrong must be a token id"),
        Case(M + "LogitDiff", "float pos", lambda e: LogitDiff(1, 2, pos=1.5), TypeError, "pos must be an int"),
        Case(M + "LogitDiff", "list pos", lambda e: LogitDiff(1, 2, pos=[1, 2]), TypeError,
             "pos must be one int position"),
        Case(M + "TargetProb", "None target", lambda e: TargetProb(None), TypeError, "target must be a token id"),
        Case(M + "Loss", "2-d logits", lambda e: Loss()(torch.zeros(3, 64), ids), ValueError,
             "logits of shape (3, 64) do not match tokens of shape (1, 3)"),
        Case(M + "Loss", "float tokens", lambda e: Loss()(logits, ids.float()), TypeError,
             "tokens must hold integer ids, got dtype torch.float32"),
        Case(M + "Loss", "tokens as a list", lambda e: Loss()(logits, [[1, 2, 3]]), TypeError,
             "a metric takes (logits, tokens) tensors, got Tensor and list"),
        Case(M + "Loss", "token id 64", lambda e: Loss()(logits, torch.full((1, 3), 64)), ValueError,
             "tokens hold ids outside the vocabulary [0, 64)"),
        Case(M + "Loss", "one position", lambda e: Loss()(logits[:, :1], ids[:, :1]), ValueError,
             "the next-token loss needs at least 2 tokens per sequence"),
        Case(M + "Metric", "base class has no score", lambda e: metrics.Metric()(logits, ids), TypeError,
             "Metric does not define score()"),
        Case(M + "FunctionMetric", "not callable", lambda e: metrics.FunctionMetric(3), TypeError,
             "FunctionMetric needs a callable fn(logits, tokens) -> scalar, got 3"),
        Case(M + "as_metric", "None", lambda e: metrics.as_metric(None), TypeError,
             "metric must be a Metric, a name or a callable fn(logits, tokens), got NoneType"),
        Case(M + "as_metric", "unknown name", lambda e: metrics.as_metric("acc"), ValueError,
             "unknown metric 'acc'; use one of ['loss']"),
        Case(M + "contrast_metric", "corrupted one token shorter", lambda e: metrics.contrast_metric(e.model,
             e.tokens[:1], e.tokens[:1, :-1]), ValueError, "one clean and one corrupted prompt of the same length"),
        Case(M + "contrast_metric", "a batch of 2", lambda e: metrics.contrast_metric(e.model, e.tokens, e.other),
             ValueError, "got token shapes (2, 6) and (2, 6)"),
        Case(M + "contrast_metric", "float tokens", lambda e: metrics.contrast_metric(e.model, e.tokens[:1].float(),
             e.other[:1]), ValueError, "tokens must be integer ids"),
        Case(M + "contrast_metric", "model is a str", lambda e: metrics.contrast_metric("gpt2", e.tokens[:1],
             e.other[:1]), TypeError, "model must be a MiniGPT"),
    ]  # fmt: skip


def _patching_cases() -> list[Case]:
    P = "interp.intervene.patching."

    def act(**kw):
        return lambda e: patching.activation_patching(e.model, e.tokens, e.other, "loss", **kw)

    def attr(**kw):
        return lambda e: patching.attribution_patching(e.model, e.tokens, e.other, "loss", **kw)

    return [
        Case(P + "activation_patching", "unknown grid", act(grid="head"), ValueError,
             "grid='head' is not one of ['resid_pre', 'attn_out', 'mlp_out', 'heads', 'heads_by_pos']"),
        Case(P + "activation_patching", "positions differ", lambda e: patching.activation_patching(
            e.model, e.tokens, e.other[:, :4], "loss"), ValueError,
            "clean tokens (2, 6) and corrupted tokens (2, 4) must have the same shape"),
        Case(P + "activation_patching", "batch differs", lambda e: patching.activation_patching(
            e.model, e.tokens, e.other[:1], "loss"), ValueError, "must have the same shape"),
        Case(P + "activation_patching", "clean = corrupted", lambda e: patching.activation_patching(
            e.model, e.tokens, e.tokens, "loss"), ValueError, "patching cannot be normalised"),
        Case(P + "activation_patching", "mlp_out of attention-only", lambda e: patching.activation_patching(
            e.attn_only, e.tokens, e.other, "loss", grid="mlp_out"), ValueError, "needs MLPs"),
        Case(P + "activation_patching", "unknown metric", lambda e: patching.activation_patching(
            e.model, e.tokens, e.other, "acc"), ValueError, "unknown metric 'acc'"),
        Case(P + "activation_patching", "float clean tokens", lambda e: patching.activation_patching(
            e.model, e.tokens.float(), e.other, "loss"), ValueError, "tokens must be integer ids"),
        Case(P + "activation_patching", "layer 3", act(layers=[3]), IndexError, "layer 3 is out of range"),
        Case(P + "activation_patching", "no layers", act(layers=[]), ValueError, "layers is empty"),
        Case(P + "activation_patching", "NaN weight", lambda e: patching.activation_patching(
            e.nan_model, e.tokens, e.other, "loss"), ValueError, "parameter 'blocks.1.attn.W_Q'"),
        Case(P + "attribution_patching", "unknown grid", attr(grid="x"), ValueError, "grid='x' is not one of"),
        Case(P + "attribution_patching", "positions differ", lambda e: patching.attribution_patching(
            e.model, e.tokens, e.other[:, :3], "loss"), ValueError, "must have the same shape"),
        Case(P + "attribution_patching", "inference mode", lambda e: _in_inference_mode(
            lambda: patching.attribution_patching(e.model, e.tokens, e.other, "loss")), ValueError,
            "attribution patching needs gradients"),
        Case(P + "attribution_patching", "no layers", attr(layers=[]), ValueError, "layers is empty"),
        Case(P + "attribution_patching", "NaN weight", lambda e: patching.attribution_patching(
            e.nan_model, e.tokens, e.other, "loss"), ValueError, "parameter 'blocks.1.attn.W_Q'"),
    ]  # fmt: skip


def _in_inference_mode(fn):
    with torch.inference_mode():
        return fn()


def _batched_cases() -> list[Case]:
    B = "interp.intervene.engine."
    x = torch.zeros(2, 6, 32)
    return [
        Case(B + "read_columns", "id 64", lambda e: batched.read_columns(e.model, LogitDiff(64, 1), 6), ValueError,
             "reads token ids (1, 64), outside the vocabulary of 64"),
        Case(B + "read_columns", "metric name", lambda e: batched.read_columns(e.model, "loss", 6), TypeError,
             "metric must be a Metric"),
        Case(B + "score_final", "position 9 of 6", lambda e: batched.score_final(e.model, x, LogitDiff(1, 2, pos=9),
             e.tokens[:2]), IndexError, "logit-difference position 9 is out of range for 6 tokens"),
        Case(B + "run_variants", "layer 2", lambda e: batched.run_variants(e.model, lambda a, b: x[None], 1, 2,
             "resid_pre", Loss(), e.tokens[:2], 4), IndexError, "layer 2 is out of range"),
        Case(B + "run_variants", "state of wrong width", lambda e: batched.run_variants(
            e.model, lambda a, b: torch.zeros(1, 2, 6, 5), 1, 0, "resid_pre", Loss(), e.tokens[:2], 4), ValueError,
            "d_model=32"),
        Case(B + "cached_run", "unknown hook", lambda e: batched.cached_run(e.model, e.tokens, ["hook_embd"],
             Loss()), KeyError, "did you mean 'hook_embed'"),
        Case(B + "cached_run", "metric name", lambda e: batched.cached_run(e.model, e.tokens, [], "loss"),
             TypeError, "metric must be a Metric"),
        Case(B + "default_chunk_size", "no positions", lambda e: batched.default_chunk_size(e.model, 0, Loss()),
             ValueError, "n_pos"),
        Case(B + "check_chunk_size", "chunk_size 0", lambda e: batched.check_chunk_size(0, e.model, 6, Loss()),
             ValueError, "chunk_size must be a positive number of sequences per pass (or None), got 0"),
        Case(B + "check_chunk_size", "chunk_size 1.5", lambda e: batched.check_chunk_size(1.5, e.model, 6, Loss()),
             ValueError, "got 1.5"),
        Case(B + "run_variants", "unknown stage", lambda e: batched.run_variants(e.model, lambda a, b: torch.zeros(
            b - a, 2, 6, 32), 2, 0, "x", Loss(), e.tokens, 4), ValueError, "stage='x' is not one of"),
        Case(B + "position_mask", "position 5 of 4", lambda e: batched.position_mask(4, [5], x), IndexError,
             "position 5 is out of range"),
        Case(B + "check_layers", "layer 5", lambda e: batched.check_layers(e.model, 5), IndexError,
             "layer 5 is out of range: the model has 2 layers (valid 0..1)"),
        Case(B + "check_layers", "no layers", lambda e: batched.check_layers(e.model, []), ValueError,
             "layers is empty"),
        Case(B + "check_layers", "bool layer", lambda e: batched.check_layers(e.model, [True]), TypeError,
             "layer must be an int"),
        Case(B + "progress_bar", "negative total", lambda e: batched.progress_bar(-1, None, "x"), ValueError,
             "total"),
    ]  # fmt: skip


def _flow_edge(e, **change):
    return information_flow(e.model, e.tokens[:1]).iloc[:1].assign(**change)


def _flow_patch_cases() -> list[Case]:
    P = "interp.intervene.flow.patch_flow_edge"
    run = flow_patch.patch_flow_edge
    return [
        Case(P, "corrupted shorter", lambda e: run(e.model, e.tokens[:1], e.other[:1, :4], _flow_edge(e)), ValueError,
             "clean tokens (1, 6) and corrupted tokens (1, 4) must have the same shape"),
        Case(P, "mlp edge on an attention-only model", lambda e: run(e.attn_only, e.tokens[:1], e.other[:1],
             _flow_edge(e, component="L0.mlp")), ValueError, "this model is attention-only: it has no MLP edges"),
        Case(P, "a neuron", lambda e: run(e.model, e.tokens[:1], e.other[:1], _flow_edge(e, component="L0N3")),
             ValueError, "edge component 'L0N3' carries no flow edge; use a head (L1H0)"),
        Case(P, "edge is a str", lambda e: run(e.model, e.tokens[:1], e.other[:1], "L0H0"), TypeError,
             "edge must be a row of information_flow(...)"),
        Case(P, "two rows", lambda e: run(e.model, e.tokens[:1], e.other[:1], information_flow(
             e.model, e.tokens[:1]).iloc[:2]), ValueError, "edge must be one row of information_flow's frame, got 2"),
        Case(P, "edge backwards", lambda e: run(e.model, e.tokens[:1], e.other[:1], _flow_edge(
             e, upstream_pos=3, downstream_pos=1)), ValueError, "a head edge cannot go from position 3 to position 1"),
        Case(P, "head 7", lambda e: run(e.model, e.tokens[:1], e.other[:1], _flow_edge(e, component="L0H7")),
             IndexError, "head 7 is out of range"),
        Case(P, "position 99", lambda e: run(e.model, e.tokens[:1], e.other[:1], _flow_edge(e), position=99),
             IndexError, "position 99 is out of range"),
    ]  # fmt: skip


CASES = _ablation_cases() + _sweep_cases() + _metric_cases() + _patching_cases() + _batched_cases()
CASES += _flow_patch_cases()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad_input_interventions"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_raises_a_clear_typed_error(case, env):
    """The intervention refuses the bad input with a typed error naming it, and changes nothing."""
    assert_clean_failure(case, env)
