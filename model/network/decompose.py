"""The residual-stream decomposition core: each head's write, every write in order, and the LayerNorm scaling.

One implementation, used twice: by the cache's TransformerLens methods (:mod:`model.network.cache_methods`) and by
the tidy frames of :mod:`interp.observe.residual`. A head's write is ``hook_result`` when recorded, else ``z @ W_O``
from ``hook_z`` (computed per layer, never stored). :func:`residual_writes` lists ``(component, layer, head,
component_type, write)`` for every write into the residual stream, in forward order; they sum to the final
residual on pre-norm and norm-free models.

:func:`apply_slice` is TransformerLens's ``Slice`` rule: None keeps the axis, an int picks one entry (dropping the
axis), a tuple is ``slice(*tuple)``, a slice is itself, a list / array / tensor picks those entries.

Example:
    >>> import torch
    >>> apply_slice(torch.arange(6).reshape(2, 3), -1, dim=-1).tolist(), apply_slice(torch.arange(5), (1, 3)).tolist()
    ([2, 5], [1, 2])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from model.network.labels import component_label
from model.network.weights import CacheWeights

Write = tuple[str, int | None, int | None, str, Tensor]  # component, layer, head, component_type, [..., d_model]
SliceLike = int | tuple | slice | list | np.ndarray | Tensor | None


def check_slice(value: object, name: str = "pos_slice") -> None:
    """TypeError unless ``value`` is something :func:`apply_slice` takes."""
    if isinstance(value, bool) or not (
        value is None or isinstance(value, int | tuple | slice | list | np.ndarray | Tensor)
    ):
        raise TypeError(
            f"{name} must be None, an int, a (start, stop[, step]) tuple, a slice or a list of indices, "
            f"got {type(value).__name__}"
        )


def apply_slice(tensor: Tensor, index: SliceLike, dim: int = 0) -> Tensor:
    """``tensor`` indexed along ``dim`` by ``index`` (TransformerLens's ``Slice.apply``; see the module docstring)."""
    check_slice(index)
    if index is None:
        return tensor
    if isinstance(index, tuple):
        index = slice(*index)
    elif isinstance(index, list | np.ndarray | Tensor):
        index = torch.as_tensor(np.asarray(index.cpu() if isinstance(index, Tensor) else index), dtype=torch.long)
        index = index.to(tensor.device)
    where = [slice(None)] * tensor.ndim
    try:
        where[dim] = index
        return tensor[tuple(where)]
    except IndexError as err:
        raise IndexError(f"index {index!r} is out of range for axis {dim} of size {tensor.shape[dim]}: {err}") from None


def head_results(acts: Mapping[str, Tensor], weights: CacheWeights, layer: int) -> Float[Tensor, "... head d_model"]:
    """What each head of ``layer`` writes (without ``b_O``): ``hook_result`` if recorded, else ``z_h @ W_O[h]``."""
    name = f"blocks.{layer}.attn.hook_result"
    if name in acts:
        return acts[name]
    z = acts[f"blocks.{layer}.attn.hook_z"]
    return torch.einsum("...he,hed->...hd", z, weights.W_O[layer].to(z.device))


def neuron_results(
    acts: Mapping[str, Tensor], weights: CacheWeights, layer: int, neuron_slice: SliceLike = None
) -> Float[Tensor, "... neuron d_model"]:
    """What each MLP neuron of ``layer`` writes (without ``b_out``): ``post[..., n, None] * W_out[n]``."""
    if not weights.W_out:
        raise ValueError("neuron results need MLPs, but this model is attention-only")
    post = apply_slice(acts[f"blocks.{layer}.mlp.hook_post"], neuron_slice, dim=-1)
    W_out = apply_slice(weights.W_out[layer].to(post.device), neuron_slice, dim=0)
    return post[..., None] * W_out


def residual_writes(acts: Mapping[str, Tensor], weights: CacheWeights, per_head: bool) -> list[Write]:
    """Every write into the residual stream in forward order (see the module docstring); ``per_head=False`` gives
    one ``L{l}.attn`` row per layer (``hook_attn_out``, ``b_O`` included) instead of the heads and the bias row."""
    embed = acts["hook_embed"]
    writes: list[Write] = [("embed", None, None, "embed", embed)]
    if "hook_pos_embed" in acts:
        writes.append(("pos_embed", None, None, "pos_embed", acts["hook_pos_embed"]))
    for layer in range(weights.cfg.n_layers):
        if per_head:
            result = head_results(acts, weights, layer)
            writes += [
                (component_label("head", layer, h), layer, h, "head", result[..., h, :])
                for h in range(result.shape[-2])
            ]
            if weights.cfg.bias:
                bias = weights.b_O[layer].to(embed.device).expand_as(embed)
                writes.append((component_label("attn_bias", layer), layer, None, "attn_bias", bias))
        else:
            writes.append((component_label("attn", layer), layer, None, "attn", acts[f"blocks.{layer}.hook_attn_out"]))
        if not weights.cfg.attn_only:
            writes.append((component_label("mlp", layer), layer, None, "mlp", acts[f"blocks.{layer}.hook_mlp_out"]))
    return writes


def scale_stack(
    acts: Mapping[str, Tensor],
    weights: CacheWeights,
    stack: Float[Tensor, "component ... d_model"],
    layer: int,
    *,
    mlp_input: bool = False,
    pos_slice: SliceLike = None,
    batch_slice: SliceLike = None,
    has_batch_dim: bool = True,
    cache_has_batch_dim: bool = True,
    recompute_ln: bool = False,
) -> Float[Tensor, "component ... d_model"]:
    """TransformerLens's ``apply_ln_to_stack``: centre each component and divide by the *recorded* LayerNorm scale
    of the stream it enters (``ln_final`` at ``layer == n_layers``, else ``ln1`` of ``layer``, ``ln2`` with
    ``mlp_input``). The gain and bias are not applied (TransformerLens assumes them folded into the next weights),
    so this equals the LayerNorm only when its gain is 1 and its bias 0. ``recompute_ln`` at the top applies the
    whole final LayerNorm to each component with its own statistics (the logit lens). No-op without LayerNorm."""
    cfg = weights.cfg
    if cfg.norm == "none":
        return stack
    if has_batch_dim:
        stack = apply_slice(stack, batch_slice, dim=1)
    if recompute_ln and layer == cfg.n_layers and weights.ln_final is not None:
        w, b = weights.ln_final
        return F.layer_norm(stack, w.shape, w.to(stack.device), None if b is None else b.to(stack.device), cfg.ln_eps)
    stack = stack - stack.mean(dim=-1, keepdim=True)
    name = "ln_final.hook_scale" if layer == cfg.n_layers else f"blocks.{layer}.ln{2 if mlp_input else 1}.hook_scale"
    if name not in acts:
        raise KeyError(f"{name!r} is not in this cache; record it (the default cache of run_with_cache has it)")
    scale = apply_slice(acts[name], pos_slice, dim=-2)
    if cache_has_batch_dim:
        scale = apply_slice(scale, batch_slice, dim=0)
    return stack / scale


def check_decomposable(weights: Any) -> CacheWeights:
    """The cache's weight view, or a ValueError when there is none or the model is post-norm."""
    if weights is None:
        raise ValueError(
            "this cache has no weights attached (it was not made by model.run_with_cache); build it as "
            "ActivationCache(activations, model) to use the decomposition methods"
        )
    if weights.cfg.norm == "post":
        raise ValueError(
            "norm='post' re-normalises the whole residual stream after every sublayer, so it is no sum of the "
            "sublayer writes and TransformerLens's decompositions (which assume pre-norm) do not apply"
        )
    return weights
