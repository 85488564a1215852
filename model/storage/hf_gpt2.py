"""HuggingFace GPT-2 weights <-> ``(ModelConfig, state dict)`` of a MiniGPT.

GPT-2 is a pre-LayerNorm GPT with learned positions, biases everywhere, a final LayerNorm and
(by default) an unembedding tied to the token embedding, so it is a MiniGPT with
``norm="pre", positional="learned", bias=True``. Its layout differs in two ways:

- ``Conv1D`` weights are stored ``[in, out]`` (``y = x @ W + b``), and the attention input
  projection is fused: ``c_attn.weight [d_model, 3 * d_model]`` holds q, k and v side by side,
  each ``head``-major (columns ``h * d_head .. (h + 1) * d_head`` belong to head ``h``).
- ``c_proj`` of attention is ``[head * d_head, d_model]``, i.e. ``W_O`` flattened.

The activation ``gelu_new`` (and its alias ``gelu_pytorch_tanh``) is our ``act="gelu_new"``;
``gelu`` and ``relu`` map to themselves. ``n_positions`` becomes ``n_ctx``, ``n_inner`` (None
means ``4 * n_embd``) becomes ``d_ff`` and ``layer_norm_epsilon`` becomes ``ln_eps``.

This module deals only in configs and state dicts and never imports ``MiniGPT`` (docs/ARCHITECTURE.md);
``MiniGPT.from_hf_gpt2`` and ``MiniGPT.to_hf_gpt2_state_dict`` call it.

Example:
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> hf = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=16, n_embd=32, n_layer=2, n_head=4))
    >>> cfg, state = hf_gpt2_to_minigpt(hf)
    >>> cfg.d_vocab, cfg.n_ctx, cfg.act, state["blocks.0.attn.W_Q"].shape
    (100, 16, 'gelu_new', torch.Size([4, 32, 8]))
    >>> sorted(minigpt_to_hf_gpt2(cfg, state))[:2]
    ['lm_head.weight', 'transformer.h.0.attn.c_attn.bias']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from model.network.config import ModelConfig

HF_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
OUR_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu"}
# GPT-2 options that change the maths in a way MiniGPT does not have: (name, the value we support)
UNSUPPORTED = (
    ("scale_attn_by_inverse_layer_idx", False),
    ("scale_attn_weights", True),
    ("add_cross_attention", False),
)
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older transformers versions
_BLOCK_KEYS = (
    "ln_1.weight",
    "ln_1.bias",
    "attn.c_attn.weight",
    "attn.c_attn.bias",
    "attn.c_proj.weight",
    "attn.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)


def hf_gpt2_to_minigpt(
    model_or_state_dict: Any, config: Any = None, *, copy: bool = True
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """``(ModelConfig, MiniGPT state dict)`` from a ``GPT2LMHeadModel``, a ``GPT2Model`` or a state dict.

    ``copy=True`` (default) gives float32 tensors of their own; ``copy=False`` reuses the given tensors where their
    layout allows (in their dtype), for weights just read from files that nothing else holds.

    ``config`` is a ``GPT2Config`` (or a dict of its fields); a model brings its own. Without one,
    sizes come from the state dict, but ``n_head`` cannot (it is not visible in the weights), so a
    bare state dict needs at least ``config={"n_head": ...}``; ``activation_function`` and
    ``layer_norm_epsilon`` then default to GPT-2's ``gelu_new`` and ``1e-5``. Keys may carry the
    ``transformer.`` prefix or not. An untied ``lm_head`` becomes ``unembed.W_U`` (with a zero ``b_U``).

    Example:
        >>> from transformers import GPT2Config, GPT2Model
        >>> hf = GPT2Model(GPT2Config(vocab_size=64, n_positions=32, n_embd=64, n_layer=2, n_head=4))
        >>> cfg, state = hf_gpt2_to_minigpt(hf.state_dict(), {"n_head": 4})
        >>> cfg.n_heads, cfg.tied_embed
        (4, True)
    """
    if isinstance(model_or_state_dict, Mapping):
        raw = dict(model_or_state_dict)
    elif hasattr(model_or_state_dict, "state_dict") and callable(model_or_state_dict.state_dict):
        raw = dict(model_or_state_dict.state_dict())
        if config is None:
            config = getattr(model_or_state_dict, "config", None)
    else:
        raise TypeError(
            "expected a GPT2LMHeadModel, a GPT2Model or a state dict (name -> tensor), "
            f"got {type(model_or_state_dict).__name__}"
        )
    sd = _strip_prefix(raw)
    cfg = _config_from(sd, config)
    out = _convert_weights(sd, cfg)
    if copy:
        return cfg, {k: v.detach().float().contiguous().clone() for k, v in out.items()}
    return cfg, {k: v.detach().contiguous() for k, v in out.items()}


def minigpt_to_hf_gpt2(cfg: ModelConfig, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The weights of a MiniGPT as a ``GPT2LMHeadModel`` state dict (``transformer.`` prefix, ``lm_head.weight``).

    Only GPT-2's architecture can be exported: pre-LayerNorm, learned positions, biases, MLPs,
    activation ``gelu``, ``gelu_new`` or ``relu``, and no unembedding bias (an untied model's
    ``b_U`` must be zero). Load the result into ``GPT2LMHeadModel(GPT2Config(**gpt2_config_kwargs(cfg)))``.

    Example:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> cfg = ModelConfig(d_vocab=10, n_ctx=8, d_model=16, n_heads=2, n_layers=1, d_ff=32)
        >>> hf = GPT2LMHeadModel(GPT2Config(**gpt2_config_kwargs(cfg)))
        >>> _, state = hf_gpt2_to_minigpt(hf)
        >>> hf.load_state_dict(minigpt_to_hf_gpt2(cfg, state))
        <All keys matched successfully>
    """
    _check_exportable(cfg)
    _require(state_dict, _our_keys(cfg), "MiniGPT state dict")
    d = cfg.d_model
    out = {
        "transformer.wte.weight": state_dict["embed.W_E"],
        "transformer.wpe.weight": state_dict["pos_embed.W_pos"],
        "transformer.ln_f.weight": state_dict["ln_final.w"],
        "transformer.ln_f.bias": state_dict["ln_final.b"],
    }
    for layer in range(cfg.n_layers):
        ours, hf = f"blocks.{layer}.", f"transformer.h.{layer}."
        w = torch.cat([state_dict[ours + f"attn.W_{n}"] for n in "QKV"])  # [3 head, d_model, d_head]
        out[hf + "attn.c_attn.weight"] = w.permute(1, 0, 2).reshape(d, 3 * d)
        out[hf + "attn.c_attn.bias"] = torch.cat([state_dict[ours + f"attn.b_{n}"] for n in "QKV"]).reshape(3 * d)
        out[hf + "attn.c_proj.weight"] = state_dict[ours + "attn.W_O"].reshape(d, d)
        out[hf + "attn.c_proj.bias"] = state_dict[ours + "attn.b_O"]
        for i in (1, 2):
            out[hf + f"ln_{i}.weight"] = state_dict[ours + f"ln{i}.w"]
            out[hf + f"ln_{i}.bias"] = state_dict[ours + f"ln{i}.b"]
        out[hf + "mlp.c_fc.weight"] = state_dict[ours + "mlp.W_in"]
        out[hf + "mlp.c_fc.bias"] = state_dict[ours + "mlp.b_in"]
        out[hf + "mlp.c_proj.weight"] = state_dict[ours + "mlp.W_out"]
        out[hf + "mlp.c_proj.bias"] = state_dict[ours + "mlp.b_out"]
    if cfg.tied_embed:
        out["lm_head.weight"] = state_dict["embed.W_E"]
    else:
        if torch.any(state_dict["unembed.b_U"] != 0):
            raise ValueError(
                "GPT-2's lm_head has no bias, but this model's unembed.b_U is not zero; it cannot be exported"
            )
        out["lm_head.weight"] = state_dict["unembed.W_U"].T
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def gpt2_config_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """Keyword arguments of a ``GPT2Config`` with the architecture of ``cfg`` (dropout off).

    Example:
        >>> gpt2_config_kwargs(ModelConfig())["n_inner"]
        256
    """
    _check_exportable(cfg)
    return {
        "vocab_size": cfg.d_vocab,
        "n_positions": cfg.n_ctx,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_ff,
        "activation_function": OUR_ACTIVATIONS[cfg.act],
        "layer_norm_epsilon": cfg.ln_eps,
        "initializer_range": cfg.init_std,
        "tie_word_embeddings": cfg.tied_embed,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "bos_token_id": None,
        "eos_token_id": None,
    }


