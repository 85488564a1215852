"""Bad input to the analyses of interp/ (residual, dla, attention, circuits, export, checks), and the walk.

Each row of the matrix is one (entry point, bad input, exception type, phrase the message must contain);
see tests/bad_input_matrix.py for what every row checks (typed error raised by our own check, nothing
modified). Non-finite values: the analyses raise a ValueError naming the first non-finite parameter or,
with finite weights, the first non-finite activation in forward order (see interp/checks.py). The
interventions (ablation, sweeps, metrics, patching, batched) are in tests/test_bad_input_interventions.py;
the walk below checks that every public function of interp/ (but the CLI) has a row in one of the two.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pandas as pd
import pytest
import torch
from bad_input_matrix import Case, assert_clean_failure, build_env, covered_entries, in_hooks, nan_hook, params
from test_bad_input_interventions import CASES as INTERVENTION_CASES

import interp
from interp.common import checks, export
from interp.observe import attention, dla, residual
from interp.weights import circuits
from model import FactoredMatrix

NOT_IN_SCOPE = ("cli", "cli_ablation", "cli_analysis")  # CLI: tests/test_cli*.py (CLI part of issue 8)


def _residual_cases() -> list[Case]:
    R = "interp.observe.residual."
    return [
        Case(R + "head_writes", "layer -1", lambda e: residual.head_writes(e.model, e.cache, -1), IndexError,
             "layer -1 is out of range: the model has 2 layers (valid 0..1)"),
        Case(R + "head_writes", "layer 2", lambda e: residual.head_writes(e.model, e.cache, 2), IndexError,
             "valid 0..1"),
        Case(R + "head_writes", "layer 1.5", lambda e: residual.head_writes(e.model, e.cache, 1.5), TypeError,
             "layer must be an int, got 1.5 (float)"),
        Case(R + "head_writes", "layer '0'", lambda e: residual.head_writes(e.model, e.cache, "0"), TypeError,
             "layer must be an int, got '0' (str)"),
        Case(R + "head_writes", "cache is a dict", lambda e: residual.head_writes(e.model, dict(e.cache), 0),
             TypeError, "cache must be an ActivationCache from model.run_with_cache, got dict"),
        Case(R + "residual_stack", "post-norm model", lambda e: residual.residual_stack(e.post, e.cache),
             ValueError, "norm='post' re-normalises the whole residual stream"),
        Case(R + "residual_stack", "cache lacks hook_z", lambda e: residual.residual_stack(e.model, e.small_cache),
             KeyError, "'blocks.0.attn.hook_z' is not in this cache"),
        Case(R + "residual_stack", "cache None", lambda e: residual.residual_stack(e.model, None), TypeError,
             "cache must be an ActivationCache"),
        Case(R + "residual_stack", "model is a str", lambda e: residual.residual_stack("gpt", e.cache), TypeError,
             "model must be a MiniGPT"),
        Case(R + "residual_stack", "per_head is a str", lambda e: residual.residual_stack(e.model, e.cache, "no"),
             TypeError, "per_head must be True or False"),
        Case(R + "residual_stack", "NaN weight", lambda e: residual.residual_stack(
            e.nan_model, e.nan_model.run_with_cache(e.tokens)[1]), ValueError,
            "residual_stack needs finite values, but parameter 'blocks.1.attn.W_Q' holds 1 NaN/inf"),
        Case(R + "residual_stack", "NaN activation from a hook", lambda e: residual.residual_stack(
            e.model, e.nan_cache), ValueError, "activation 'blocks.0.hook_attn_out' holds 384 NaN/inf"),
        Case(R + "write_norms", "NaN activation", lambda e: residual.write_norms(e.model, e.nan_cache), ValueError,
             "write_norms needs finite values, but activation 'blocks.0.hook_attn_out'"),
        Case(R + "write_norms", "cache is a list", lambda e: residual.write_norms(e.model, [1]), TypeError,
             "got list"),
        Case(R + "accumulated_resid", "cache lacks resid_pre", lambda e: residual.accumulated_resid(
            e.model, e.small_cache), KeyError, "'blocks.0.hook_resid_pre' is not in this cache"),
        Case(R + "accumulated_resid", "inf weight", lambda e: residual.accumulated_resid(
            e.inf_model, e.inf_model.run_with_cache(e.tokens)[1]), ValueError,
            "parameter 'blocks.0.mlp.W_in' holds 1 NaN/inf"),
        Case(R + "long_frame", "2-d values", lambda e: residual.long_frame(torch.zeros(2, 3), pd.DataFrame(
            {"a": [1, 2]}), "v"), ValueError, "long_frame needs values [component, batch, pos]"),
        Case(R + "long_frame", "labels do not match", lambda e: residual.long_frame(torch.zeros(2, 1, 3),
             pd.DataFrame({"a": [1, 2, 3]}), "v"), ValueError, "got values (2, 1, 3) and 3 label rows"),
        Case(R + "long_frame", "per_position shape", lambda e: residual.long_frame(torch.zeros(2, 1, 3),
             pd.DataFrame({"a": [1, 2]}), "v", {"t": torch.zeros(3)}), ValueError,
             "per_position['t'] has shape (3,), expected (1, 3)"),
        Case(R + "require_additive", "post-norm model", lambda e: residual.require_additive(e.post, "this"),
             ValueError, "this is not defined for this model"),
        Case(R + "final_resid_name", "model is None", lambda e: residual.final_resid_name(None), TypeError,
             "model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got NoneType"),
    ]  # fmt: skip


def _dla_cases() -> list[Case]:
    D = "interp.observe.dla."

    def run(model=None, cache="env", tokens=None, **kw):
        return lambda e: dla.direct_logit_attribution(
            model or e.model, e.cache if cache == "env" else cache, e.tokens if tokens is None else tokens, **kw
        )

    return [
        Case(D + "direct_logit_attribution", "unknown per", run(per="heads"), ValueError,
             "per='heads' is not one of ['layer', 'component', 'head', 'neuron']"),
        Case(D + "direct_logit_attribution", "tokens do not match cache", lambda e: dla.direct_logit_attribution(
            e.model, e.cache, e.tokens[:, :3]), ValueError, "tokens have shape (2, 3) but the cache was recorded"),
        Case(D + "direct_logit_attribution", "float tokens", lambda e: dla.direct_logit_attribution(
            e.model, e.cache, e.tokens.float()), ValueError, "tokens must be integer ids"),
        Case(D + "direct_logit_attribution", "cache is a dict", lambda e: dla.direct_logit_attribution(
            e.model, dict(e.cache), e.tokens), TypeError, "cache must be an ActivationCache"),
        Case(D + "direct_logit_attribution", "cache lacks ln_final", lambda e: dla.direct_logit_attribution(
            e.model, e.small_cache, e.tokens), KeyError, "'ln_final.hook_normalized' is not in this cache"),
        Case(D + "direct_logit_attribution", "target id 64", run(target=64), ValueError,
             "target ids [64] are outside the vocabulary [0, 64)"),
        Case(D + "direct_logit_attribution", "contrast id -1", run(target=3, contrast=-1), ValueError,
             "contrast ids [-1] are outside"),
        Case(D + "direct_logit_attribution", "two-character target", run(target="ab"), ValueError,
             "target='ab' encodes to 2 tokens; give exactly one character"),
        Case(D + "direct_logit_attribution", "unknown character target", run(target="é"), ValueError,
             "1 unknown character: 'é'"),
        Case(D + "direct_logit_attribution", "float target", run(target=1.5), TypeError,
             "target must be a token id, a character or an id tensor, got 1.5"),
        Case(D + "direct_logit_attribution", "target shape", run(target=torch.zeros(3, dtype=torch.long)),
             ValueError, "target has shape (3,), not broadcastable to tokens (2, 6)"),
        Case(D + "direct_logit_attribution", "float target tensor", run(target=torch.zeros(2, 6)), TypeError,
             "target must hold integer token ids"),
        Case(D + "direct_logit_attribution", "post-norm model", lambda e: dla.direct_logit_attribution(
            e.post, None, e.tokens), ValueError, "direct logit attribution is not defined for this model"),
        Case(D + "direct_logit_attribution", "NaN weight", lambda e: dla.direct_logit_attribution(
            e.nan_model, None, e.tokens), ValueError,
            "direct logit attribution needs finite values, but parameter 'blocks.1.attn.W_Q' holds 1 NaN/inf"),
        Case(D + "direct_logit_attribution", "inf weight", lambda e: dla.direct_logit_attribution(
            e.inf_model, None, e.tokens), ValueError, "parameter 'blocks.0.mlp.W_in'"),
        Case(D + "direct_logit_attribution", "NaN activation in the cache", lambda e: dla.direct_logit_attribution(
            e.model, e.nan_cache, e.tokens), ValueError,
             "activation 'blocks.0.hook_attn_out' holds 384 NaN/inf of 384 entries"),
        Case(D + "direct_logit_attribution", "NaN from an active hook", lambda e: in_hooks(
            e.model, [("blocks.1.hook_mlp_out", nan_hook)], lambda: dla.direct_logit_attribution(
                e.model, None, e.tokens)), ValueError, "activation 'blocks.1.hook_mlp_out'"),
        Case(D + "logit_difference", "no contrast", lambda e: dla.logit_difference(e.model, e.cache, e.tokens, 3,
             None), ValueError, "logit_difference needs a contrast token"),
        Case(D + "logit_difference", "NaN activation", lambda e: dla.logit_difference(
            e.model, e.nan_cache, e.tokens, 3, 4), ValueError, "logit_difference needs finite values"),
        Case(D + "logit_lens", "k = 0", lambda e: dla.logit_lens(e.model, e.cache, e.tokens, k=0), ValueError,
             "k must be an int in [1, 64], got 0"),
        Case(D + "logit_lens", "k = 65", lambda e: dla.logit_lens(e.model, e.cache, e.tokens, k=65), ValueError,
             "got 65"),
        Case(D + "logit_lens", "NaN activation", lambda e: dla.logit_lens(e.model, e.nan_cache, e.tokens),
             ValueError, "needs finite values, but activation 'blocks.0.hook_attn_out'"),
        Case(D + "logit_lens", "mismatched batch", lambda e: dla.logit_lens(e.model, e.cache, e.tokens[:1]),
             ValueError, "tokens have shape (1, 6) but the cache was recorded on (2, 6)"),
        Case(D + "final_logits", "cache None", lambda e: dla.final_logits(e.model, None), TypeError,
             "cache must be an ActivationCache from model.run_with_cache, got NoneType"),
        Case(D + "final_logits", "cache lacks ln_final", lambda e: dla.final_logits(e.model, e.small_cache),
             KeyError, "'ln_final.hook_normalized' is not in this cache"),
        Case(D + "resolve_target", "None without logits", lambda e: dla.resolve_target(e.model, e.tokens, None),
             ValueError, "target=None needs the logits"),
        Case(D + "resolve_target", "bool target", lambda e: dla.resolve_target(e.model, e.tokens, True),
             TypeError, "got True"),
        Case(D + "resolve_target", "list of str", lambda e: dla.resolve_target(e.model, e.tokens, ["a", "b"]),
             TypeError, "target must be a token id, a character or an id tensor"),
    ]  # fmt: skip


def _attention_cases() -> list[Case]:
    A = "interp.observe.attention."
    nan_pattern = [("blocks.0.attn.hook_pattern", nan_hook)]
    return [
        Case(A + "head_scores", "float tokens", lambda e: attention.head_scores(e.model, e.tokens.float()),
             ValueError, "tokens must be integer ids"),
        Case(A + "head_scores", "tokens do not match cache", lambda e: attention.head_scores(
            e.model, e.tokens[:, :3], e.cache), ValueError, "tokens (2, 3) do not match the cached patterns"),
        Case(A + "head_scores", "cache lacks patterns", lambda e: attention.head_scores(
            e.model, e.tokens, e.small_cache), KeyError, "'blocks.0.attn.hook_pattern' is not in this cache"),
        Case(A + "head_scores", "cache is a dict", lambda e: attention.head_scores(e.model, e.tokens, {"a": 1}),
             TypeError, "cache must be an ActivationCache"),
        Case(A + "head_scores", "NaN weight", lambda e: attention.head_scores(e.nan_model, e.tokens), ValueError,
             "head_scores needs finite values, but parameter 'blocks.1.attn.W_Q'"),
        Case(A + "head_scores", "NaN pattern from a hook", lambda e: attention.head_scores(
            e.model, e.tokens, e.model.run_with_cache(e.tokens, fwd_hooks=nan_pattern)[1]), ValueError,
            "activation 'blocks.0.attn.hook_pattern'"),
        Case(A + "classify_heads", "not a frame", lambda e: attention.classify_heads([1, 2]), TypeError,
             "scores must be the DataFrame of head_scores, got list"),
        Case(A + "classify_heads", "misspelt threshold", lambda e: attention.classify_heads(
            attention.head_scores(e.model, e.tokens), {"inductoin": 0.3}), KeyError,
            "unknown head kinds ['inductoin']"),
        Case(A + "classify_heads", "str threshold", lambda e: attention.classify_heads(
            attention.head_scores(e.model, e.tokens), {"induction": "high"}), TypeError,
            "threshold for 'induction' must be a number, got 'high'"),
        Case(A + "classify_heads", "NaN threshold", lambda e: attention.classify_heads(
            attention.head_scores(e.model, e.tokens), {"induction": float("nan")}), TypeError, "got nan"),
        Case(A + "classify_heads", "missing columns", lambda e: attention.classify_heads(pd.DataFrame(
            {"induction": [0.5]})), KeyError, "scores lack the columns"),
        Case(A + "classify_heads", "text scores", lambda e: attention.classify_heads(pd.DataFrame(
            {k: ["a"] for k in attention.THRESHOLDS})), TypeError, "are not numeric"),
        Case(A + "attention_pattern_frame", "layer 2", lambda e: attention.attention_pattern_frame(
            e.model, e.cache, e.tokens, 2, 0), IndexError, "layer 2 is out of range"),
        Case(A + "attention_pattern_frame", "head -1", lambda e: attention.attention_pattern_frame(
            e.model, e.cache, e.tokens, 0, -1), IndexError, "head -1 is out of range: the model has 4 heads"),
        Case(A + "attention_pattern_frame", "layer 0.5", lambda e: attention.attention_pattern_frame(
            e.model, e.cache, e.tokens, 0.5, 0), TypeError, "layer must be an int, got 0.5"),
        Case(A + "attention_pattern_frame", "batch 2", lambda e: attention.attention_pattern_frame(
            e.model, e.cache, e.tokens, 0, 0, batch=2), IndexError, "batch=2 is out of range for 2 sequences"),
        Case(A + "attention_pattern_frame", "tokens do not match cache", lambda e: attention.attention_pattern_frame(
            e.model, e.cache, e.tokens[:1, :3], 0, 0), ValueError, "do not match the cached patterns"),
        Case(A + "attention_pattern_frame", "NaN pattern", lambda e: attention.attention_pattern_frame(
            e.nan_model, e.nan_model.run_with_cache(e.tokens)[1], e.tokens, 1, 0), ValueError,
            "attention_pattern_frame needs finite values"),
    ]  # fmt: skip


def _circuits_cases() -> list[Case]:
    C = "interp.weights.circuits."
    fm = FactoredMatrix(torch.ones(3, 2), torch.ones(2, 4))
    return [
        Case(C + "qk_matrix", "layer 2", lambda e: circuits.qk_matrix(e.model, 2, 0), IndexError,
             "layer 2 is out of range: the model has 2 layers (valid 0..1)"),
        Case(C + "qk_matrix", "head 4", lambda e: circuits.qk_matrix(e.model, 0, 4), IndexError,
             "head 4 is out of range: the model has 4 heads (valid 0..3)"),
        Case(C + "qk_matrix", "head '1'", lambda e: circuits.qk_matrix(e.model, 0, "1"), TypeError,
             "head must be an int, got '1' (str)"),
        Case(C + "ov_matrix", "layer True", lambda e: circuits.ov_matrix(e.model, True, 0), TypeError, "(bool)"),
        Case(C + "ov_matrix", "NaN weight", lambda e: circuits.ov_matrix(e.nan_model, 1), ValueError,
             "circuit analysis of layer 1 needs finite values, but parameter 'blocks.1.attn.W_Q'"),
        Case(C + "qk_circuit", "NaN weight", lambda e: circuits.qk_circuit(e.nan_model, 1, 0), ValueError,
             "parameter 'blocks.1.attn.W_Q' holds 1 NaN/inf"),
        Case(C + "qk_circuit", "layer -1", lambda e: circuits.qk_circuit(e.model, -1, 0), IndexError, "layer -1"),
        Case(C + "ov_circuit", "head 1.0", lambda e: circuits.ov_circuit(e.model, 0, 1.0), TypeError,
             "head must be an int, got 1.0"),
        Case(C + "ov_circuit", "model is a dict", lambda e: circuits.ov_circuit({}, 0, 0), TypeError,
             "model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got dict"),
        Case(C + "copying_scores", "NaN weight", lambda e: circuits.copying_scores(e.nan_model), ValueError,
             "parameter 'blocks.1.attn.W_Q'"),
        Case(C + "copying_scores", "id 64", lambda e: circuits.copying_scores(e.model, [64]), ValueError,
             "token_ids must be a non-empty list of ids in [0, 64)"),
        Case(C + "copying_scores", "empty ids", lambda e: circuits.copying_scores(e.model, []), ValueError,
             "non-empty"),
        Case(C + "copying_scores", "float ids", lambda e: circuits.copying_scores(e.model, [1.5]), TypeError,
             "every entry of token_ids must be an int, got 1.5"),
        Case(C + "copying_scores", "ids as a str", lambda e: circuits.copying_scores(e.model, "abc"), TypeError,
             "token_ids must be a list of ints, got str"),
        Case(C + "copying_scores", "chunk 0", lambda e: circuits.copying_scores(e.model, chunk=0), ValueError,
             "chunk must be >= 1, got 0"),
        Case(C + "composition_scores", "n_draws 0", lambda e: circuits.composition_scores(e.model, n_draws=0),
             ValueError, "n_draws must be a positive int"),
        Case(C + "composition_scores", "seed 'a'", lambda e: circuits.composition_scores(e.model, seed="a"),
             TypeError, "seed must be an int, got 'a'"),
        Case(C + "composition_scores", "NaN weight", lambda e: circuits.composition_scores(e.nan_model),
             ValueError, "needs finite values"),
        Case(C + "composition_score", "plain tensors", lambda e: circuits.composition_score(torch.eye(3),
             torch.eye(3)), TypeError, "composition_score takes two FactoredMatrix"),
        Case(C + "FactoredMatrix", "factors do not chain", lambda e: FactoredMatrix(torch.ones(3, 2),
             torch.ones(3, 2)), ValueError, "do not chain: need A [..., m, r], B [..., r, n]"),
        Case(C + "FactoredMatrix", "lists", lambda e: FactoredMatrix([[1.0]], [[1.0]]), TypeError,
             "FactoredMatrix needs two tensors, got list and list"),
        Case(C + "FactoredMatrix", "integer factors", lambda e: FactoredMatrix(torch.ones(3, 2, dtype=torch.long),
             torch.ones(2, 4, dtype=torch.long)), TypeError, "must share one floating-point dtype"),
        Case(C + "FactoredMatrix", "mixed dtypes", lambda e: FactoredMatrix(torch.ones(3, 2), torch.ones(2, 4,
             dtype=torch.float64)), TypeError, "got torch.float32 and torch.float64"),
        Case(C + "FactoredMatrix", "batch axes do not broadcast", lambda e: FactoredMatrix(torch.ones(2, 3, 2),
             torch.ones(3, 2, 4)), ValueError, "leading (batch) axes"),
        Case(C + "FactoredMatrix.__matmul__", "tensor of wrong size", lambda e: fm @ torch.ones(3, 3), ValueError,
             "cannot multiply (3, 4) @ (3, 3)"),
        Case(C + "FactoredMatrix.__matmul__", "factored of wrong size", lambda e: fm @ fm, ValueError,
             "the inner dimensions differ"),
        Case(C + "FactoredMatrix.__rmatmul__", "tensor of wrong size", lambda e: torch.ones(5, 5) @ fm, ValueError,
             "cannot multiply (5, 5) @ (3, 4)"),
        Case(C + "FactoredMatrix.diag", "not square", lambda e: fm.diag(), ValueError,
             "diag needs a square matrix, this one is (3, 4)"),
        Case(C + "FactoredMatrix.eigenvalues", "not square", lambda e: fm.eigenvalues(), ValueError, "square"),
    ]  # fmt: skip


def _export_cases() -> list[Case]:
    X = "interp.common.export."

    def write(tmp, name, text):
        path = tmp / name
        path.write_text(text)
        return path

    header = "batch,pos,target,component,layer,head,contribution\n"
    return [
        Case(X + "contributions_to_csv", "not a frame", lambda e: export.contributions_to_csv([1], e.tmp / "a.csv"),
             TypeError, "expected a pandas DataFrame, got list"),
        Case(X + "contributions_to_csv", "missing column", lambda e: export.contributions_to_csv(
            e.frame.drop(columns="pos"), e.tmp / "a.csv"), ValueError, "the frame lacks the required columns ['pos']"),
        Case(X + "contributions_to_csv", "text layer column", lambda e: export.contributions_to_csv(
            e.frame.assign(layer="x"), e.tmp / "a.csv"), ValueError, "column 'layer' has dtype"),
        Case(X + "contributions_to_csv", "NaN contributions", lambda e: export.contributions_to_csv(
            e.frame.assign(contribution=float("nan")), e.tmp / "a.csv"), ValueError,
            "84 contributions are NaN or inf (first at row 0)"),
        Case(X + "contributions_to_csv", "missing directory", lambda e: export.contributions_to_csv(
            e.frame, e.tmp / "no" / "a.csv"), FileNotFoundError, "does not exist"),
        Case(X + "write_csv_atomic", "not a frame", lambda e: export.write_csv_atomic({"a": 1}, e.tmp / "a.csv"),
             TypeError, "expected a pandas DataFrame, got dict"),
        Case(X + "write_csv_atomic", "path None", lambda e: export.write_csv_atomic(e.frame, None), TypeError,
             "path must be a str or a path, got NoneType"),
        Case(X + "write_csv_atomic", "path is a directory", lambda e: export.write_csv_atomic(e.frame, e.tmp),
             ValueError, "is a directory"),
        Case(X + "read_contributions_csv", "missing file", lambda e: export.read_contributions_csv(
            e.tmp / "none.csv"), FileNotFoundError, "no contributions CSV at"),
        Case(X + "read_contributions_csv", "path None", lambda e: export.read_contributions_csv(None), TypeError,
             "path must be a str or a path, got NoneType"),
        Case(X + "read_contributions_csv", "other columns", lambda e: export.read_contributions_csv(write(
            e.tmp, "other.csv", "a,b\n1,2\n")), ValueError, "lacks the required columns"),
        Case(X + "read_contributions_csv", "text in an int column", lambda e: export.read_contributions_csv(write(
            e.tmp, "text.csv", header + "x,1,2,a,1,1,0.5\n")), ValueError, "does not fit the schema's column types"),
        Case(X + "read_contributions_csv", "empty file", lambda e: export.read_contributions_csv(write(
            e.tmp, "empty.csv", "")), ValueError, "is not a readable contributions CSV"),
    ]  # fmt: skip


def _checks_cases() -> list[Case]:
    K = "interp.common.checks."
    return [
        Case(K + "check_model", "a str", lambda e: checks.check_model("gpt2"), TypeError, "model must be a MiniGPT"),
        Case(K + "check_cache", "a dict", lambda e: checks.check_cache({}), TypeError, "cache must be an"),
        Case(K + "check_index", "too large", lambda e: checks.check_index(4, 4, "head"), IndexError,
             "head 4 is out of range: the model has 4 heads (valid 0..3)"),
        Case(K + "check_index", "a float", lambda e: checks.check_index(1.0, 4, "head"), TypeError,
             "head must be an int, got 1.0 (float)"),
        Case(K + "check_int", "below the minimum", lambda e: checks.check_int(0, "chunk", 1), ValueError,
             "chunk must be >= 1, got 0"),
        Case(K + "check_seed", "too large", lambda e: checks.check_seed(2**64), ValueError, "seed must be < 2**63"),
        Case(K + "require_finite", "NaN values", lambda e: checks.require_finite(torch.tensor([float("nan")]), "x",
             e.nan_model), ValueError, "x needs finite values, but parameter 'blocks.1.attn.W_Q'"),
        Case(K + "nonfinite_error", "model is None", lambda e: checks.nonfinite_error("x", None), TypeError,
             "model must be a MiniGPT"),
    ]  # fmt: skip


CASES = _residual_cases() + _dla_cases() + _attention_cases() + _circuits_cases() + _export_cases()
CASES += _checks_cases()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad_input_interp"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_raises_a_clear_typed_error(case, env):
    """The analysis refuses the bad input with a typed error naming it, and changes nothing."""
    assert_clean_failure(case, env)


def _public_names() -> set[str]:
    names = set()
    for info in pkgutil.iter_modules(interp.__path__):
        if info.name in NOT_IN_SCOPE:
            continue
        module = importlib.import_module(f"interp.{info.name}")
        for name, value in vars(module).items():
            defined_here = getattr(value, "__module__", None) == module.__name__
            if not name.startswith("_") and defined_here and (inspect.isfunction(value) or inspect.isclass(value)):
                names.add(f"{module.__name__}.{name}")
    return names


def test_every_public_interp_function_is_in_the_matrix():
    """Every public function and class of interp/ (but the CLI) has a bad-input row, so none is forgotten."""
    public = _public_names()
    assert len(public) > 60, f"found only {len(public)} public names: is the walk broken?"
    missing = sorted(public - covered_entries(CASES + INTERVENTION_CASES))
    assert not missing, f"public interp entry points without a bad-input row: {missing}; add rows to CASES"
    unknown = sorted({c.entry for c in CASES + INTERVENTION_CASES} - public - _methods(public))
    assert not unknown, f"rows for entry points that do not exist (renamed?): {unknown}"


def _methods(public: set[str]) -> set[str]:
    """``module.Class.method`` names of the public classes, for rows that target a method."""
    out = set()
    for name in public:
        module, attr = name.rsplit(".", 1)
        value = getattr(importlib.import_module(module), attr)
        if inspect.isclass(value):
            out |= {f"{name}.{m}" for m in vars(value) if inspect.isfunction(vars(value)[m])}
    return out


def test_checks_docstring_examples_run():
    """The examples in interp/checks.py run and print what they show."""
    result = doctest.testmod(checks, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, "an example of interp.common.checks fails (see output)"


def test_head_scores_nan_means_undefined_not_broken(env):
    """NaN in head_scores still means 'undefined here' (one-token input), not a refusal: only NaN patterns raise."""
    scores = attention.head_scores(env.model, env.tokens[:, :1])
    assert scores.previous_token.isna().all(), "one-token inputs must give NaN (undefined) scores"


def test_causal_mask_is_not_reported_as_non_finite(env):
    """The -inf of the causal mask in hook_attn_scores is by design: the diagnosis skips it and names the real one."""
    err = checks.nonfinite_error("x", env.model, env.nan_cache)
    assert "blocks.0.hook_attn_out" in str(err), f"wrong first non-finite activation: {err}"
