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

Label columns (one row per component): ``component`` (str), ``layer`` (int; -1 for ``embed`` and
``pos_embed``), ``head`` (int; -1 unless the row is a single head), ``kind`` (str: ``embed``,
``pos_embed``, ``head``, ``attn_bias``, ``attn`` or ``mlp``).

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> _, cache = model.run_with_cache(model.to_tokens("hello"))
    >>> stack, labels = residual_stack(model, cache)
    >>> stack.shape, list(labels.component[:3])
    (torch.Size([14, 1, 6, 64]), ['embed', 'pos_embed', 'L0H0'])
    >>> bool(torch.allclose(stack.sum(0), cache["resid_post", 1], atol=1e-5))
    True
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.checks import check_cache, check_index, check_model, require_finite
from model.cache import ActivationCache
from model.minigpt import MiniGPT

LABEL_COLUMNS = ["component", "layer", "head", "kind"]

POST_NORM_MESSAGE = (
    "norm='post' re-normalises the whole residual stream after every sublayer (resid = LN(resid + write)), "
    "so the final residual is not a sum of the sublayer writes and no linear decomposition of it exists; "
    "use a model with norm='pre' or norm='none', or ablation / activation patching for post-norm models"
)


def require_additive(model: MiniGPT, what: str) -> None:
    """Raise a ValueError naming ``what`` when the model is post-norm (see :data:`POST_NORM_MESSAGE`)."""
    if check_model(model).cfg.norm == "post":
        raise ValueError(f"{what} is not defined for this model: {POST_NORM_MESSAGE}")


def head_writes(model: MiniGPT, cache: ActivationCache, layer: int) -> Float[Tensor, "batch pos head d_model"]:
    """What each head of ``layer`` adds to the residual stream (without ``b_O``).

    Read from ``attn.hook_result`` when the cache has it, else computed as ``z_h @ W_O[h]`` from ``attn.hook_z``.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> _, cache = model.run_with_cache(model.to_tokens("hi"))
        >>> head_writes(model, cache, 0).shape
        torch.Size([1, 3, 4, 64])
    """
    layer = check_index(layer, check_model(model).cfg.n_layers, "layer")
    if ("result", layer) in check_cache(cache):
        return cache["result", layer]
    z = cache["z", layer]
    W_O = model.blocks[layer].attn.W_O.detach().to(z.device)
    return torch.einsum("bphe,hed->bphd", z, W_O)


def _writes(model: MiniGPT, cache: ActivationCache, per_head: bool) -> list[tuple[str, int, int, str, Tensor]]:
    """``(component, layer, head, kind, write [batch, pos, d_model])`` for every residual write, in order."""
    embed = cache["hook_embed"]
    writes = [("embed", -1, -1, "embed", embed)]
    if "hook_pos_embed" in cache:
        writes.append(("pos_embed", -1, -1, "pos_embed", cache["hook_pos_embed"]))
    for layer, block in enumerate(model.blocks):
        if per_head:
            result = head_writes(model, cache, layer)
            writes += [(f"L{layer}H{h}", layer, h, "head", result[:, :, h]) for h in range(result.shape[2])]
            if block.attn.b_O is not None:
                bias = block.attn.b_O.detach().to(embed.device).expand_as(embed)
                writes.append((f"L{layer}.attn_bias", layer, -1, "attn_bias", bias))
        else:
            writes.append((f"L{layer}.attn", layer, -1, "attn", cache["attn_out", layer]))
        if block.mlp is not None:
            writes.append((f"L{layer}.mlp", layer, -1, "mlp", cache["mlp_out", layer]))
    return writes


def _labels(writes: list[tuple[str, int, int, str, Tensor]]) -> pd.DataFrame:
    return pd.DataFrame([w[:4] for w in writes], columns=LABEL_COLUMNS)


@torch.no_grad()
def residual_stack(
    model: MiniGPT, cache: ActivationCache, per_head: bool = True
) -> tuple[Float[Tensor, "component batch pos d_model"], pd.DataFrame]:
    """Every write into the residual stream, stacked: they sum to the final residual (before ``ln_final``).

    Returns ``(stack, labels)``: ``stack[i]`` is the write of component ``labels.component[i]``
    (see the module docstring for names and label columns). ``per_head=False`` gives one
    ``L{l}.attn`` row per layer (the whole ``hook_attn_out``, bias included) instead of the heads
    and ``L{l}.attn_bias``. Post-norm models raise a ValueError.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> _, cache = model.run_with_cache(model.to_tokens("abc"))
        >>> stack, labels = residual_stack(model, cache, per_head=False)
        >>> list(labels.component)
        ['embed', 'pos_embed', 'L0.attn', 'L0.mlp', 'L1.attn', 'L1.mlp']
    """
    require_additive(model, "residual_stack")
    if not isinstance(per_head, bool):
        raise TypeError(f"per_head must be True or False, got {per_head!r}")
    writes = _writes(model, check_cache(cache), per_head)
    stack = torch.stack([w[4] for w in writes])
    require_finite(stack, "residual_stack", model, cache=cache)
    return stack, _labels(writes)