# ---------------------------------------------------------------------- helpers
def _strip_prefix(raw: dict[str, Any]) -> dict[str, Tensor]:
    """Keys without ``transformer.``, mask buffers dropped; ``lm_head.weight`` kept as is."""
    sd: dict[str, Tensor] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise TypeError(f"a state dict maps names to tensors; got {key!r} -> {type(value).__name__}")
        if key.endswith(IGNORED_SUFFIXES):
            continue
        sd[key.removeprefix("transformer.")] = value
    return sd


def _field(config: Any, name: str, default: Any) -> Any:
    if config is None:
        return default
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _config_from(sd: dict[str, Tensor], config: Any) -> ModelConfig:
    """Sizes from the weights, checked against ``config``; options from ``config``."""
    _require(sd, ["wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"], "GPT-2 state dict")
    layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"h\.(\d+)\.", k))})
    if layers != list(range(len(layers))) or not layers:
        raise ValueError(f"GPT-2 state dict has blocks {layers}; expected h.0 .. h.N-1 with N >= 1")
    d_vocab, d_model = sd["wte.weight"].shape
    sizes = {
        "vocab_size": d_vocab,
        "n_embd": d_model,
        "n_positions": sd["wpe.weight"].shape[0],
        "n_layer": len(layers),
    }
    for name, value in sizes.items():
        given = _field(config, name, None)
        if given is not None and given != value:
            raise ValueError(f"config says {name}={given} but the weights have {name}={value}")
    for name, supported in UNSUPPORTED:
        if _field(config, name, supported) != supported:
            raise ValueError(f"GPT-2 option {name}={_field(config, name, None)!r} is not supported by MiniGPT")
    n_head = _field(config, "n_head", None)
    if n_head is None:
        raise ValueError(
            'the number of heads cannot be read from GPT-2 weights; pass config=GPT2Config(...) or config={"n_head": N}'
        )
    act = _field(config, "activation_function", "gelu_new")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"activation_function={act!r} is not supported; MiniGPT has {sorted(HF_ACTIVATIONS)}")
    _require(sd, [f"h.{layer}.{k}" for layer in layers for k in _BLOCK_KEYS], "GPT-2 state dict")
    return ModelConfig(
        d_model=d_model,
        n_heads=n_head,
        n_layers=len(layers),
        d_ff=sd["h.0.mlp.c_fc.weight"].shape[1],
        d_vocab=d_vocab,
        n_ctx=sizes["n_positions"],
        positional="learned",
        norm="pre",
        act=HF_ACTIVATIONS[act],
        tied_embed=_is_tied(sd, config),
        bias=True,
        ln_eps=float(_field(config, "layer_norm_epsilon", 1e-5)),
        init_std=float(_field(config, "initializer_range", 0.02)),
    )


