"""Bad input to the analyses of interp/ (observe, weights, common, reports), and the walk.

Each row of the matrix is one (entry point, bad input, exception type, phrase the message must contain);
see tests/bad_input_matrix.py for what every row checks (typed error raised by our own check, nothing
modified). Non-finite values: the analyses raise a ValueError naming the first non-finite parameter or,
with finite weights, the first non-finite activation in forward order (see interp/common/checks.py). The
interventions (interp.intervene and the metrics) are in tests/interp/intervene/test_bad_input_interventions.py;
the walk below checks that every public function of interp/ (but the CLI) has a row in one of the two.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pandas as pd
import pytest
import torch
from bad_input_matrix import Case, assert_clean_failure, build_env, covered_entries, in_hooks, nan_hook, params

import interp
from interp.common import checks, export, vocabulary
from interp.observe import attention, dla, flow, flow_reading, lens, residual
from interp.reports import card, induction
from interp.weights import composition, qk_ov
from tests.interp.compat.test_bad_input_compat import CASES as COMPAT_CASES
from tests.interp.discover.test_bad_input_discover import CASES as DISCOVER_CASES
from tests.interp.dynamics.test_bad_input_dynamics import CASES as DYNAMICS_CASES
from tests.interp.features.test_bad_input_features import CASES as FEATURE_CASES
from tests.interp.intervene.test_bad_input_interventions import CASES as INTERVENTION_CASES

NOT_IN_SCOPE = ("interp.cli",)  # the CLI and its modules: tests/interp/cli/ (CLI part of issue 8)


def _residual_cases() -> list[Case]:
    R = "interp.observe.residual."
    return [
        Case(R + "head_writes", "layer -1", lambda e: residual.head_writes(e.model, e.tokens, e.cache, layer=-1),
             IndexError, "layer -1 is out of range: the model has 2 layers (valid 0..1)"),
        Case(R + "head_writes", "layer 2", lambda e: residual.head_writes(e.model, e.tokens, e.cache, layer=2),
             IndexError, "valid 0..1"),
        Case(R + "head_writes", "layer 1.5", lambda e: residual.head_writes(e.model, e.tokens, e.cache, layer=1.5),
             TypeError, "layer must be an int, got 1.5 (float)"),
        Case(R + "head_writes", "layer '0'", lambda e: residual.head_writes(e.model, e.tokens, e.cache, layer="0"),
             TypeError, "layer must be an int, got '0' (str)"),
        Case(R + "head_writes", "cache is a dict", lambda e: residual.head_writes(e.model, e.tokens, dict(e.cache),
             layer=0), TypeError, "cache must be an ActivationCache from model.run_with_cache, got dict"),
        Case(R + "head_writes", "cache where the tokens go", lambda e: residual.head_writes(e.model, e.cache,
             layer=0), TypeError, "head_writes takes (model, tokens, cache=None): the cache was passed where the "
             "tokens go"),
        Case(R + "residual_stack", "post-norm model", lambda e: residual.residual_stack(e.post, e.tokens, e.cache),
             ValueError, "norm='post' re-normalises the whole residual stream"),
        Case(R + "residual_stack", "cache lacks hook_z", lambda e: residual.residual_stack(
            e.model, e.tokens, e.small_cache), KeyError, "'blocks.0.attn.hook_z' is not in this cache"),
        Case(R + "residual_stack", "cache where the tokens go", lambda e: residual.residual_stack(e.model, e.cache),
             TypeError, "residual_stack takes (model, tokens, cache=None): the cache was passed where the tokens go"),
        Case(R + "residual_stack", "tokens None", lambda e: residual.residual_stack(e.model, None), ValueError,
             "tokens must be a tensor or list of integer ids, got NoneType"),
        Case(R + "residual_stack", "tokens do not match cache", lambda e: residual.residual_stack(
            e.model, e.tokens[:, :4], e.cache), ValueError,
            "tokens have shape (2, 4) but the cache was recorded on other tokens"),
        Case(R + "residual_stack", "model is a str", lambda e: residual.residual_stack("gpt", e.tokens, e.cache),
             TypeError, "model must be a MiniGPT"),
        Case(R + "residual_stack", "per_head is a str", lambda e: residual.residual_stack(
            e.model, e.tokens, e.cache, "no"), TypeError, "per_head must be True or False"),
        Case(R + "residual_stack", "NaN weight", lambda e: residual.residual_stack(
            e.nan_model, e.tokens, e.nan_model.run_with_cache(e.tokens)[1]), ValueError,
            "residual_stack needs finite values, but parameter 'blocks.1.attn.W_Q' holds 1 NaN/inf"),
        Case(R + "residual_stack", "NaN activation from a hook", lambda e: residual.residual_stack(
            e.model, e.tokens, e.nan_cache), ValueError, "activation 'blocks.0.hook_attn_out' holds 384 NaN/inf"),
        Case(R + "write_norms", "NaN activation", lambda e: residual.write_norms(e.model, e.tokens, e.nan_cache),
             ValueError, "write_norms needs finite values, but activation 'blocks.0.hook_attn_out'"),
        Case(R + "write_norms", "cache is a list", lambda e: residual.write_norms(e.model, e.tokens, [1]), TypeError,
             "got list"),
        Case(R + "write_norms", "cache where the tokens go", lambda e: residual.write_norms(e.model, e.cache),
             TypeError, "write_norms takes (model, tokens, cache=None)"),
        Case(R + "accumulated_resid", "cache lacks resid_pre", lambda e: residual.accumulated_resid(
            e.model, e.tokens, e.small_cache), KeyError, "'blocks.0.hook_resid_pre' is not in this cache"),
        Case(R + "accumulated_resid", "inf weight", lambda e: residual.accumulated_resid(
            e.inf_model, e.tokens, e.inf_model.run_with_cache(e.tokens)[1]), ValueError,
            "parameter 'blocks.0.mlp.W_in' holds 1 NaN/inf"),
        Case(R + "accumulated_resid", "cache where the tokens go", lambda e: residual.accumulated_resid(
            e.model, e.cache), TypeError, "accumulated_resid takes (model, tokens, cache=None)"),
        Case(R + "long_frame", "2-d values", lambda e: residual.long_frame(torch.zeros(2, 3), pd.DataFrame(
            {"a": [1, 2]}), "v"), ValueError, "long_frame needs values [component, batch, pos]"),
        Case(R + "long_frame", "labels do not match", lambda e: residual.long_frame(torch.zeros(2, 1, 3),
             pd.DataFrame({"a": [1, 2, 3]}), "v"), ValueError, "got values (2, 1, 3) and 3 label rows"),
        Case(R + "long_frame", "per_position shape", lambda e: residual.long_frame(torch.zeros(2, 1, 3),
             pd.DataFrame({"a": [1, 2]}), "v", {"t": torch.zeros(2)}), ValueError,
             "per_position['t'] has shape (2,), expected (1, 3)"),
        Case(R + "require_additive", "post-norm model", lambda e: residual.require_additive(e.post, "this"),
             ValueError, "this is not defined for this model"),
        Case(R + "final_resid_name", "model is None", lambda e: residual.final_resid_name(None), TypeError,
             "model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got NoneType"),
        Case(R + "label_frame", "rows of unequal length", lambda e: residual.label_frame([("embed", None, None,
             "embed"), ("L0H0", 0, 0)]), ValueError, "label rows must all be (component, layer, head, [neuron,] "
             "component_type)"),
        Case(R + "label_frame", "rows is an int", lambda e: residual.label_frame(3), TypeError,
             "label rows must be a list of tuples, got int"),
        Case(R + "pos_strings", "tokens as a list", lambda e: residual.pos_strings(e.model, [1, 2]), TypeError,
             "tokens must be a [batch, pos] tensor of ids, got list"),
    ]  # fmt: skip


def _dla_cases() -> list[Case]:
    D, L = "interp.observe.dla.", "interp.observe.lens."

    def run(model=None, cache="env", tokens=None, **kw):
        return lambda e: dla.direct_logit_attribution(
            model or e.model, e.tokens if tokens is None else tokens, e.cache if cache == "env" else cache, **kw
        )

    return [
        Case(D + "direct_logit_attribution", "unknown per", run(per="heads"), ValueError,
             "per='heads' is not one of ['layer', 'component', 'head', 'neuron']"),
        Case(D + "direct_logit_attribution", "tokens do not match cache", lambda e: dla.direct_logit_attribution(
            e.model, e.tokens[:, :3], e.cache), ValueError, "tokens have shape (2, 3) but the cache was recorded"),
        Case(D + "direct_logit_attribution", "cache where the tokens go", lambda e: dla.direct_logit_attribution(
            e.model, e.cache, e.tokens), TypeError, "direct_logit_attribution takes (model, tokens, cache=None): "
            "the cache was passed where the tokens go; call it as f(model, tokens, cache)"),
        Case(D + "direct_logit_attribution", "float tokens", lambda e: dla.direct_logit_attribution(
            e.model, e.tokens.float(), e.cache), ValueError, "tokens must be integer ids"),
        Case(D + "direct_logit_attribution", "cache is a dict", lambda e: dla.direct_logit_attribution(
            e.model, e.tokens, dict(e.cache)), TypeError, "cache must be an ActivationCache"),
        Case(D + "direct_logit_attribution", "cache lacks the final residual", lambda e: dla.direct_logit_attribution(
            e.model, e.tokens, e.small_cache), KeyError, "'blocks.1.hook_resid_post' is not in this cache"),
        Case(D + "direct_logit_attribution", "target id 64", run(target=64), ValueError,
             "target ids [64] are outside the vocabulary [0, 64)"),
        Case(D + "direct_logit_attribution", "contrast id -1", run(target=3, contrast=-1), ValueError,
             "contrast ids [-1] are outside"),
        Case(D + "direct_logit_attribution", "two-character target", run(target="ab"), ValueError,
             "target must be exactly one character (or one of ['<bos>', '<pad>', '<unk>']), got 'ab'"),
        Case(D + "direct_logit_attribution", "unknown special's name", run(target="<eos>"), ValueError,
             "target must be exactly one character (or one of ['<bos>', '<pad>', '<unk>']), got '<eos>'"),
        Case(D + "direct_logit_attribution", "unknown character target", run(target="é"), ValueError,
             "1 unknown character: 'é'"),
        Case(D + "direct_logit_attribution", "float target", run(target=1.5), TypeError,
             "target must be a token id, a character or an id tensor, got 1.5"),
        Case(D + "direct_logit_attribution", "target shape", run(target=torch.zeros(3, dtype=torch.long)),
             ValueError, "target has shape (3,), not broadcastable to tokens (2, 6)"),
        Case(D + "direct_logit_attribution", "float target tensor", run(target=torch.zeros(2, 6)), TypeError,
             "target must hold integer token ids"),
        Case(D + "direct_logit_attribution", "post-norm model", lambda e: dla.direct_logit_attribution(
            e.post, e.tokens), ValueError, "direct logit attribution is not defined for this model"),
        Case(D + "direct_logit_attribution", "NaN weight", lambda e: dla.direct_logit_attribution(
            e.nan_model, e.tokens), ValueError,
            "direct logit attribution needs finite values, but parameter 'blocks.1.attn.W_Q' holds 1 NaN/inf"),
        Case(D + "direct_logit_attribution", "inf weight", lambda e: dla.direct_logit_attribution(
            e.inf_model, e.tokens), ValueError, "parameter 'blocks.0.mlp.W_in'"),
        Case(D + "direct_logit_attribution", "NaN activation in the cache", lambda e: dla.direct_logit_attribution(
            e.model, e.tokens, e.nan_cache), ValueError,
             "activation 'blocks.0.hook_attn_out' holds 384 NaN/inf of 384 entries"),
        Case(D + "direct_logit_attribution", "NaN from an active hook", lambda e: in_hooks(
            e.model, [("blocks.1.hook_mlp_out", nan_hook)], lambda: dla.direct_logit_attribution(
                e.model, e.tokens)), ValueError, "activation 'blocks.1.hook_mlp_out'"),
        Case(D + "logit_difference", "no contrast", lambda e: dla.logit_difference(e.model, e.tokens, e.cache, 3,
             None), ValueError, "logit_difference needs a contrast token"),
        Case(D + "logit_difference", "NaN activation", lambda e: dla.logit_difference(
            e.model, e.tokens, e.nan_cache, 3, 4), ValueError, "logit_difference needs finite values"),
        Case(D + "logit_difference", "cache where the tokens go", lambda e: dla.logit_difference(
            e.model, e.cache, e.tokens, 3, 4), TypeError, "logit_difference takes (model, tokens, cache=None)"),
        Case(L + "logit_lens", "k = 0", lambda e: lens.logit_lens(e.model, e.tokens, e.cache, k=0), ValueError,
             "k must be an int in [1, 64], got 0"),
        Case(L + "logit_lens", "k = 65", lambda e: lens.logit_lens(e.model, e.tokens, e.cache, k=65), ValueError,
             "got 65"),
        Case(L + "logit_lens", "NaN activation", lambda e: lens.logit_lens(e.model, e.tokens, e.nan_cache),
             ValueError, "needs finite values, but activation 'blocks.0.hook_attn_out'"),
        Case(L + "logit_lens", "mismatched batch", lambda e: lens.logit_lens(e.model, e.tokens[:1], e.cache),
             ValueError, "tokens have shape (1, 6) but the cache was recorded on other tokens (hook_embed has shape "
             "(2, 6, 32), expected (1, 6, 32))"),
        Case(L + "logit_lens", "cache where the tokens go", lambda e: lens.logit_lens(e.model, e.cache, e.tokens),
             TypeError, "logit_lens takes (model, tokens, cache=None): the cache was passed where the tokens go"),
        Case(L + "logit_lens", "target id 64", lambda e: lens.logit_lens(e.model, e.tokens, e.cache, target=64),
             ValueError, "target ids [64] are outside the vocabulary [0, 64)"),
        Case(L + "next_token_distribution", "pos 6 of 6", lambda e: lens.next_token_distribution(e.model, e.tokens, 6,
             cache=e.cache), IndexError, "(batch, pos) = (0, 6) is out of range for tokens of shape (2, 6)"),
        Case(L + "next_token_distribution", "batch 2 of 2", lambda e: lens.next_token_distribution(e.model, e.tokens,
             batch=2), IndexError, "(batch, pos) = (2, -1) is out of range"),
        Case(L + "next_token_distribution", "temperature -1", lambda e: lens.next_token_distribution(e.model,
             e.tokens, temperature=-1.0), ValueError, "temperature must be >= 0 and finite, got -1.0"),
        Case(L + "next_token_distribution", "cache lacks the final residual", lambda e: lens.next_token_distribution(
             e.model, e.tokens, cache=e.small_cache), KeyError, "'blocks.1.hook_resid_post' is not in this cache"),
        Case(L + "next_token_distribution", "model is a str", lambda e: lens.next_token_distribution("gpt2",
             e.tokens), TypeError, "model must be a MiniGPT"),
        Case(D + "contributions_at", "not a DLA frame", lambda e: dla.contributions_at(pd.DataFrame({"pos": [0]}), 0),
             TypeError, "frame must be the frame of direct_logit_attribution"),
        Case(D + "contributions_at", "pos 6 of 6", lambda e: dla.contributions_at(e.frame, 6), IndexError,
             "the frame has no rows at batch 0, pos 6; it covers positions 0..5 of 2 sequence(s)"),
        Case(D + "contributions_at", "top 0", lambda e: dla.contributions_at(e.frame, 0, top=0), ValueError,
             "top must be >= 1, got 0"),
        Case(D + "contributions_at", "float pos", lambda e: dla.contributions_at(e.frame, 1.5), TypeError,
             "pos must be an int, got 1.5"),
        Case(D + "final_logits", "cache where the tokens go", lambda e: dla.final_logits(e.model, e.cache),
             TypeError, "final_logits takes (model, tokens, cache=None): the cache was passed where the tokens go"),
        Case(D + "final_logits", "cache is a list", lambda e: dla.final_logits(e.model, e.tokens, [1]), TypeError,
             "cache must be an ActivationCache from model.run_with_cache, got list"),
        Case(D + "final_logits", "cache lacks the final residual", lambda e: dla.final_logits(e.model, e.tokens,
             e.small_cache), KeyError, "'blocks.1.hook_resid_post' is not in this cache"),
        Case(D + "readout_directions", "cache lacks ln_final's scale", lambda e: dla.readout_directions(
             e.model, e.small_cache, e.tokens, None), KeyError, "'ln_final.hook_scale' is not in this cache"),
        Case(D + "cache_logits", "cache lacks the final residual", lambda e: dla.cache_logits(e.model, e.small_cache),
             KeyError, "'blocks.1.hook_resid_post' is not in this cache; the logits are read out from the final"),
        Case(D + "resolve_target", "None without logits", lambda e: dla.resolve_target(e.model, e.tokens, None),
             ValueError, "target=None needs the logits"),
        Case(D + "resolve_target", "bool target", lambda e: dla.resolve_target(e.model, e.tokens, True),
             TypeError, "got True"),
        Case(D + "resolve_target", "list of str", lambda e: dla.resolve_target(e.model, e.tokens, ["a", "b"]),
             TypeError, "target must be a token id, a character or an id tensor"),
        Case(D + "token_columns", "target as a list", lambda e: dla.token_columns(e.model, [1, 2]), TypeError,
             "target must be a tensor of token ids, got list"),
        Case(D + "token_columns", "contrast as an int", lambda e: dla.token_columns(e.model, e.tokens, 3), TypeError,
             "contrast must be a tensor of token ids, got int"),
    ]  # fmt: skip


def _attention_cases() -> list[Case]:
    A = "interp.observe.attention."
    nan_pattern = [("blocks.0.attn.hook_pattern", nan_hook)]
    return [
        Case(A + "head_scores", "float tokens", lambda e: attention.head_scores(e.model, e.tokens.float()),
             ValueError, "tokens must be integer ids"),
        Case(A + "head_scores", "tokens do not match cache", lambda e: attention.head_scores(
            e.model, e.tokens[:, :3], e.cache), ValueError,
            "tokens have shape (2, 3) but the cache was recorded on other tokens"),
        Case(A + "head_scores", "cache where the tokens go", lambda e: attention.head_scores(e.model, e.cache),
             TypeError, "head_scores takes (model, tokens, cache=None): the cache was passed where the tokens go"),
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
        Case(A + "classification_note", "not a frame", lambda e: attention.classification_note([0.5]), TypeError,
             "scores must be the DataFrame of head_scores"),
        Case(A + "classification_note", "no induction column", lambda e: attention.classification_note(
            pd.DataFrame({"previous_token": [0.5]})), TypeError, "with an induction column"),
        Case(A + "classify_heads", "text scores", lambda e: attention.classify_heads(pd.DataFrame(
            {k: ["a"] for k in attention.THRESHOLDS})), TypeError, "are not numeric"),
        Case(A + "attention_pattern_frame", "layer 2", lambda e: attention.attention_pattern_frame(
            e.model, e.tokens, e.cache, layer=2, head=0), IndexError, "layer 2 is out of range"),
        Case(A + "attention_pattern_frame", "head -1", lambda e: attention.attention_pattern_frame(
            e.model, e.tokens, e.cache, layer=0, head=-1), IndexError,
            "head -1 is out of range: the model has 4 heads"),
        Case(A + "attention_pattern_frame", "layer 0.5", lambda e: attention.attention_pattern_frame(
            e.model, e.tokens, e.cache, layer=0.5, head=0), TypeError, "layer must be an int, got 0.5"),
        Case(A + "attention_pattern_frame", "batch 2", lambda e: attention.attention_pattern_frame(
            e.model, e.tokens, e.cache, layer=0, head=0, batch=2), IndexError,
            "batch=2 is out of range for 2 sequences"),
        Case(A + "attention_pattern_frame", "tokens do not match cache", lambda e: attention.attention_pattern_frame(
            e.model, e.tokens[:1, :3], e.cache, layer=0, head=0), ValueError,
            "tokens have shape (1, 3) but the cache was recorded on other tokens"),
        Case(A + "attention_pattern_frame", "cache where the tokens go", lambda e: attention.attention_pattern_frame(
            e.model, e.cache, e.tokens, layer=0, head=0), TypeError,
            "attention_pattern_frame takes (model, tokens, cache=None)"),
        Case(A + "attention_pattern_frame", "NaN pattern", lambda e: attention.attention_pattern_frame(
            e.nan_model, e.tokens, e.nan_model.run_with_cache(e.tokens)[1], layer=1, head=0), ValueError,
            "attention_pattern_frame needs finite values"),
    ]  # fmt: skip


def _circuits_cases() -> list[Case]:
    C = "interp.weights.qk_ov."
    return [
        Case(C + "qk_matrix", "layer 2", lambda e: qk_ov.qk_matrix(e.model, 2, 0), IndexError,
             "layer 2 is out of range: the model has 2 layers (valid 0..1)"),
        Case(C + "qk_matrix", "head 4", lambda e: qk_ov.qk_matrix(e.model, 0, 4), IndexError,
             "head 4 is out of range: the model has 4 heads (valid 0..3)"),
        Case(C + "qk_matrix", "head '1'", lambda e: qk_ov.qk_matrix(e.model, 0, "1"), TypeError,
             "head must be an int, got '1' (str)"),
        Case(C + "ov_matrix", "layer True", lambda e: qk_ov.ov_matrix(e.model, True, 0), TypeError, "(bool)"),
        Case(C + "ov_matrix", "NaN weight", lambda e: qk_ov.ov_matrix(e.nan_model, 1), ValueError,
             "QK / OV of layer 1 needs finite values, but parameter 'blocks.1.attn.W_Q'"),
        Case(C + "full_qk", "NaN weight", lambda e: qk_ov.full_qk(e.nan_model, 1, 0), ValueError,
             "parameter 'blocks.1.attn.W_Q' holds 1 NaN/inf"),
        Case(C + "full_qk", "layer -1", lambda e: qk_ov.full_qk(e.model, -1, 0), IndexError, "layer -1"),
        Case(C + "full_ov", "head 1.0", lambda e: qk_ov.full_ov(e.model, 0, 1.0), TypeError,
             "head must be an int, got 1.0"),
        Case(C + "full_ov", "model is a dict", lambda e: qk_ov.full_ov({}, 0, 0), TypeError,
             "model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got dict"),
        Case(C + "copying_scores", "NaN weight", lambda e: qk_ov.copying_scores(e.nan_model), ValueError,
             "parameter 'blocks.1.attn.W_Q'"),
        Case(C + "copying_scores", "id 64", lambda e: qk_ov.copying_scores(e.model, [64]), ValueError,
             "token_ids must be a non-empty list of ids in [0, 64)"),
        Case(C + "copying_scores", "empty ids", lambda e: qk_ov.copying_scores(e.model, []), ValueError,
             "non-empty"),
        Case(C + "copying_scores", "float ids", lambda e: qk_ov.copying_scores(e.model, [1.5]), TypeError,
             "every entry of token_ids must be an int, got 1.5"),
        Case(C + "copying_scores", "ids as a str", lambda e: qk_ov.copying_scores(e.model, "abc"), TypeError,
             "token_ids must be a list of ints, got str"),
        Case(C + "copying_scores", "chunk 0", lambda e: qk_ov.copying_scores(e.model, chunk=0), ValueError,
             "chunk must be >= 1, got 0"),
    ]  # fmt: skip


def _composition_cases() -> list[Case]:
    W = "interp.weights.composition."
    return [
        Case(W + "composition_scores", "n_draws 0", lambda e: composition.composition_scores(e.model, n_draws=0),
             ValueError, "n_draws must be a positive int"),
        Case(W + "composition_scores", "seed 'a'", lambda e: composition.composition_scores(e.model, seed="a"),
             TypeError, "seed must be an int, got 'a'"),
        Case(W + "composition_scores", "NaN weight", lambda e: composition.composition_scores(e.nan_model),
             ValueError, "needs finite values"),
        Case(W + "composition_scores", "model is a str", lambda e: composition.composition_scores("gpt2"),
             TypeError, "model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got str"),
        Case(W + "composition_score", "plain tensors", lambda e: composition.composition_score(torch.eye(3),
             torch.eye(3)), TypeError, "composition_score takes two FactoredMatrix"),
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
        Case(K + "prepare", "cache where the tokens go", lambda e: checks.prepare(e.model, e.cache, e.tokens,
             what="my analysis"), TypeError, "my analysis takes (model, tokens, cache=None): the cache was passed "
             "where the tokens go; call it as f(model, tokens, cache)"),
        Case(K + "prepare", "tokens do not match cache", lambda e: checks.prepare(e.model, e.tokens[:, :2], e.cache),
             ValueError, "tokens have shape (2, 2) but the cache was recorded on other tokens (hook_embed has shape "
             "(2, 6, 32), expected (2, 2, 32)); pass the tokens the cache was recorded on"),
        Case(K + "prepare", "model is a str", lambda e: checks.prepare("gpt2", e.tokens), TypeError,
             "model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got str"),
        Case(K + "prepare", "cache is a dict", lambda e: checks.prepare(e.model, e.tokens, dict(e.cache)), TypeError,
             "cache must be an ActivationCache from model.run_with_cache, got dict"),
        Case(K + "prepare", "float tokens", lambda e: checks.prepare(e.model, e.tokens.float()), ValueError,
             "tokens must be integer ids, got dtype torch.float32"),
        Case(K + "prepare", "text with an unknown character", lambda e: checks.prepare(e.model, "naïve"), ValueError,
             "the text: 1 unknown character: 'ï' at position 2"),
        Case(K + "prepare", "names_filter is an int", lambda e: checks.prepare(e.model, e.tokens, names_filter=3),
             TypeError, "expected a hook name, a list of names or a predicate, got int"),
    ]  # fmt: skip


def _vocabulary_cases() -> list[Case]:
    V = "interp.common.vocabulary."
    return [
        Case(V + "nullable_ints", "text values", lambda e: vocabulary.nullable_ints(["a", 1]), ValueError,
             "nullable_ints takes integers or None (<NA>)"),
        Case(V + "nullable_ints", "not a list", lambda e: vocabulary.nullable_ints(3), TypeError,
             "nullable_ints takes a list of integers or None, got int"),
        Case(V + "undocumented", "an int", lambda e: vocabulary.undocumented(3), TypeError,
             "columns must be a list of column names, got int"),
        Case(V + "undocumented", "one str", lambda e: vocabulary.undocumented("layer"), TypeError,
             "columns must be a list of column names, got str"),
        Case(V + "Column", "dtype is a type", lambda e: vocabulary.Column(int, "an id"), TypeError,
             "a Column's dtype and meaning must be str, got type and str"),
    ]  # fmt: skip


def _report_cases() -> list[Case]:
    I = "interp.reports.induction."  # noqa: E741
    return [
        Case(I + "induction_report", "model is a str", lambda e: induction.induction_report("induction-2l"),
             TypeError, "model must be a MiniGPT (e.g. MiniGPT.from_pretrained(...)), got str"),
        Case(I + "induction_report", "n_seq 0", lambda e: induction.induction_report(e.model, n_seq=0), ValueError,
             "n_seq must be >= 1, got 0"),
        Case(I + "induction_report", "float seed", lambda e: induction.induction_report(e.model, seed=1.5),
             TypeError, "seed must be an int, got 1.5 (float)"),
        Case(I + "induction_report", "probe longer than n_ctx", lambda e: induction.induction_report(e.model,
             n_seq=2), ValueError, "31 tokens is longer than the context n_ctx=16"),
        Case("interp.reports.card.describe_final_eval", "a list", lambda e: card.describe_final_eval([1]), TypeError,
             "final_eval must be the dict of a checkpoint's provenance, got list"),
        Case("interp.reports.card.describe_final_eval", "text loss", lambda e: card.describe_final_eval(
            {"second_copy_loss": "low"}), TypeError, "final_eval['second_copy_loss'] = 'low' is not what"),
        Case(I + "probe_tokens", "n_seq 0", lambda e: induction.probe_tokens(0), ValueError,
             "n_seq must be >= 1, got 0"),
        Case(I + "probe_tokens", "seg_len '15'", lambda e: induction.probe_tokens(4, seg_len="15"), TypeError,
             "seg_len must be an int, got '15' (str)"),
        Case(I + "probe_tokens", "vocabulary of specials only", lambda e: induction.probe_tokens(4, d_vocab=3),
             ValueError, "d_vocab must be >= 4, got 3"),
        Case(I + "probe_tokens", "negative seed", lambda e: induction.probe_tokens(4, seed=-1), ValueError,
             "seed must be >= 0, got -1"),
        Case(I + "copy_losses", "seg_len 0", lambda e: induction.copy_losses(0), ValueError,
             "seg_len must be >= 2, got 0"),
        Case(I + "copy_losses", "seg_len 1.5", lambda e: induction.copy_losses(1.5), TypeError,
             "seg_len must be an int, got 1.5 (float)"),
    ]  # fmt: skip


def _flow_cases() -> list[Case]:
    F, FR = "interp.observe.flow.", "interp.observe.flow_reading."
    return [
        Case(F + "information_flow", "a batch of 2", lambda e: flow.information_flow(e.model, e.tokens), ValueError,
             "information flow follows one sequence, got a batch of 2; pass tokens[i : i + 1]"),
        Case(F + "information_flow", "post-norm model", lambda e: flow.information_flow(e.post, e.tokens[:1]),
             ValueError, "norm='post' re-normalises the residual stream after every sublayer"),
        Case(F + "information_flow", "model is a str", lambda e: flow.information_flow("gpt2", e.tokens[:1]),
             TypeError, "model must be a MiniGPT"),
        Case(F + "flow_stages", "model is a str", lambda e: flow.flow_stages("gpt2"), TypeError,
             "model must be a MiniGPT"),
        Case(F + "edge_logit_effects", "a batch of 2", lambda e: flow.edge_logit_effects(e.model, e.tokens,
             flow.information_flow(e.model, e.tokens[:1]).iloc[:1]), ValueError, "follows one sequence"),
        Case(F + "edge_logit_effects", "edge into position 9 of 6", lambda e: flow.edge_logit_effects(e.model,
             e.tokens[:1], flow.information_flow(e.model, e.tokens[:1]).iloc[:1].assign(downstream_pos=9)), IndexError,
             "position 9 is out of range"),
        Case(F + "state_readout", "stage 9 of 5", lambda e: flow.state_readout(e.model, e.tokens[:1], 9, 0), IndexError,
             "stage 9 is out of range"),
        Case(F + "state_readout", "position 9 of 6", lambda e: flow.state_readout(e.model, e.tokens[:1], 0, 9),
             IndexError, "position 9 is out of range"),
        Case(F + "prepare_flow", "a post-norm model", lambda e: flow.prepare_flow(e.post, e.tokens[:1]),
             ValueError, "norm='post' re-normalises the residual stream"),
        Case(F + "prepare_flow", "a batch of 2", lambda e: flow.prepare_flow(e.model, e.tokens), ValueError,
             "information flow follows one sequence, got a batch of 2"),
        Case(F + "flow_hook_names", "model is a str", lambda e: flow.flow_hook_names("gpt2"), TypeError,
             "model must be a MiniGPT"),
        Case(F + "flow_edge", "a component that carries no edge", lambda e: flow.flow_edge(e.model, {
             "component": "L0.attn", "upstream_pos": 0, "downstream_pos": 0}, 6), ValueError,
             "edge component 'L0.attn' carries no flow edge"),
        Case(F + "FlowEdge.part", "a cache without the pattern", lambda e: flow.flow_edge(e.model, {
             "component": "L0H1", "upstream_pos": 0, "downstream_pos": 2}, 6).part(e.model, e.small_cache), KeyError,
             "'blocks.0.attn.hook_pattern' is not in this cache"),
        Case(F + "flow_routes", "not a flow frame", lambda e: flow.flow_routes(e.frame, 0), TypeError,
             "flow must be the frame of information_flow(model, tokens)"),
        Case(F + "flow_routes", "threshold 2", lambda e: flow.flow_routes(
             flow.information_flow(e.model, e.tokens[:1]), 0, threshold=2), ValueError,
             "threshold must be an importance share in [0, 1], got 2"),
        Case(F + "flow_routes", "position 9 of 6", lambda e: flow.flow_routes(
             flow.information_flow(e.model, e.tokens[:1]), 9), IndexError, "position 9 is out of range"),
        Case(FR + "top_guess", "position 9 of 6", lambda e: flow_reading.top_guess(e.model, e.tokens[:1], 9),
             IndexError, "position 9 is out of range"),
        Case(FR + "top_guess", "a batch of 2", lambda e: flow_reading.top_guess(e.model, e.tokens, 0), ValueError,
             "information flow follows one sequence"),
        Case(FR + "top_guess", "model is a str", lambda e: flow_reading.top_guess("gpt2", e.tokens[:1], 0),
             TypeError, "model must be a MiniGPT"),
        Case(FR + "flow_into", "not a flow frame", lambda e: flow_reading.flow_into(e.frame, 1, 0), TypeError,
             "flow must be the frame of information_flow(model, tokens)"),
        Case(FR + "flow_into", "stage 9 of 5", lambda e: flow_reading.flow_into(
             flow.information_flow(e.model, e.tokens[:1]), 9, 0), IndexError, "stage 9 is out of range"),
        Case(FR + "flow_into", "position 6 of 6", lambda e: flow_reading.flow_into(
             flow.information_flow(e.model, e.tokens[:1]), 1, 6), IndexError, "position 6 is out of range"),
        Case(FR + "strongest_effects", "not an effects frame", lambda e: flow_reading.strongest_effects(e.frame),
             TypeError, "effects must be the frame of edge_logit_effects"),
        Case(FR + "strongest_effects", "k 0", lambda e: flow_reading.strongest_effects(pd.DataFrame(
             {"target": [1], "logit_effect": [0.5]}), k=0), ValueError, "k must be >= 1, got 0"),
    ]  # fmt: skip


CASES = _residual_cases() + _dla_cases() + _attention_cases() + _circuits_cases() + _composition_cases()
CASES += _export_cases() + _checks_cases() + _vocabulary_cases() + _report_cases() + _flow_cases()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad_input_interp"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_raises_a_clear_typed_error(case, env):
    """The analysis refuses the bad input with a typed error naming it, and changes nothing."""
    assert_clean_failure(case, env)


def _public_names() -> set[str]:
    names = set()
    for info in pkgutil.walk_packages(interp.__path__, prefix="interp."):
        if any(info.name == room or info.name.startswith(room + ".") for room in NOT_IN_SCOPE):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            defined_here = getattr(value, "__module__", None) == module.__name__
            if not name.startswith("_") and defined_here and (inspect.isfunction(value) or inspect.isclass(value)):
                names.add(f"{module.__name__}.{name}")
    return names


def test_every_public_interp_function_is_in_the_matrix():
    """Every public function and class of interp/ (but the CLI) has a bad-input row, so none is forgotten."""
    public = _public_names()
    assert len(public) > 60, f"found only {len(public)} public names: is the walk broken?"
    rows = (
        CASES
        + INTERVENTION_CASES
        + DISCOVER_CASES
        + COMPAT_CASES
        + FEATURE_CASES
        + [c for c in DYNAMICS_CASES if c.entry.startswith("interp.")]
    )
    missing = sorted(public - covered_entries(rows))
    assert not missing, f"public interp entry points without a bad-input row: {missing}; add rows to CASES"
    unknown = sorted({c.entry for c in rows} - public - _methods(public))
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


def test_head_scores_nan_means_undefined_not_broken(env):
    """NaN in head_scores still means 'undefined here' (one-token input), not a refusal: only NaN patterns raise."""
    scores = attention.head_scores(env.model, env.tokens[:, :1])
    assert scores.previous_token.isna().all(), "one-token inputs must give NaN (undefined) scores"


def test_causal_mask_is_not_reported_as_non_finite(env):
    """The -inf of the causal mask in hook_attn_scores is by design: the diagnosis skips it and names the real one."""
    err = checks.nonfinite_error("x", env.model, env.nan_cache)
    assert "blocks.0.hook_attn_out" in str(err), f"wrong first non-finite activation: {err}"