@torch.no_grad()
def write_norms(model: MiniGPT, cache: ActivationCache) -> pd.DataFrame:
    """L2 norm of every component's write at every position (per head), for a stacked bar chart.

    Defined for every config (post-norm included: the writes exist, they just do not sum to the final
    residual). Columns: ``batch`` (int), ``pos`` (int), ``component``, ``layer``, ``head``, ``kind``
    (as in the module docstring), ``norm`` (float, ``||write[batch, pos]||_2``). Rows are ordered by
    batch, then pos, then component in residual order.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> _, cache = model.run_with_cache(model.to_tokens("hi"))
        >>> df = write_norms(model, cache)
        >>> df.shape
        (42, 7)
    """
    writes = _writes(check_model(model), check_cache(cache), per_head=True)
    norms = torch.stack([w[4] for w in writes]).norm(dim=-1)  # component batch pos
    require_finite(norms, "write_norms", model, cache=cache)
    return long_frame(norms, _labels(writes), "norm")


def long_frame(
    values: Float[Tensor, "component batch pos"],
    labels: pd.DataFrame,
    value_name: str,
    per_position: dict[str, Tensor] | None = None,
) -> pd.DataFrame:
    """Long frame with columns ``batch, pos, *per_position, *labels, value_name``; rows batch-, pos-, component-major.

    ``labels`` has one row per component; ``per_position`` maps column names to ``[batch, pos]`` tensors.
    """
    if values.ndim != 3 or len(labels) != values.shape[0]:
        raise ValueError(
            f"long_frame needs values [component, batch, pos] with one label row per component, got values "
            f"{tuple(values.shape)} and {len(labels)} label rows"
        )
    n_comp, batch, pos = values.shape
    for name, tensor in (per_position or {}).items():
        if tuple(tensor.shape) != (batch, pos):
            raise ValueError(f"per_position[{name!r}] has shape {tuple(tensor.shape)}, expected {(batch, pos)}")
    columns: dict[str, object] = {
        "batch": np.repeat(np.arange(batch), pos * n_comp),
        "pos": np.tile(np.repeat(np.arange(pos), n_comp), batch),
    }
    for name, tensor in (per_position or {}).items():
        columns[name] = np.repeat(tensor.reshape(-1).cpu().numpy(), n_comp)
    component_index = np.tile(np.arange(n_comp), batch * pos)
    for name in labels.columns:  # ExtensionArray.take: no per-row Python objects for the string columns
        columns[name] = labels[name].array.take(component_index)
    columns[value_name] = values.permute(1, 2, 0).reshape(-1).double().cpu().numpy()
    return pd.DataFrame(columns)


def final_resid_name(model: MiniGPT) -> str:
    """Hook name of the final residual stream (the last block's ``hook_resid_post``)."""
    return f"blocks.{check_model(model).cfg.n_layers - 1}.hook_resid_post"


@torch.no_grad()
def accumulated_resid(
    model: MiniGPT, cache: ActivationCache
) -> tuple[Float[Tensor, "stage batch pos d_model"], list[str]]:
    """The residual stream at each layer boundary: ``resid_pre`` of every block, then the final ``resid_post``.

    Stage labels are ``L{l}.resid_pre`` for ``l = 0 .. n_layers - 1`` and ``L{n_layers-1}.resid_post``
    (``n_layers + 1`` stages; stage ``i`` has seen the embeddings and the first ``i`` blocks).
    Defined for every config; with ``norm="post"`` each stage after the first is a LayerNorm output.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(), seed=0)
        >>> _, cache = model.run_with_cache(model.to_tokens("hi"))
        >>> stages, labels = accumulated_resid(model, cache)
        >>> stages.shape, labels
        (torch.Size([3, 1, 3, 64]), ['L0.resid_pre', 'L1.resid_pre', 'L1.resid_post'])
    """
    n_layers = check_model(model).cfg.n_layers
    check_cache(cache)
    labels = [f"L{layer}.resid_pre" for layer in range(n_layers)] + [f"L{n_layers - 1}.resid_post"]
    stages = torch.stack([cache["resid_pre", layer] for layer in range(n_layers)] + [cache[final_resid_name(model)]])
    require_finite(stages, "accumulated_resid", model, cache=cache)
    return stages, labels