def _is_tied(sd: dict[str, Tensor], config: Any) -> bool:
    head, wte = sd.get("lm_head.weight"), sd["wte.weight"]
    same = head is None or head is wte or (head.shape == wte.shape and torch.equal(head, wte))
    tied = _field(config, "tie_word_embeddings", None)
    if tied is None:
        return same
    if tied and not same:
        raise ValueError("config has tie_word_embeddings=True but lm_head.weight differs from wte.weight")
    if not tied and head is None:
        raise ValueError("config has tie_word_embeddings=False but the state dict has no lm_head.weight")
    return bool(tied)


def _convert_weights(sd: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
    known = {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias", "lm_head.weight"}
    known |= {f"h.{layer}.{k}" for layer in range(cfg.n_layers) for k in _BLOCK_KEYS}
    unknown = sorted(set(sd) - known)
    if unknown:
        raise ValueError(f"GPT-2 state dict has keys MiniGPT has no place for: {unknown[:8]}")
    out = {
        "embed.W_E": sd["wte.weight"],
        "pos_embed.W_pos": sd["wpe.weight"],
        "ln_final.w": sd["ln_f.weight"],
        "ln_final.b": sd["ln_f.bias"],
    }
    for layer in range(cfg.n_layers):
        hf, ours = f"h.{layer}.", f"blocks.{layer}."
        _check_shape(sd, hf + "attn.c_attn.weight", (d, 3 * d))
        w = sd[hf + "attn.c_attn.weight"].reshape(d, 3, h, dh)
        b = sd[hf + "attn.c_attn.bias"].reshape(3, h, dh)
        for i, n in enumerate("QKV"):
            out[ours + f"attn.W_{n}"] = w[:, i].permute(1, 0, 2)  # [head, d_model, d_head]
            out[ours + f"attn.b_{n}"] = b[i]
        out[ours + "attn.W_O"] = sd[hf + "attn.c_proj.weight"].reshape(h, dh, d)
        out[ours + "attn.b_O"] = sd[hf + "attn.c_proj.bias"]
        for i in (1, 2):
            out[ours + f"ln{i}.w"] = sd[hf + f"ln_{i}.weight"]
            out[ours + f"ln{i}.b"] = sd[hf + f"ln_{i}.bias"]
        _check_shape(sd, hf + "mlp.c_fc.weight", (d, cfg.d_ff))
        out[ours + "mlp.W_in"] = sd[hf + "mlp.c_fc.weight"]
        out[ours + "mlp.b_in"] = sd[hf + "mlp.c_fc.bias"]
        out[ours + "mlp.W_out"] = sd[hf + "mlp.c_proj.weight"]
        out[ours + "mlp.b_out"] = sd[hf + "mlp.c_proj.bias"]
    if not cfg.tied_embed:
        out["unembed.W_U"] = sd["lm_head.weight"].T
        out["unembed.b_U"] = torch.zeros(cfg.d_vocab, dtype=sd["wte.weight"].dtype, device=sd["wte.weight"].device)
    return out


def _check_shape(sd: Mapping[str, Tensor], key: str, shape: tuple[int, ...]) -> None:
    if tuple(sd[key].shape) != shape:
        raise ValueError(f"{key} has shape {tuple(sd[key].shape)}, expected {shape} for this config")


def _require(sd: Mapping[str, Any], keys: list[str], what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise KeyError(f"{what} is missing {len(missing)} keys: {missing[:8]}")


def _check_exportable(cfg: ModelConfig) -> None:
    problems = [
        msg
        for bad, msg in (
            (cfg.norm != "pre", f"norm={cfg.norm!r} (GPT-2 is pre-norm)"),
            (cfg.positional != "learned", f"positional={cfg.positional!r} (GPT-2 learns positions)"),
            (not cfg.bias, "bias=False (GPT-2 has biases)"),
            (cfg.attn_only, "attn_only=True (GPT-2 blocks have MLPs)"),
            (cfg.act not in OUR_ACTIVATIONS, f"act={cfg.act!r}"),
        )
        if bad
    ]
    if problems:
        raise ValueError(f"this MiniGPT cannot be written as GPT-2: {'; '.join(problems)}")


def _our_keys(cfg: ModelConfig) -> list[str]:
    keys = ["embed.W_E", "pos_embed.W_pos", "ln_final.w", "ln_final.b"]
    per_block = ["ln1.w", "ln1.b", "ln2.w", "ln2.b", "mlp.W_in", "mlp.b_in", "mlp.W_out", "mlp.b_out", "attn.b_O"]
    per_block += [f"attn.{w}_{n}" for w in "Wb" for n in "QKV"] + ["attn.W_O"]
    keys += [f"blocks.{layer}.{k}" for layer in range(cfg.n_layers) for k in per_block]
    return keys + ([] if cfg.tied_embed else ["unembed.W_U", "unembed.b_U"])
