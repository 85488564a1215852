"""TransformerLens's activation-patching functions, with its signatures, index order and return shapes.

``get_act_patch_*(model, corrupted_tokens, clean_cache, patching_metric)``: run ``corrupted_tokens``, put back one
cell of the clean activation (``clean_cache`` from ``model.run_with_cache(clean_tokens)``) and record
``patching_metric(logits) -> scalar``. As TransformerLens's, the result is the raw metric per cell (no
normalisation; :func:`interp.activation_patching` gives the tidy, normalised frame).

============================================  ====================  ===========================================
function                                      activation            shape
============================================  ====================  ===========================================
``get_act_patch_resid_pre`` / ``_resid_mid``  resid_pre / resid_mid ``[n_layers, pos]``
``get_act_patch_attn_out`` / ``_mlp_out``     attn_out / mlp_out    ``[n_layers, pos]``
``get_act_patch_attn_head_out_all_pos``       z (all positions)     ``[n_layers, n_heads]``
``get_act_patch_attn_head_{q,k,v}_all_pos``   q / k / v             ``[n_layers, n_heads]``
``get_act_patch_attn_head_pattern_all_pos``   pattern               ``[n_layers, n_heads]``
``get_act_patch_attn_head_out_by_pos``        z at one position     ``[n_layers, pos, n_heads]``
``get_act_patch_attn_head_{q,k,v}_by_pos``    q / k / v             ``[n_layers, pos, n_heads]``
``get_act_patch_attn_head_pattern_by_pos``    pattern, one query    ``[n_layers, n_heads, dest_pos]``
``..._pattern_dest_src_pos``                  one pattern entry     ``[n_layers, n_heads, dest_pos, src_pos]``
``get_act_patch_block_every``                 resid_pre, attn, mlp  ``[3, n_layers, pos]``
``get_act_patch_attn_head_all_pos_every``     out, q, k, v, pattern ``[5, n_layers, n_heads]``
``get_act_patch_attn_head_by_pos_every``      out, q, k, v, pattern ``[5, n_layers, pos, n_heads]``
============================================  ====================  ===========================================

How it runs: TransformerLens's ``generic_activation_patch`` runs one full hooked forward per cell. Here the cells of
one layer are stacked into one batch and run from that layer's ``resid_pre`` upwards (the corrupted residual, from
one cached corrupted pass; nothing below the patched layer changes), in chunks, with one hook that writes each
variant's cell. The patch setters are TransformerLens's (``setter(corrupted_activation, index, clean_activation)``
on a ``[batch, ...]`` activation, ``index[0]`` the layer), applied to each variant's slice of the batch.

Example:
    >>> from model import MiniGPT
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> clean, corrupted = model.to_tokens("abcdabcd"), model.to_tokens("abcdabce")
    >>> _, clean_cache = model.run_with_cache(clean)
    >>> metric = lambda logits: logits[0, -1].log_softmax(-1)[model.to_single_token("d")]
    >>> get_act_patch_resid_pre(model, corrupted, clean_cache, metric).shape
    torch.Size([2, 9])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import partial

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.common.metrics import FunctionMetric, Loss
from interp.compat.utils import get_act_name
from interp.intervene.engine import default_chunk_size, run_variants
from model.network.cache import ActivationCache
from model.network.minigpt import MiniGPT

AXES = ("layer", "pos", "head_index", "head", "src_pos", "dest_pos")


def _index(index: object, names: str, setter: str) -> list[int]:
    """``index`` as a list of ints of the length ``names`` says, or a ValueError naming the setter."""
    want = names.split(", ")
    try:
        values = [int(v) for v in index]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != len(want):
        raise ValueError(f"{setter} takes index [{names}], got {index!r}")
    return values


def layer_pos_patch_setter(corrupted_activation: Tensor, index: Sequence[int], clean_activation: Tensor) -> Tensor:
    """``index = [layer, pos]``, activation ``[batch, pos, ...]``."""
    _, pos = _index(index, "layer, pos", "layer_pos_patch_setter")
    corrupted_activation[:, pos, ...] = clean_activation[:, pos, ...]
    return corrupted_activation


def layer_pos_head_vector_patch_setter(corrupted_activation: Tensor, index: Sequence[int], clean_activation: Tensor):
    """``index = [layer, pos, head]``, activation ``[batch, pos, head, ...]`` (q, k, v, z, result)."""
    _, pos, head = _index(index, "layer, pos, head", "layer_pos_head_vector_patch_setter")
    corrupted_activation[:, pos, head] = clean_activation[:, pos, head]
    return corrupted_activation


def layer_head_vector_patch_setter(corrupted_activation: Tensor, index: Sequence[int], clean_activation: Tensor):
    """``index = [layer, head]``, activation ``[batch, pos, head, ...]``: the head at every position."""
    _, head = _index(index, "layer, head", "layer_head_vector_patch_setter")
    corrupted_activation[:, :, head] = clean_activation[:, :, head]
    return corrupted_activation


def layer_head_pattern_patch_setter(corrupted_activation: Tensor, index: Sequence[int], clean_activation: Tensor):
    """``index = [layer, head]``, activation ``[batch, head, dest_pos, src_pos]``."""
    _, head = _index(index, "layer, head", "layer_head_pattern_patch_setter")
    corrupted_activation[:, head] = clean_activation[:, head]
    return corrupted_activation


def layer_head_pos_pattern_patch_setter(corrupted_activation: Tensor, index: Sequence[int], clean_activation: Tensor):
    """``index = [layer, head, dest_pos]``, activation ``[batch, head, dest_pos, src_pos]``."""
    _, head, dest = _index(index, "layer, head, dest_pos", "layer_head_pos_pattern_patch_setter")
    corrupted_activation[:, head, dest] = clean_activation[:, head, dest]
    return corrupted_activation


def layer_head_dest_src_pos_pattern_patch_setter(
    corrupted_activation: Tensor, index: Sequence[int], clean_activation: Tensor
) -> Tensor:
    """``index = [layer, head, dest_pos, src_pos]``, activation ``[batch, head, dest_pos, src_pos]``."""
    _, head, dest, src = _index(index, "layer, head, dest_pos, src_pos", "layer_head_dest_src_pos_pattern_patch_setter")
    corrupted_activation[:, head, dest, src] = clean_activation[:, head, dest, src]
    return corrupted_activation


def make_df_from_ranges(column_max_ranges: Sequence[int], column_names: Sequence[str]) -> pd.DataFrame:
    """Every combination of ``range(n)`` for each column, the last column fastest (TransformerLens's order).

    Example:
        >>> make_df_from_ranges([2, 2], ["layer", "pos"]).values.tolist()
        [[0, 0], [0, 1], [1, 0], [1, 1]]
    """
    if len(column_max_ranges) != len(column_names) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in column_max_ranges
    ):
        raise ValueError(
            f"make_df_from_ranges needs one positive int range per column name, got {list(column_max_ranges)} for "
            f"{list(column_names)}"
        )
    rows = list(itertools.product(*[range(n) for n in column_max_ranges]))
    return pd.DataFrame(rows, columns=list(column_names))


def _check(model: object, tokens: object, cache: object, metric: object, setter: object) -> Tensor:
    if not isinstance(model, MiniGPT):
        raise TypeError(f"model must be a MiniGPT, got {type(model).__name__}")
    tokens = model.check_tokens(tokens)
    if not isinstance(cache, ActivationCache):
        raise TypeError(f"clean_cache must be the ActivationCache of model.run_with_cache(clean_tokens), got "
                        f"{type(cache).__name__}")  # fmt: skip
    if not cache.has_batch_dim:
        raise ValueError("clean_cache has no batch dim (remove_batch_dim); record it with the default batch dim")
    for name, fn in (("patching_metric", metric), ("patch_setter", setter)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    return tokens


def _index_rows(model: MiniGPT, n_pos: int, axis_names: Sequence[str] | None, index_df: pd.DataFrame | None):
    if (axis_names is None) == (index_df is None):
        raise ValueError("give exactly one of index_axis_names and index_df")
    if index_df is not None:
        if not isinstance(index_df, pd.DataFrame) or index_df.empty:
            raise TypeError("index_df must be a non-empty pandas DataFrame of int indices, layer first")
        return index_df, None
    bad = [a for a in axis_names if a not in AXES]
    if bad or isinstance(axis_names, str):
        raise ValueError(f"index_axis_names must name axes among {list(AXES)}, got {axis_names!r}")
    sizes = {"layer": model.cfg.n_layers, "head": model.cfg.n_heads, "head_index": model.cfg.n_heads}
    sizes |= {"pos": n_pos, "src_pos": n_pos, "dest_pos": n_pos}
    ranges = [sizes[a] for a in axis_names]
    return make_df_from_ranges(ranges, axis_names), ranges


def _patched_metrics(model, tokens, clean_act, name, layer, rows, setter, metric, corr_resid) -> Tensor:
    """The metric of each variant: ``rows`` (index lists) patched into ``name``, run batched by the engine from
    ``layer``'s ``resid_pre`` (from the embeddings for an activation outside the blocks), with one hook writing each
    variant's cell."""
    batch, n_pos = tokens.shape
    in_block = name.startswith(f"blocks.{layer}.")
    chunk: list[list[int]] = []  # the index lists of the variants the engine is running now

    def make(start: int, stop: int) -> Tensor:
        chunk[:] = rows[start:stop]
        if not in_block:  # embed, pos_embed, ln_final: the whole forward, from the (hooked) embeddings
            return model.embed_tokens(tokens.repeat(stop - start, 1)).unflatten(0, (stop - start, batch))
        return corr_resid.expand(stop - start, *corr_resid.shape)

    def patch(act: Tensor, hook) -> Tensor:
        act = act.clone().unflatten(0, (len(chunk), batch))
        for i, index in enumerate(chunk):
            patched = setter(act[i], index, clean_act.to(act.device))
            if patched is not act[i]:
                act[i] = patched
        return act.flatten(0, 1)

    per_variant = FunctionMetric(lambda logits, _: metric(logits))  # TransformerLens's metrics read the logits alone
    chunk_size = default_chunk_size(model, n_pos, Loss())
    with model.hooks([(name, patch)]):
        return run_variants(model, make, len(rows), layer if in_block else 0, "resid_pre", per_variant, tokens,
                            chunk_size)  # fmt: skip


def generic_activation_patch(
    model: MiniGPT,
    corrupted_tokens: Int[Tensor, "batch pos"],
    clean_cache: ActivationCache,
    patching_metric: Callable[[Float[Tensor, "batch pos d_vocab"]], Tensor],
    patch_setter: Callable[[Tensor, Sequence[int], Tensor], Tensor],
    activation_name: str,
    index_axis_names: Sequence[str] | None = None,
    index_df: pd.DataFrame | None = None,
    return_index_df: bool = False,
) -> Tensor | tuple[Tensor, pd.DataFrame]:
    """TransformerLens's ``generic_activation_patch``: the metric after patching each index of ``index_df`` (or of
    every combination of ``index_axis_names``, layer first) of ``activation_name`` from ``clean_cache`` into the run
    of ``corrupted_tokens``. Shaped by the axes' ranges, or flat ``[len(index_df)]`` with ``index_df``.

    Example:
        >>> from model import MiniGPT
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> _, cache = model.run_with_cache("abab")
        >>> metric = lambda logits: logits[0, -1, 15]
        >>> generic_activation_patch(model, model.to_tokens("abcb"), cache, metric, layer_pos_patch_setter,
        ...                          "resid_pre", index_axis_names=("layer", "pos")).shape
        torch.Size([2, 5])
    """
    tokens = _check(model, corrupted_tokens, clean_cache, patching_metric, patch_setter)
    if not isinstance(return_index_df, bool):
        raise TypeError(f"return_index_df must be True or False, got {return_index_df!r}")
    index_df, ranges = _index_rows(model, tokens.shape[1], index_axis_names, index_df)
    rows = [[int(v) for v in row] for row in index_df.itertuples(index=False)]
    by_layer: dict[int, list[int]] = {}
    for c, row in enumerate(rows):
        by_layer.setdefault(row[0], []).append(c)
    layers = sorted(by_layer)
    resid_names = [f"blocks.{layer}.hook_resid_pre" for layer in layers if 0 <= layer < model.cfg.n_layers]
    values = torch.zeros(len(rows))
    with torch.no_grad():
        _, corr = model.run_with_cache(tokens, names_filter=resid_names)
        for layer in layers:
            name = get_act_name(activation_name, layer)
            if name not in model.hook_names:
                raise KeyError(f"{activation_name!r} at layer {layer} is {name!r}, which this model has no hook for")
            chosen = by_layer[layer]
            corr_resid = corr[f"blocks.{layer}.hook_resid_pre"] if 0 <= layer < model.cfg.n_layers else None
            metrics = _patched_metrics(model, tokens, clean_cache[name], name, layer, [rows[c] for c in chosen],
                                       patch_setter, patching_metric, corr_resid)  # fmt: skip
            values[chosen] = metrics.to(values)
    values = values.to(model.cfg.device)
    out = values if ranges is None else values.reshape(ranges)
    return (out, index_df) if return_index_df else out


def _patch(name: str, setter: Callable, axes: tuple[str, ...], doc: str) -> Callable:
    fn = partial(generic_activation_patch, patch_setter=setter, activation_name=name, index_axis_names=axes)
    fn.__doc__ = f"{doc} (``get_act_patch_*(model, corrupted_tokens, clean_cache, patching_metric)``)."
    return fn


_POS, _HEAD, _POS_HEAD = ("layer", "pos"), ("layer", "head"), ("layer", "pos", "head")
get_act_patch_resid_pre = _patch("resid_pre", layer_pos_patch_setter, _POS, "[n_layers, pos]: resid_pre by position")
get_act_patch_resid_mid = _patch("resid_mid", layer_pos_patch_setter, _POS, "[n_layers, pos]: resid_mid by position")
get_act_patch_attn_out = _patch("attn_out", layer_pos_patch_setter, _POS, "[n_layers, pos]: attn_out by position")
get_act_patch_mlp_out = _patch("mlp_out", layer_pos_patch_setter, _POS, "[n_layers, pos]: mlp_out by position")
get_act_patch_attn_head_out_all_pos = _patch("z", layer_head_vector_patch_setter, _HEAD, "[n_layers, n_heads]: z")
get_act_patch_attn_head_q_all_pos = _patch("q", layer_head_vector_patch_setter, _HEAD, "[n_layers, n_heads]: q")
get_act_patch_attn_head_k_all_pos = _patch("k", layer_head_vector_patch_setter, _HEAD, "[n_layers, n_heads]: k")
get_act_patch_attn_head_v_all_pos = _patch("v", layer_head_vector_patch_setter, _HEAD, "[n_layers, n_heads]: v")
get_act_patch_attn_head_pattern_all_pos = _patch(
    "pattern", layer_head_pattern_patch_setter, ("layer", "head_index"), "[n_layers, n_heads]: the pattern"
)
get_act_patch_attn_head_out_by_pos = _patch(
    "z", layer_pos_head_vector_patch_setter, _POS_HEAD, "[n_layers, pos, n_heads]: z"
)
get_act_patch_attn_head_q_by_pos = _patch(
    "q", layer_pos_head_vector_patch_setter, _POS_HEAD, "[n_layers, pos, n_heads]: q"
)
get_act_patch_attn_head_k_by_pos = _patch(
    "k", layer_pos_head_vector_patch_setter, _POS_HEAD, "[n_layers, pos, n_heads]: k"
)
get_act_patch_attn_head_v_by_pos = _patch(
    "v", layer_pos_head_vector_patch_setter, _POS_HEAD, "[n_layers, pos, n_heads]: v"
)
get_act_patch_attn_head_pattern_by_pos = _patch(
    "pattern", layer_head_pos_pattern_patch_setter, ("layer", "head_index", "dest_pos"),
    "[n_layers, n_heads, dest_pos]: one query row of the pattern",
)  # fmt: skip
get_act_patch_attn_head_pattern_dest_src_pos = _patch(
    "pattern", layer_head_dest_src_pos_pattern_patch_setter, ("layer", "head_index", "dest_pos", "src_pos"),
    "[n_layers, n_heads, dest_pos, src_pos]: one pattern entry",
)  # fmt: skip


def get_act_patch_block_every(model, corrupted_tokens, clean_cache, metric) -> Float[Tensor, "3 layer pos"]:
    """``[3, n_layers, pos]``: resid_pre, attn_out and mlp_out patched by position, stacked (TransformerLens order)."""
    fns = (get_act_patch_resid_pre, get_act_patch_attn_out, get_act_patch_mlp_out)
    return torch.stack([fn(model, corrupted_tokens, clean_cache, metric) for fn in fns])


def get_act_patch_attn_head_all_pos_every(
    model, corrupted_tokens, clean_cache, metric
) -> Float[Tensor, "5 layer head"]:
    """``[5, n_layers, n_heads]``: each head's output, q, k, v and pattern patched at every position."""
    fns = (get_act_patch_attn_head_out_all_pos, get_act_patch_attn_head_q_all_pos, get_act_patch_attn_head_k_all_pos,
           get_act_patch_attn_head_v_all_pos, get_act_patch_attn_head_pattern_all_pos)  # fmt: skip
    return torch.stack([fn(model, corrupted_tokens, clean_cache, metric) for fn in fns])


def get_act_patch_attn_head_by_pos_every(
    model, corrupted_tokens, clean_cache, metric
) -> Float[Tensor, "5 layer pos head"]:
    """``[5, n_layers, pos, n_heads]``: output, q, k, v by position and the pattern by query position."""
    fns = (get_act_patch_attn_head_out_by_pos, get_act_patch_attn_head_q_by_pos, get_act_patch_attn_head_k_by_pos,
           get_act_patch_attn_head_v_by_pos)  # fmt: skip
    results = [fn(model, corrupted_tokens, clean_cache, metric) for fn in fns]
    pattern = get_act_patch_attn_head_pattern_by_pos(model, corrupted_tokens, clean_cache, metric)
    return torch.stack([*results, pattern.permute(0, 2, 1)])
