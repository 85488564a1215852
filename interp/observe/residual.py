"""Residual-stream decomposition: which component wrote what into the residual stream.

Every sublayer *adds* its output to the residual stream, so with ``norm="pre"`` or ``norm="none"``
the final residual (the input of the final LayerNorm, i.e. the last ``hook_resid_post``) is exactly
the sum of the writes below. With ``norm="post"`` each block re-normalises the whole stream, so the
writes are still defined (:func:`write_norms` works) but they no longer sum to the final residual
and :func:`residual_stack` refuses.

Component names (stable; the ``component`` column of every frame in :mod:`interp`):

=================  ==========================================  ==========================================
component          what                                        read from the cache
=================  ==========================================  ==========================================
``embed``          token embedding                             ``hook_embed``
``pos_embed``      learned or sinusoidal position embedding    ``hook_pos_embed`` (absent for rotary)
``L{l}H{h}``       head ``h`` of layer ``l``: ``z_h @ W_O[h]``  ``attn.hook_result`` if cached, else
                                                               ``attn.hook_z`` and ``W_O``
``L{l}.attn_bias`` attention output bias ``b_O`` of layer l    the weights (absent when ``bias=False``)
``L{l}.attn``      whole attention output (``per_head=False``)  ``hook_attn_out`` (includes ``b_O``)
``L{l}.mlp``       MLP output of layer l (includes ``b_out``)  ``hook_mlp_out`` (absent when attn_only)
=================  ==========================================  ==========================================

Label columns (one row per component, see :mod:`interp.common.vocabulary`): ``component`` (str), ``layer``
(Int64; <NA> for ``embed`` and ``pos_embed``), ``head`` (Int64; <NA> unless the row is a single head),
``component_type`` (str: ``embed``, ``pos_embed``, ``head``, ``attn_bias``, ``attn`` or ``mlp``).

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> tokens = model.to_tokens("hello")
    >>> _, cache = model.run_with_cache(tokens)
    >>> stack, labels = residual_stack(model, tokens, cache)
    >>> stack.shape, list(labels.component[:3])
    (torch.Size([14, 1, 6, 64]), ['embed', 'pos_embed', 'L0H0'])
    >>> bool(torch.allclose(stack.sum(0), cache["resid_post", 1], atol=1e-5))
    True
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.checks import check_index, check_model, prepare, require_finite
from interp.common.vocabulary import nullable_ints
from model.network.cache import ActivationCache
from model.network.decompose import Write, head_results, residual_writes
from model.network.labels import component_label
from model.network.minigpt import MiniGPT
from model.network.token_ids import token_labels
from model.network.weights import CacheWeights

LABEL_COLUMNS = ["component", "layer", "head", "component_type"]

POST_NORM_MESSAGE = (
    "norm='post' re-normalises the whole residual stream after every sublayer (resid = LN(resid + write)), "
    "so the final residual is not a sum of the sublayer writes and no linear decomposition of it exists; "
    "use a model with norm='pre' or norm='none', or ablation / activation patching for post-norm models"
)


def require_additive(model: MiniGPT, what: str) -> None:
    """Raise a ValueError naming ``what`` when the model is post-norm (see :data:`POST_NORM_MESSAGE`)."""
    if model.cfg.norm == "post":
        raise ValueError(f"{what} is not defined for this model: {POST_NORM_MESSAGE}")


def head_writes(
    model: MiniGPT, tokens: Int[Tensor, "batch pos"], cache: ActivationCache | None = None, *, layer: int
) -> Float[Tensor, "batch pos head d_model"]:
    """What each head of ``layer`` adds to the residual stream (without ``b_O``).

    Read from ``attn.hook_result`` when the cache has it, else computed as ``z_h @ W_O[h]`` from ``attn.hook_z``.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> head_writes(model, model.to_tokens("hi"), layer=0).shape
        torch.Size([1, 3, 4, 64])
    """
    model, _, cache = prepare(model, tokens, cache, what="head_writes")
    return _head_writes(model, cache, check_index(layer, model.cfg.n_layers, "layer"))


def _head_writes(model: MiniGPT, cache: ActivationCache, layer: int) -> Float[Tensor, "batch pos head d_model"]:
    return head_results(cache, CacheWeights.of(model), layer)  # the one core (model.network.decompose)


def _writes(model: MiniGPT, cache: ActivationCache, per_head: bool) -> list[Write]:
    """``(component, layer, head, component_type, write [batch, pos, d_model])`` for every residual write, in order
    (:func:`model.network.decompose.residual_writes`, which the cache's TransformerLens methods use too)."""
    return residual_writes(cache, CacheWeights.of(model), per_head)


def label_frame(rows: list[tuple]) -> pd.DataFrame:
    """Label rows ``(component, layer, head, [neuron,] component_type)`` as a frame with nullable index columns."""
    if not isinstance(rows, list | tuple):
        raise TypeError(f"label rows must be a list of tuples, got {type(rows).__name__}")
    if rows and ({len(row) for row in rows} - {len(rows[0])} or len(rows[0]) not in (4, 5)):
        raise ValueError(
            f"label rows must all be (component, layer, head, [neuron,] component_type), got lengths "
            f"{sorted({len(row) for row in rows})}"
        )
    return _label_frame(tuple(tuple(row) for row in rows)).copy()


@functools.lru_cache(maxsize=64)
def _label_frame(rows: tuple[tuple, ...]) -> pd.DataFrame:
    """:func:`label_frame` of checked rows, kept: a model's labels are the same on every call (callers only read)."""
    names = LABEL_COLUMNS if not rows or len(rows[0]) == 4 else [*LABEL_COLUMNS[:3], "neuron", LABEL_COLUMNS[3]]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    frame = pd.DataFrame({name: list(values) for name, values in zip(names, columns, strict=True)})
    for name in ("layer", "head", "neuron"):
        if name in frame:
            frame[name] = nullable_ints(frame[name].tolist())
    return frame


def _labels(writes: list[Write]) -> pd.DataFrame:
    return _label_frame(tuple(w[:4] for w in writes))


def _takeable(values: np.ndarray | pd.api.extensions.ExtensionArray) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """Per-position strings as the pandas array a frame would hold, so repeating them per row copies no Python
    objects (``np.repeat`` of an object array, then the frame's conversion to strings, cost more than the maths)."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        return pd.Series(values, copy=False).array
    return values


@functools.lru_cache(maxsize=8)
def _vocabulary_strings(symbols: tuple[str, ...] | None, d_vocab: int) -> pd.api.extensions.ExtensionArray:
    return _takeable(np.asarray(token_labels(None, range(d_vocab)) if symbols is None else symbols, dtype=object))


def _strings(model: MiniGPT, ids: Tensor) -> pd.api.extensions.ExtensionArray:
    """The strings of checked ids (flattened) as a pandas array: ``token_labels`` by one vectorised take."""
    symbols = None if model.tokenizer is None else model.tokenizer.symbols
    return _vocabulary_strings(symbols, model.cfg.d_vocab).take(ids.reshape(-1).cpu().numpy())


@torch.no_grad()
def residual_stack(
    model: MiniGPT, tokens: Int[Tensor, "batch pos"], cache: ActivationCache | None = None, per_head: bool = True
) -> tuple[Float[Tensor, "component batch pos d_model"], pd.DataFrame]:
    """Every write into the residual stream, stacked: they sum to the final residual (before ``ln_final``).

    Returns ``(stack, labels)``: ``stack[i]`` is the write of component ``labels.component[i]``
    (see the module docstring for names and label columns). ``per_head=False`` gives one
    ``L{l}.attn`` row per layer (the whole ``hook_attn_out``, bias included) instead of the heads
    and ``L{l}.attn_bias``. Post-norm models raise a ValueError.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> stack, labels = residual_stack(model, model.to_tokens("abc"), per_head=False)
        >>> list(labels.component)
        ['embed', 'pos_embed', 'L0.attn', 'L0.mlp', 'L1.attn', 'L1.mlp']
    """
    model, _, cache = prepare(model, tokens, cache, what="residual_stack")
    require_additive(model, "residual_stack")
    if not isinstance(per_head, bool):
        raise TypeError(f"per_head must be True or False, got {per_head!r}")
    writes = _writes(model, cache, per_head)
    stack = torch.stack([w[4] for w in writes])
    require_finite(stack, "residual_stack", model, cache=cache)
    return stack, _labels(writes)


@torch.no_grad()
def write_norms(model: MiniGPT, tokens: Int[Tensor, "batch pos"], cache: ActivationCache | None = None) -> pd.DataFrame:
    """L2 norm of every component's write at every position (per head), for a stacked bar chart.

    Defined for every config (post-norm included: the writes exist, they just do not sum to the final
    residual). Columns: ``batch`` (int), ``pos`` (int), ``pos_str``, ``component``, ``layer``, ``head``,
    ``component_type`` (as in the module docstring), ``norm`` (float, ``||write[batch, pos]||_2``). Rows are
    ordered by batch, then pos, then component in residual order.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> df = write_norms(model, model.to_tokens("hi"))
        >>> df.shape, df.pos_str[0]
        ((42, 8), '<bos>')
    """
    model, tokens, cache = prepare(model, tokens, cache, what="write_norms")
    writes = _writes(model, cache, per_head=True)
    norms = torch.stack([w[4] for w in writes]).norm(dim=-1)  # component batch pos
    require_finite(norms, "write_norms", model, cache=cache)
    return long_frame(norms, _labels(writes), "norm", pos_str=_strings(model, tokens))


def pos_strings(model: MiniGPT, tokens: Int[Tensor, "batch pos"]) -> np.ndarray:
    """``[batch, pos]`` array of the token strings (the ``pos_str`` column), as ``model.to_str_tokens`` gives them."""
    if not isinstance(tokens, Tensor):
        raise TypeError(f"tokens must be a [batch, pos] tensor of ids, got {type(tokens).__name__}")
    labels = token_labels(model.tokenizer, tokens.reshape(-1).tolist())
    return np.asarray(labels, dtype=object).reshape(tuple(tokens.shape))


def long_frame(
    values: Float[Tensor, "component batch pos"],
    labels: pd.DataFrame,
    value_name: str,
    per_position: dict[str, Tensor | np.ndarray | pd.api.extensions.ExtensionArray] | None = None,
    pos_str: np.ndarray | pd.api.extensions.ExtensionArray | None = None,
) -> pd.DataFrame:
    """Long frame with columns ``batch, pos, [pos_str], *per_position, *labels, value_name``; rows batch-, pos-,
    component-major.

    ``labels`` has one row per component; ``per_position`` maps column names to ``[batch, pos]`` values
    (tensors, arrays, or flat pandas arrays such as nullable ints of ``batch * pos`` entries).
    """
    if values.ndim != 3 or len(labels) != values.shape[0]:
        raise ValueError(
            f"long_frame needs values [component, batch, pos] with one label row per component, got values "
            f"{tuple(values.shape)} and {len(labels)} label rows"
        )
    n_comp, batch, pos = values.shape
    per_position = {**({} if pos_str is None else {"pos_str": pos_str}), **(per_position or {})}
    for name, value in per_position.items():
        if len(value) * (1 if value.ndim == 1 else value.shape[1]) != batch * pos:
            raise ValueError(f"per_position[{name!r}] has shape {tuple(value.shape)}, expected {(batch, pos)}")
    columns: dict[str, object] = {
        "batch": np.repeat(np.arange(batch), pos * n_comp),
        "pos": np.tile(np.repeat(np.arange(pos), n_comp), batch),
    }
    repeat = np.repeat(np.arange(batch * pos), n_comp)
    for name, value in per_position.items():
        if isinstance(value, Tensor):
            flat = value.reshape(-1).cpu().numpy()
        else:
            flat = _takeable(value if isinstance(value, pd.api.extensions.ExtensionArray) else value.reshape(-1))
        columns[name] = flat.take(repeat) if hasattr(flat, "take") else np.asarray(flat)[repeat]
    component_index = np.tile(np.arange(n_comp), batch * pos)
    for name in labels.columns:  # ExtensionArray.take: no per-row Python objects for the string columns
        columns[name] = labels[name].array.take(component_index)
    columns[value_name] = values.permute(1, 2, 0).reshape(-1).double().cpu().numpy()
    return pd.DataFrame(columns)


def final_resid_name(model: MiniGPT) -> str:
    """Hook name of the final residual stream (the last block's ``hook_resid_post``)."""
    return _final_resid_name(check_model(model))


def _final_resid_name(model: MiniGPT) -> str:
    """:func:`final_resid_name` of a checked model (the analyses check the model once, where it comes in)."""
    return f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"


@torch.no_grad()
def accumulated_resid(
    model: MiniGPT, tokens: Int[Tensor, "batch pos"], cache: ActivationCache | None = None
) -> tuple[Float[Tensor, "stage batch pos d_model"], list[str]]:
    """The residual stream at each layer boundary: ``resid_pre`` of every block, then the final ``resid_post``.

    Stage labels are ``L{l}.resid_pre`` for ``l = 0 .. n_layers - 1`` and ``L{n_layers-1}.resid_post``
    (``n_layers + 1`` stages; stage ``i`` has seen the embeddings and the first ``i`` blocks).
    Defined for every config; with ``norm="post"`` each stage after the first is a LayerNorm output.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> stages, labels = accumulated_resid(model, model.to_tokens("hi"))
        >>> stages.shape, labels
        (torch.Size([3, 1, 3, 64]), ['L0.resid_pre', 'L1.resid_pre', 'L1.resid_post'])
    """
    model, _, cache = prepare(model, tokens, cache, what="accumulated_resid")
    return _accumulated(model, cache)


def _accumulated(model: MiniGPT, cache: ActivationCache) -> tuple[Float[Tensor, "stage batch pos d_model"], list[str]]:
    n_layers = model.cfg.n_layers
    labels = [component_label("resid_pre", layer) for layer in range(n_layers)]
    labels.append(component_label("resid_post", n_layers - 1))
    stages = torch.stack([cache["resid_pre", layer] for layer in range(n_layers)] + [cache[_final_resid_name(model)]])
    require_finite(stages, "accumulated_resid", model, cache=cache)
    return stages, labels
