"""Bad input to the model API (MiniGPT, Tokenizer, ActivationCache, FactoredMatrix, token ids, sampling, checkpoints).

Each row of the matrix is one (entry point, bad input, exception type, phrase the message must contain);
see tests/bad_input_matrix.py for what every row checks (typed error raised by our own check, nothing
modified). Inputs that are *accepted* on purpose (numpy integer arrays, the empty string) and the
documented NaN propagation of the forward are checked as known answers at the end.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json

import numpy as np
import pytest
import torch
from bad_input_matrix import Case, assert_clean_failure, build_env, covered_entries, in_hooks, nan_hook, params
from conftest import make_model

from model import FactoredMatrix, MiniGPT, ModelConfig, Tokenizer
from model.network.cache import hook_shapes
from model.network.factored_matrix import composition_scores
from model.network.generation import GenerationMethods
from model.network.loading import LoadingMethods
from model.network.logits import next_token_loss, sample_tokens, sampling_probs
from model.network.token_ids import as_id_tensor, char_id, check_token_ids, prompt_ids, token_labels
from model.storage.checkpoint import check_checkpoint_bytes, verify_checkpoint
from model.storage.registry import CHECKPOINT_DIR, resolve_path
from model.storage.schema import parse_safetensors_header

TOKENIZER = Tokenizer()

# (label, tokens, error, phrase): every way token ids can be wrong, for every entry point that takes them.
BAD_TOKENS = [
    ("list of str", ["a", "b"], ValueError, "tokens must be a tensor or list of integer ids"),
    ("ragged list", [[1, 2], [3]], ValueError, "tokens must be a tensor or list of integer ids"),
    ("None", None, ValueError, "tokens must be a tensor or list of integer ids"),
    ("float tensor", torch.rand(1, 5), ValueError, "tokens must be integer ids, got dtype torch.float32"),
    ("bool tensor", torch.ones(1, 3, dtype=torch.bool), ValueError, "got dtype torch.bool"),
    ("numpy float array", np.array([[1.0, 2.0]]), ValueError, "got dtype torch.float64"),
    ("0-d tensor", torch.tensor(3), ValueError, "must have shape [batch, pos] or [pos], got ()"),
    ("3-d tensor", torch.zeros(1, 2, 3, dtype=torch.long), ValueError, "got (1, 2, 3)"),
    ("empty [2, 0]", torch.zeros(2, 0, dtype=torch.long), ValueError, "tokens are empty (shape (2, 0))"),
    ("empty list", [], ValueError, "tokens are empty"),
    ("longer than n_ctx", torch.zeros(1, 17, dtype=torch.long), ValueError, "longer than the context n_ctx=16"),
    ("negative id", [[1, -1]], ValueError, "token ids [-1] are outside the vocabulary [0, 64)"),
    ("id = d_vocab", [[1, 64]], ValueError, "token ids [64] are outside the vocabulary [0, 64)"),
    ("unknown character", "naïve", ValueError, "1 unknown character: 'ï' at position 2"),
    ("meta device", torch.zeros(1, 2, dtype=torch.long, device="meta"), ValueError, "meta device"),
]
TOKEN_ENTRIES = {
    "MiniGPT.forward": lambda e, t: e.model(t),
    "MiniGPT.run_with_cache": lambda e, t: e.model.run_with_cache(t),
    "MiniGPT.run_with_hooks": lambda e, t: e.model.run_with_hooks(t, fwd_hooks=[("hook_embed", lambda a, h: None)]),
    "MiniGPT.check_tokens": lambda e, t: e.model.check_tokens(t),
    "MiniGPT.generate": lambda e, t: e.model.generate(t, max_new_tokens=2, seed=0),
}


TEXT_ENTRIES = {"MiniGPT.forward", "MiniGPT.run_with_cache", "MiniGPT.run_with_hooks"}


def _token_cases() -> list[Case]:
    return [
        Case(entry, label, lambda e, call=call, t=tokens: call(e, t), error, phrase)
        for entry, call in TOKEN_ENTRIES.items()
        for label, tokens, error, phrase in BAD_TOKENS
        # a list of texts is TransformerLens input there (to_tokens pads it), so it is no bad input
        if not (label == "list of str" and entry in TEXT_ENTRIES)
    ]


def _hook_cases() -> list[Case]:
    noop = lambda a, h: None  # noqa: E731
    return [
        Case("MiniGPT.run_with_hooks", "misspelt hook name", lambda e: e.model.run_with_hooks(
            e.tokens, fwd_hooks=[("blocks.0.attn.hook_patern", noop)]), KeyError,
            "unknown hook 'blocks.0.attn.hook_patern'; did you mean 'blocks.0.attn.hook_pattern'"),
        Case("MiniGPT.run_with_hooks", "hook not callable", lambda e: e.model.run_with_hooks(
            e.tokens, fwd_hooks=[("hook_embed", 3)]), TypeError, "not a callable fn(activation, hook)"),
        Case("MiniGPT.run_with_hooks", "item not a pair", lambda e: e.model.run_with_hooks(
            e.tokens, fwd_hooks=["hook_embed"]), TypeError, "list of (name_or_predicate, fn) pairs"),
        Case("MiniGPT.run_with_hooks", "selector is an int", lambda e: e.model.run_with_hooks(
            e.tokens, fwd_hooks=[(3, noop)]), TypeError, "hook selector must be a name or a predicate"),
        Case("MiniGPT.run_with_hooks", "hook returns a list", lambda e: e.model.run_with_hooks(
            e.tokens, fwd_hooks=[("hook_embed", lambda a, h: [a])]), TypeError, "returned list"),
        Case("MiniGPT.run_with_hooks", "hook returns wrong shape", lambda e: e.model.run_with_hooks(
            e.tokens, fwd_hooks=[("hook_embed", lambda a, h: a[:, :1])]), ValueError, "returned shape (2, 1, 32)"),
        Case("MiniGPT.run_with_hooks", "hook returns float64", lambda e: e.model.run_with_hooks(
            e.tokens, fwd_hooks=[("hook_embed", lambda a, h: a.double())]), TypeError,
            "returned torch.float64 on cpu, but the activation is torch.float32"),
        Case("MiniGPT.run_with_hooks", "hook returns int tensor", lambda e: e.model.run_with_hooks(
            e.tokens, fwd_hooks=[("hook_embed", lambda a, h: a.long())]), TypeError, "same dtype and device"),
        Case("MiniGPT.run_with_hooks", "misspelt return_type", lambda e: e.model.run_with_hooks(
            e.tokens, return_type="logit"), ValueError, "return_type='logit' is not one of"),
        Case("MiniGPT.hooks", "unknown name, no close match", lambda e: in_hooks(
            e.model, [("zzz", noop)], lambda: None), KeyError, "list them with model.hook_names"),
        Case("MiniGPT.hooks", "layer out of range", lambda e: in_hooks(
            e.model, [("blocks.7.hook_resid_pre", noop)], lambda: None), KeyError, "did you mean"),
        Case("MiniGPT.hooks", "fwd_hooks is None", lambda e: in_hooks(e.model, None, lambda: None),
             TypeError, "fwd_hooks must be a list of (name_or_predicate, fn) pairs, got None"),
        Case("MiniGPT.resolve_hooks", "unknown name", lambda e: e.model.resolve_hooks([("hook_embd", noop)]),
             KeyError, "did you mean 'hook_embed'"),
        Case("MiniGPT.resolve_hooks", "fn is a string", lambda e: e.model.resolve_hooks([("hook_embed", "f")]),
             TypeError, "not a callable"),
        Case("MiniGPT.run_with_cache", "incl_bwd on logits", lambda e: e.model.run_with_cache(e.tokens, incl_bwd=True),
             ValueError, 'incl_bwd=True runs backward() on the model\'s output, which must be one number: pass'),
        Case("MiniGPT.run_with_cache", "incl_bwd without gradients", lambda e: _no_grad(lambda: e.model.run_with_cache(
             e.tokens, incl_bwd=True, return_type="loss")), ValueError, "incl_bwd=True needs gradients"),
        Case("MiniGPT.run_with_hooks", "a misspelt backward hook", lambda e: e.model.run_with_hooks(
             e.tokens, bwd_hooks=[("hook_embd", lambda g, h: None)]), KeyError, "did you mean 'hook_embed'"),
        Case("MiniGPT.run_with_cache", "unknown names_filter", lambda e: e.model.run_with_cache(
            e.tokens, names_filter="blocks.0.hook_resid_psot"), KeyError, "did you mean 'blocks.0.hook_resid_post'"),
        Case("MiniGPT.run_with_cache", "names_filter is an int", lambda e: e.model.run_with_cache(
            e.tokens, names_filter=3), TypeError, "expected a hook name, a list of names or a predicate"),
        Case("MiniGPT.run_with_cache", "names_filter holds an int", lambda e: e.model.run_with_cache(
            e.tokens, names_filter=["hook_embed", 3]), TypeError, "hook names must be strings, got 3"),
        Case("MiniGPT.run_with_cache", "device name invalid", lambda e: e.model.run_with_cache(
            e.tokens, device="gpu0"), ValueError, "device='gpu0' is not a device name"),
        Case("MiniGPT.run_with_cache", "device not on this machine", lambda e: e.model.run_with_cache(
            e.tokens, device="cuda:7"), ValueError, "is not available on this machine"),
        Case("MiniGPT.run_with_cache", "device is a float", lambda e: e.model.run_with_cache(
            e.tokens, device=1.5), TypeError, "device must be a str such as 'cpu'"),
        Case("MiniGPT.run_with_cache", "cache over the memory limit", lambda e: _tiny_limit(e.model), ValueError,
             "record fewer activations with names_filter"),
    ]  # fmt: skip


def _tiny_limit(model: MiniGPT):
    old = model.max_cache_bytes
    model.max_cache_bytes = 1000
    try:
        return model.run_with_cache(torch.zeros(1, 8, dtype=torch.long))
    finally:
        model.max_cache_bytes = old


def _method_cases() -> list[Case]:
    return [
        Case("MiniGPT", "cfg is a dict", lambda e: MiniGPT({"d_model": 32}), TypeError, "cfg must be a ModelConfig"),
        Case("MiniGPT", "tokenizer size != d_vocab", lambda e: MiniGPT(ModelConfig(d_vocab=50), Tokenizer()),
             ValueError, "the tokenizer has 64 symbols but cfg.d_vocab=50"),
        Case("MiniGPT.forward_from", "layer 2", lambda e: e.model.forward_from(torch.zeros(1, 4, 32), 2), IndexError,
             "layer 2 is out of range: the model has 2 layers"),
        Case("MiniGPT.forward_from", "unknown stage", lambda e: e.model.forward_from(torch.zeros(1, 4, 32), 0, "mid"),
             ValueError, "stage='mid' is not a stage of this model's blocks; use one of ['resid_pre'"),
        Case("MiniGPT.forward_from", "row 4 of 4", lambda e: e.model.forward_from(torch.zeros(1, 4, 32), rows=[4]),
             ValueError, "rows must be distinct positions in 0..3"),
        Case("MiniGPT.forward_from", "state of width 5", lambda e: e.model.forward_from(torch.zeros(1, 4, 5)),
             ValueError, "resid must be a [batch, pos, d_model=32] tensor, got (1, 4, 5)"),
        Case("MiniGPT.read_out", "column 64", lambda e: e.model.read_out(torch.zeros(1, 4, 32), columns=[64]),
             ValueError, "columns must be distinct token ids in 0..63"),
        Case("MiniGPT.read_out", "state of width 5", lambda e: e.model.read_out(torch.zeros(4, 5)), ValueError,
             "resid must be a [..., d_model=32] tensor, got (4, 5)"),
        Case("MiniGPT.input_to_embed", "padding_side 'middle'", lambda e: e.model.input_to_embed(
             "hi", padding_side="middle"), ValueError, "padding_side='middle' is not one of ['left', 'right']"),
        Case("MiniGPT.run_with_cache", "pos_slice 'x'", lambda e: e.model.run_with_cache(e.tokens, pos_slice="x"),
             TypeError, "pos_slice must be None, an int, a (start, stop[, step]) tuple"),
        Case("MiniGPT.from_pretrained_no_processing", "no such name", lambda e: MiniGPT.from_pretrained_no_processing(
             "no-such-model"), FileNotFoundError, "no-such-model"),
        Case("MiniGPT.process_weights_", "center_unembed 'yes'", lambda e: e.model.process_weights_(
             center_unembed="yes"), TypeError, "center_unembed must be True or False, got 'yes'"),
        Case("MiniGPT.all_composition_scores", "mode 'X'", lambda e: e.model.all_composition_scores("X"),
             ValueError, "mode must be 'Q', 'K' or 'V'"),
        Case("MiniGPT.set_tokenizer", "an int", lambda e: e.model.set_tokenizer(3), TypeError,
             "tokenizer must have encode and decode methods, got int"),
        Case("MiniGPT.set_tokenizer", "padding side 'up'", lambda e: e.model.set_tokenizer(Tokenizer(), "up"),
             ValueError, "default_padding_side must be 'left' or 'right', got 'up'"),
        Case("HookPoint.add_hook", "dir 'back'", lambda e: e.model.blocks[0].attn.hook_z.add_hook(
             lambda a, h: None, dir="back"), ValueError, "dir must be 'fwd' (a hook on the activation) or 'bwd'"),
        Case("MiniGPT.embed_tokens", "id 64", lambda e: e.model.embed_tokens(torch.tensor([[1, 64]])), ValueError,
             "64"),
        Case("MiniGPT.forward", "unknown return_type", lambda e: e.model(e.tokens, return_type="probs"),
             ValueError, "return_type='probs' is not one of ['logits', 'loss', 'both', None]"),
        Case("MiniGPT.forward", "loss of one token", lambda e: e.model(e.tokens[:, :1], return_type="loss"),
             ValueError, "needs at least 2 tokens"),
        Case("MiniGPT.loss_fn", "per_token 'yes'", lambda e: e.model.loss_fn(e.model(e.tokens), e.tokens,
             per_token="yes"), TypeError, "per_token must be True or False"),
        Case("MiniGPT.to_tokens", "None", lambda e: e.model.to_tokens(None), TypeError,
             "to_tokens expects a str or a list of str, got NoneType"),
        Case("MiniGPT.to_tokens", "dict of str", lambda e: e.model.to_tokens({"a": 1}), TypeError,
             "expects a str or a list of str, got dict"),
        Case("MiniGPT.to_tokens", "token tensor", lambda e: e.model.to_tokens(e.tokens), TypeError,
             "token ids need no conversion"),
        Case("MiniGPT.to_tokens", "list of ints", lambda e: e.model.to_tokens([1, 2]), TypeError, "got list"),
        Case("MiniGPT.to_tokens", "empty list", lambda e: e.model.to_tokens([]), ValueError, "empty list of texts"),
        Case("MiniGPT.to_tokens", "unknown character", lambda e: e.model.to_tokens("5 €"), ValueError,
             "the text: 1 unknown character: '€' at position 2"),
        Case("MiniGPT.to_tokens", "unknown policy", lambda e: e.model.to_tokens("ab", unknown="skip"),
             ValueError, "unknown='skip' is not one of ['error', 'replace', 'drop']"),
        Case("MiniGPT.to_tokens", "padding side 'middle'", lambda e: e.model.to_tokens(["ab", "abc"],
             padding_side="middle"), ValueError, "padding_side='middle' is not one of ['left', 'right']"),
        Case("MiniGPT.to_tokens", "prepend_bos 'yes'", lambda e: e.model.to_tokens("ab", prepend_bos="yes"),
             TypeError, "prepend_bos must be True or False"),
        Case("MiniGPT.to_tokens", "text longer than n_ctx", lambda e: e.model.to_tokens("x" * 20),
             ValueError, "the text has 20 characters but this model reads at most 15 (n_ctx=16, one position goes "
             "to <bos>); shorten it"),
        Case("MiniGPT.to_tokens", "one text of a list too long", lambda e: e.model.to_tokens(["ab", "y" * 16]),
             ValueError, "the text has 16 characters but this model reads at most 15"),
        Case("MiniGPT.to_tokens", "model without tokenizer", lambda e: make_model(d_vocab=50).to_tokens("a"),
             ValueError, "this model has no tokenizer"),
        Case("MiniGPT.to_string", "float tensor", lambda e: e.model.to_string(torch.rand(4)), ValueError,
             "tokens must be integer ids, got dtype torch.float32"),
        Case("MiniGPT.to_string", "3-d tensor", lambda e: e.model.to_string(torch.zeros(1, 1, 2, dtype=torch.long)),
             ValueError, "to_string takes tokens [pos] or [batch, pos]"),
        Case("MiniGPT.to_string", "None", lambda e: e.model.to_string(None), ValueError,
             "tokens must be a tensor or list of integer ids, got NoneType"),
        Case("MiniGPT.to_string", "list of str", lambda e: e.model.to_string(["a"]), ValueError,
             "tokens must be a tensor or list of integer ids"),
        Case("MiniGPT.to_string", "negative id", lambda e: e.model.to_string([3, -1]), ValueError,
             "token id -1 is outside the vocabulary [0, 64)"),
        Case("MiniGPT.to_string", "id = d_vocab", lambda e: e.model.to_string([64]), ValueError,
             "token id 64 is outside"),
        Case("MiniGPT.to_string", "meta device", lambda e: e.model.to_string(torch.zeros(2, dtype=torch.long,
             device="meta")), ValueError, "meta device"),
        Case("MiniGPT.to_str_tokens", "a batch of 2", lambda e: e.model.to_str_tokens(e.tokens), ValueError,
             "to_str_tokens takes one sequence, got a batch of 2; pass tokens[i]"),
        Case("MiniGPT.to_str_tokens", "float tensor", lambda e: e.model.to_str_tokens(torch.rand(3)), ValueError,
             "tokens must be integer ids, got dtype torch.float32"),
        Case("MiniGPT.to_str_tokens", "id = d_vocab", lambda e: e.model.to_str_tokens([1, 64]), ValueError,
             "token ids [64] are outside the vocabulary [0, 64)"),
        Case("MiniGPT.to_str_tokens", "text with an unknown character", lambda e: e.model.to_str_tokens("a€"),
             ValueError, "the text: 1 unknown character: '€' at position 1"),
        Case("MiniGPT.to_single_token", "two characters", lambda e: e.model.to_single_token("ab"), ValueError,
             "the token must be exactly one character (or one of ['<bos>', '<pad>', '<unk>']), got 'ab'"),
        Case("MiniGPT.to_single_token", "empty", lambda e: e.model.to_single_token(""), ValueError, "got ''"),
        Case("MiniGPT.to_single_token", "unknown special's name", lambda e: e.model.to_single_token("<eos>"),
             ValueError, "got '<eos>'"),
        Case("MiniGPT.to_single_token", "an int", lambda e: e.model.to_single_token(3), TypeError,
             "the token must be one character (a str) or a token id, got int"),
        Case("MiniGPT.to_single_token", "unknown character", lambda e: e.model.to_single_token("é"), ValueError,
             "the token 'é': 1 unknown character: 'é' at position 0"),
        Case("MiniGPT.to_single_token", "model without tokenizer", lambda e: make_model(d_vocab=50).to_single_token(
            "a"), ValueError, "this model has no tokenizer"),
        Case("MiniGPT.hook_shapes", "negative batch", lambda e: e.model.hook_shapes(-1, 3), ValueError,
             "hook_shapes needs a positive int batch, got -1"),
        Case("MiniGPT.hook_shapes", "pos is a str", lambda e: e.model.hook_shapes(2, "3"), ValueError,
             "positive int pos, got '3'"),
        Case("MiniGPT.from_hf_gpt2", "not a GPT-2", lambda e: MiniGPT.from_hf_gpt2(42), TypeError, "GPT2LMHeadModel"),
    ]  # fmt: skip


def _generate_cases() -> list[Case]:
    def gen(**kwargs):
        return lambda e: e.model.generate(e.tokens, **{"max_new_tokens": 2, "seed": 0, **kwargs})

    return [
        Case("MiniGPT.generate", "negative max_new_tokens", gen(max_new_tokens=-1), ValueError, "max_new_tokens"),
        Case("MiniGPT.generate", "return_type 'text'", gen(return_type="text"), ValueError,
             "return_type must be 'input', 'str' or 'tokens', got 'text'"),
        Case("MiniGPT.generate", "float max_new_tokens", gen(max_new_tokens=2.0), ValueError, "non-negative int"),
        Case("MiniGPT.generate", "bool max_new_tokens", gen(max_new_tokens=True), ValueError, "got True"),
        Case("MiniGPT.generate", "negative temperature", gen(temperature=-1.0), ValueError, "temperature must be"),
        Case("MiniGPT.generate", "NaN temperature", gen(temperature=float("nan")), ValueError, "got nan"),
        Case("MiniGPT.generate", "infinite temperature", gen(temperature=float("inf")), ValueError, "finite"),
        Case("MiniGPT.generate", "str temperature", gen(temperature="hot"), TypeError, "temperature must be a number"),
        Case("MiniGPT.generate", "top_k = 0", gen(top_k=0), ValueError, "top_k must be a positive int"),
        Case("MiniGPT.generate", "float top_k", gen(top_k=2.5), ValueError, "got 2.5"),
        Case("MiniGPT.generate", "top_p = 0", gen(top_p=0.0), ValueError, "top_p must be in (0, 1]"),
        Case("MiniGPT.generate", "top_p > 1", gen(top_p=1.5), ValueError, "got 1.5"),
        Case("MiniGPT.generate", "str top_p", gen(top_p="high"), TypeError, "top_p must be a number"),
        Case("MiniGPT.generate", "str seed", gen(seed="a"), ValueError, "seed must be None or an int"),
        Case("MiniGPT.generate", "float seed", gen(seed=1.5), ValueError, "got 1.5"),
        Case("MiniGPT.generate", "negative seed", gen(seed=-1), ValueError, "[0, 2**63)"),
        Case("MiniGPT.generate", "NaN weight", lambda e: e.nan_model.generate(e.tokens, max_new_tokens=1, seed=0),
             ValueError, "parameter 'blocks.1.attn.W_Q' holds NaN/inf"),
        Case("MiniGPT.generate", "hook writing NaN", lambda e: in_hooks(e.model, [("blocks.1.hook_mlp_out",
             nan_hook)], lambda: e.model.generate(e.tokens, max_new_tokens=1, seed=0)), ValueError,
             "an active hook or the input wrote NaN/inf"),
    ]  # fmt: skip


def _function_cases() -> list[Case]:
    logits, ids = torch.zeros(1, 3, 64), torch.zeros(1, 3, dtype=torch.long)
    return [
        Case("model.network.logits.next_token_loss", "float tokens", lambda e: next_token_loss(logits, ids.float()),
             TypeError, "tokens must hold integer ids"),
        Case("model.network.logits.next_token_loss", "shapes differ", lambda e: next_token_loss(logits, ids[:, :2]),
             ValueError, "logits (1, 3, 64) do not match tokens (1, 2)"),
        Case("model.network.logits.next_token_loss", "one token", lambda e: next_token_loss(logits[:, :1], ids[:, :1]),
             ValueError, "at least 2 tokens"),
        Case("model.network.logits.next_token_loss", "list logits", lambda e: next_token_loss([[0.0]], ids),
             TypeError, "next_token_loss takes tensors, got list"),
        Case("model.network.logits.sampling_probs", "negative temperature", lambda e: sampling_probs(
            logits, temperature=-0.5), ValueError, "temperature must be >= 0"),
        Case("model.network.logits.sampling_probs", "bool top_k", lambda e: sampling_probs(logits, top_k=True),
             ValueError, "top_k must be a positive int"),
        Case("model.network.logits.sampling_probs", "None temperature", lambda e: sampling_probs(
            logits, temperature=None), TypeError, "temperature must be a number, got None"),
        Case("model.network.logits.sample_tokens", "negative max_new_tokens", lambda e: sample_tokens(
            lambda t: logits[:, -1], ids, -1), ValueError, "max_new_tokens must be a non-negative int, got -1"),
        Case("model.network.logits.sample_tokens", "str seed", lambda e: sample_tokens(
            lambda t: logits[:, -1], ids, 1, seed="a"), ValueError, "seed must be None or an int in [0, 2**63)"),
        Case("model.network.logits.sample_tokens", "negative temperature", lambda e: sample_tokens(
            lambda t: logits[:, -1], ids, 1, temperature=-1), ValueError, "temperature must be >= 0 and finite"),
        Case("model.network.cache.hook_shapes", "batch 0", lambda e: hook_shapes(e.model.cfg, ["hook_embed"], 0, 3),
             ValueError, "hook_shapes needs a positive int batch, got 0"),
        Case("model.network.cache.hook_shapes", "float pos", lambda e: hook_shapes(e.model.cfg, ["hook_embed"], 1,
             2.0), ValueError, "hook_shapes needs a positive int pos, got 2.0"),
    ]  # fmt: skip


def _token_id_cases() -> list[Case]:
    T = "model.network.token_ids."
    tok = TOKENIZER
    return [
        Case(T + "check_token_ids", "id = d_vocab", lambda e: check_token_ids([[1, 70]], 64, 32), ValueError,
             "token ids [70] are outside the vocabulary [0, 64)"),
        Case(T + "check_token_ids", "longer than n_ctx", lambda e: check_token_ids(torch.zeros(1, 5, dtype=torch.long),
             64, 4), ValueError, "5 tokens is longer than the context n_ctx=4"),
        Case(T + "as_id_tensor", "None", lambda e: as_id_tensor(None), ValueError,
             "tokens must be a tensor or list of integer ids, got NoneType"),
        Case(T + "as_id_tensor", "float tensor", lambda e: as_id_tensor(torch.rand(2)), ValueError,
             "tokens must be integer ids, got dtype torch.float32"),
        Case(T + "prompt_ids", "not a str", lambda e: prompt_ids(tok, 3, 16), TypeError,
             "the prompt must be a str of text, got int; token ids need no conversion"),
        Case(T + "prompt_ids", "empty", lambda e: prompt_ids(tok, "", 16, what="--prompt"), ValueError,
             "--prompt is empty; give at least one character"),
        Case(T + "prompt_ids", "too long", lambda e: prompt_ids(tok, "x" * 16, 16), ValueError,
             "the prompt has 16 characters but this model reads at most 15 (n_ctx=16, one position goes to <bos>); "
             "shorten it"),
        Case(T + "prompt_ids", "unknown character", lambda e: prompt_ids(tok, "a€", 16, what="the prompt"),
             ValueError, "the prompt: 1 unknown character: '€' at position 1"),
        Case(T + "prompt_ids", "unknown policy", lambda e: prompt_ids(tok, "a", 16, unknown="skip"), ValueError,
             "the prompt: unknown='skip' is not one of ['error', 'replace', 'drop']"),
        Case(T + "char_id", "two characters", lambda e: char_id(tok, "ab", what="--answer"), ValueError,
             "--answer must be exactly one character (or one of ['<bos>', '<pad>', '<unk>']), got 'ab'"),
        Case(T + "char_id", "a list", lambda e: char_id(tok, ["a"]), TypeError,
             "the token must be one character (a str) or a token id, got list"),
        Case(T + "char_id", "unknown character", lambda e: char_id(tok, "€", what="--target"), ValueError,
             "--target '€': 1 unknown character: '€' at position 0"),
        Case(T + "token_labels", "id = vocabulary size", lambda e: token_labels(tok, [3, 64]), ValueError,
             "token ids [64] are outside the vocabulary [0, 64)"),
        Case(T + "token_labels", "negative id", lambda e: token_labels(tok, [-1]), ValueError,
             "token ids [-1] are outside the vocabulary [0, 64)"),
        Case(T + "token_labels", "float id", lambda e: token_labels(tok, [1.5]), TypeError,
             "token ids must be integers, got 1.5 (float)"),
        Case(T + "token_labels", "ids is an int", lambda e: token_labels(tok, 3), TypeError,
             "ids must be a list of token ids, got int"),
    ]  # fmt: skip


def _storage_cases() -> list[Case]:
    K, R = "model.storage.checkpoint.", "model.storage.registry."
    weights = (CHECKPOINT_DIR / "induction-2l.safetensors").read_bytes()
    meta = (CHECKPOINT_DIR / "induction-2l.json").read_bytes()
    doc = json.loads(meta)
    layout = parse_safetensors_header(weights, len(weights), "w.safetensors")
    sha = hashlib.sha256(weights).hexdigest()
    return [
        Case(K + "verify_checkpoint", "document is a list", lambda e: verify_checkpoint([], layout, sha,
             "w.safetensors", "w.json"), ValueError, "w.json: the document must be a JSON object, got [] (list)"),
        Case(K + "verify_checkpoint", "hash differs", lambda e: verify_checkpoint(doc, layout, "0" * 64,
             "w.safetensors", "w.json"), ValueError, "w.safetensors does not match the hash recorded in w.json"),
        Case(K + "verify_checkpoint", "a tensor missing", lambda e: verify_checkpoint(doc, {
            k: v for k, v in layout.items() if k != "blocks.0.attn.W_K"}, sha, "w.safetensors", "w.json"),
            ValueError, "w.safetensors does not match its config (d_model=64, n_heads=1, n_layers=2, d_ff=256, ...): "
            "missing ['blocks.0.attn.W_K']"),
        Case(K + "check_checkpoint_bytes", "truncated weights", lambda e: check_checkpoint_bytes(
            "w.safetensors", weights[:100], "w.json", meta), ValueError,
            "w.safetensors is damaged: the header length 1672 does not fit in the file's 100 bytes"),
        Case(K + "check_checkpoint_bytes", "JSON damaged", lambda e: check_checkpoint_bytes(
            "w.safetensors", weights, "w.json", b"{no"), ValueError, "w.json is not valid JSON"),
        Case(K + "check_checkpoint_bytes", "pickle bytes", lambda e: check_checkpoint_bytes(
            "w.safetensors", b"PK\x03\x04" + weights[4:], "w.json", meta), ValueError, "PyTorch/pickle"),
        Case(K + "check_checkpoint_bytes", "weights as a str", lambda e: check_checkpoint_bytes(
            "w.safetensors", "abc", "w.json", meta), TypeError,
            "check_checkpoint_bytes takes the files' bytes, got str and bytes"),
        Case(R + "resolve_path", "an int", lambda e: resolve_path(3), TypeError,
             "expected a checkpoint name or path, got int"),
        Case(R + "resolve_path", "blank name", lambda e: resolve_path(" "), ValueError, "the checkpoint name is empty"),
        Case(R + "resolve_path", "pickle suffix", lambda e: resolve_path("m.pt"), ValueError,
             "m.pt looks like a pickle file (.pt)"),
        Case(R + "resolve_path", "unknown name", lambda e: resolve_path("no-such-model"), FileNotFoundError,
             "no shipped checkpoint named 'no-such-model'"),
        Case(R + "resolve_path", "missing file", lambda e: resolve_path(e.tmp / "gone.safetensors"),
             FileNotFoundError, "gone.safetensors not found"),
    ]  # fmt: skip


def _factored_cases() -> list[Case]:
    fm = FactoredMatrix(torch.ones(3, 2), torch.ones(2, 4))
    return [
        Case("FactoredMatrix", "factors do not chain", lambda e: FactoredMatrix(torch.ones(3, 2),
             torch.ones(3, 2)), ValueError, "do not chain: need A [..., m, r], B [..., r, n]"),
        Case("FactoredMatrix", "lists", lambda e: FactoredMatrix([[1.0]], [[1.0]]), TypeError,
             "FactoredMatrix needs two tensors, got list and list"),
        Case("FactoredMatrix", "integer factors", lambda e: FactoredMatrix(torch.ones(3, 2, dtype=torch.long),
             torch.ones(2, 4, dtype=torch.long)), TypeError, "must share one floating-point dtype"),
        Case("FactoredMatrix", "mixed dtypes", lambda e: FactoredMatrix(torch.ones(3, 2), torch.ones(2, 4,
             dtype=torch.float64)), TypeError, "got torch.float32 and torch.float64"),
        Case("FactoredMatrix", "batch axes do not broadcast", lambda e: FactoredMatrix(torch.ones(2, 3, 2),
             torch.ones(3, 2, 4)), ValueError, "leading (batch) axes"),
        Case("FactoredMatrix.__matmul__", "tensor of wrong size", lambda e: fm @ torch.ones(3, 3), ValueError,
             "cannot multiply (3, 4) @ (3, 3)"),
        Case("FactoredMatrix.__matmul__", "factored of wrong size", lambda e: fm @ fm, ValueError,
             "the inner dimensions differ"),
        Case("FactoredMatrix.__rmatmul__", "tensor of wrong size", lambda e: torch.ones(5, 5) @ fm, ValueError,
             "cannot multiply (5, 5) @ (3, 4)"),
        Case("FactoredMatrix.diag", "not square", lambda e: fm.diag(), ValueError,
             "diag needs a square matrix, this one is (3, 4)"),
        Case("FactoredMatrix.eigenvalues", "not square", lambda e: fm.eigenvalues, ValueError, "square"),
        Case("FactoredMatrix.__getitem__", "an int on a matrix axis", lambda e: fm[0, 1], IndexError,
             "index the matrix axes of a FactoredMatrix with a list, tensor or slice"),
        Case("FactoredMatrix.unsqueeze", "axis 3 of 0", lambda e: fm.unsqueeze(3), IndexError,
             "unsqueeze(3): this FactoredMatrix has 0 leading axes"),
        Case("model.network.factored_matrix.composition_scores", "a tensor", lambda e: composition_scores(
             e.model.W_Q, e.model.OV), TypeError, "composition_scores takes two FactoredMatrix"),
    ]  # fmt: skip


def _tokenizer_cases() -> list[Case]:
    tok = TOKENIZER
    return [
        Case("Tokenizer", "duplicate symbols", lambda e: Tokenizer(["<bos>", "<pad>", "<unk>", "a", "a"]),
             ValueError, "tokenizer symbols must be unique"),
        Case("Tokenizer", "no specials", lambda e: Tokenizer(["a", "b"]), ValueError, "must include the specials"),
        Case("Tokenizer.encode", "int", lambda e: tok.encode(3), TypeError, "encode expects a str, got int"),
        Case("Tokenizer.encode", "bytes", lambda e: tok.encode(b"ab"), TypeError, "got bytes"),
        Case("Tokenizer.encode", "unknown characters", lambda e: tok.encode("a€b☃"), ValueError,
             "2 unknown characters: '€' at position 1, '☃' at position 3"),
        Case("Tokenizer.encode", "unknown before a special's name", lambda e: tok.encode("é<bos>"), ValueError,
             "'é' at position 0"),
        Case("Tokenizer.encode", "unknown policy", lambda e: tok.encode("a", unknown="ignore"), ValueError,
             "unknown='ignore' is not one of"),
        Case("Tokenizer.decode", "a str", lambda e: tok.decode("ab"), TypeError,
             "decode expects a list of integer token ids, got str"),
        Case("Tokenizer.decode", "None", lambda e: tok.decode(None), TypeError, "got NoneType"),
        Case("Tokenizer.batch_decode", "a str", lambda e: tok.batch_decode("ab"), TypeError,
             "batch_decode expects a list of id sequences, got str"),
        Case("Tokenizer.decode", "float id", lambda e: tok.decode([1.5]), TypeError,
             "token ids must be integers, got 1.5 (float)"),
        Case("Tokenizer.decode", "str ids", lambda e: tok.decode(["a"]), TypeError, "got 'a' (str)"),
        Case("Tokenizer.decode", "nested list (2-d)", lambda e: tok.decode([[1, 2]]), TypeError, "got [1, 2] (list)"),
        Case("Tokenizer.decode", "2-d tensor", lambda e: tok.decode(torch.tensor([[1, 2]])), TypeError,
             "token ids must be integers"),
        Case("Tokenizer.decode", "bool id", lambda e: tok.decode([True]), TypeError, "(bool)"),
        Case("Tokenizer.decode", "negative id", lambda e: tok.decode([-1]), ValueError,
             "token id -1 is outside the vocabulary [0, 64)"),
        Case("Tokenizer.decode", "id = vocab size", lambda e: tok.decode([5, 64]), ValueError, "token id 64"),
        Case("Tokenizer.normalize", "int", lambda e: tok.normalize(5), TypeError, "expected a str of text, got int"),
        Case("Tokenizer.unknown_chars", "None", lambda e: tok.unknown_chars(None), TypeError, "got NoneType"),
        Case("Tokenizer.from_dict", "wrong kind", lambda e: Tokenizer.from_dict({"kind": "bpe"}), ValueError,
             "tokenizer table must look like"),
        Case("Tokenizer.from_dict", "a list", lambda e: Tokenizer.from_dict(["a"]), ValueError, "{'kind': 'char'"),
    ]  # fmt: skip


def _cache_cases() -> list[Case]:
    return [
        Case("ActivationCache.__getitem__", "misspelt shorthand", lambda e: e.cache["patern", 0], KeyError,
             "unknown shorthand 'patern'; known shorthands are"),
        Case("ActivationCache.__getitem__", "layer out of range", lambda e: e.cache["pattern", 5], KeyError,
             "'blocks.5.attn.hook_pattern' is not in this cache; did you mean"),
        Case("ActivationCache.__getitem__", "shorthand without layer", lambda e: e.cache["resid_pre"], KeyError,
             "needs a layer"),
        Case("ActivationCache.__getitem__", "int key", lambda e: e.cache[0], TypeError,
             "cache keys are hook names or (shorthand, layer) tuples"),
        Case("ActivationCache.to", "device name invalid", lambda e: e.cache.to("gpu"), ValueError,
             "is not a device name"),
        Case("ActivationCache.to", "device not on this machine", lambda e: e.cache.to("cuda:7"), ValueError,
             "not available on this machine"),
    ]  # fmt: skip


CASES = _token_cases() + _hook_cases() + _method_cases() + _generate_cases()
CASES += _function_cases() + _token_id_cases() + _storage_cases() + _factored_cases() + _tokenizer_cases()
CASES += _cache_cases()

# Public names with no row, and why (each is covered elsewhere or takes no input to get wrong).
EXEMPT = {
    "MiniGPT.parameter_inventory": "takes no arguments",
    "MiniGPT.to_hf_gpt2_state_dict": "takes no arguments",
    "MiniGPT.from_pretrained": "checkpoint files: tests of model/checkpoint.py (files part of issue 8)",
    "MiniGPT.save_pretrained": "checkpoint files: tests of model/checkpoint.py (files part of issue 8)",
    "Tokenizer.to_dict": "takes no arguments",
    "Tokenizer.get_vocab": "takes no arguments",
    "model.storage.registry.list_checkpoints": "takes no arguments",
    "model.storage.registry.shipped_names": "takes no arguments",
}
# Functions of the model package that every entry point goes through (ids, sampling, checkpoints): in the walk too.
FUNCTIONS = {
    "model.network.logits": ("next_token_loss", "sampling_probs", "sample_tokens"),
    "model.network.cache": ("hook_shapes",),
    "model.network.factored_matrix": ("composition_scores",),
    "model.network.token_ids": ("check_token_ids", "as_id_tensor", "prompt_ids", "char_id", "token_labels"),
    "model.storage.checkpoint": ("verify_checkpoint", "check_checkpoint_bytes"),
    "model.storage.registry": ("resolve_path", "list_checkpoints", "shipped_names"),
}


def _no_grad(fn):
    with torch.no_grad():
        return fn()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad_input_model"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_raises_a_clear_typed_error(case, env):
    """The entry point refuses the bad input with a typed error naming it, and changes nothing."""
    assert_clean_failure(case, env)


def _public_methods(cls: type, *mixins: type) -> set[str]:
    """``Class.method`` for the public methods of ``cls`` and of the ``mixins`` it inherits them from."""
    names = set()
    for name, value in (item for owner in (cls, *mixins) for item in vars(owner).items()):
        if name.startswith("_") or isinstance(value, property):
            continue
        if inspect.isfunction(value) or isinstance(value, classmethod | staticmethod):
            names.add(f"{cls.__name__}.{name}")
    return names


def test_every_public_model_method_is_in_the_matrix():
    """Each public method of MiniGPT and Tokenizer has a row (or a stated exemption), so none is forgotten."""
    public = _public_methods(MiniGPT, LoadingMethods, GenerationMethods) | _public_methods(Tokenizer)
    public |= {"MiniGPT", "Tokenizer", "FactoredMatrix"}
    public |= {f"{module}.{name}" for module, names in FUNCTIONS.items() for name in names}
    gone = [f"{m}.{n}" for m, names in FUNCTIONS.items() for n in names if not hasattr(importlib.import_module(m), n)]
    assert not gone, f"functions listed for the walk that no longer exist: {gone}"
    missing = sorted(public - covered_entries(CASES) - set(EXEMPT))
    assert not missing, f"public entry points without a bad-input row: {missing}; add rows to CASES"
    stale = sorted(set(EXEMPT) - public)
    assert not stale, f"exemptions for names that no longer exist: {stale}"


def test_numpy_integer_tokens_are_accepted_and_equal_tensor_tokens(env):
    """numpy integer arrays are accepted on purpose: the logits equal those of the same ids as a tensor."""
    as_numpy = env.model(env.tokens.numpy().astype(np.int32))
    assert torch.equal(as_numpy, env.model(env.tokens)), "numpy ids were converted to different tokens"


def test_empty_text_is_just_bos():
    """The empty string is not empty input: to_tokens("") is the one <bos> token, and the model runs on it."""
    model = make_model()
    tokens = model.to_tokens("")
    assert tokens.tolist() == [[TOKENIZER.bos_id]], "to_tokens must put <bos> first even for empty text"
    assert model(tokens).shape == (1, 1, 64)
    assert TOKENIZER.encode("") == [] and TOKENIZER.decode([]) == "", "the empty text must round-trip"


def test_forward_propagates_non_finite_values_as_documented(env):
    """The forward does not check for NaN (hot path): a NaN weight or a NaN-writing hook reaches the logits."""
    assert env.nan_model(env.tokens).isnan().any(), "a NaN weight vanished in the forward: was it checked?"
    hooked = env.model.run_with_hooks(env.tokens, fwd_hooks=[("blocks.1.hook_mlp_out", nan_hook)])
    assert hooked.isnan().all(), "a NaN written by a hook must propagate to every logit after it"
    assert "does not look for NaN" in MiniGPT.forward.__doc__, "the propagation must be documented"
