"""TransformerLens's decomposition methods of an activation cache, with its arguments, defaults, labels and order.

Mixed into :class:`~model.network.cache.ActivationCache`; built on the one decomposition core,
:mod:`model.network.decompose`. ``layer`` counts blocks: ``layer = n_layers`` (the default, also ``None`` or ``-1``)
is the stream entering the unembedding. Labels are TransformerLens's:

================================  ==============================================================================
method                            components, in order (labels)
================================  ==============================================================================
``accumulated_resid``             ``0_pre``, (``0_mid`` with ``incl_mid``), ``1_pre``, ..., ``final_post``
``decompose_resid``               ``embed``, ``pos_embed``, ``0_attn_out``, ``0_mlp_out``, ``1_attn_out``, ...
``stack_head_results``            ``L0H0``, ``L0H1``, ..., (``remainder`` with ``incl_remainder``)
``stack_neuron_results``          ``L0N0``, ..., (``remainder``)
``get_full_resid_decomposition``  the heads, the neurons (or ``{l}_mlp_out``), ``embed``, ``pos_embed``, ``bias``
================================  ==============================================================================

``apply_ln=True`` (and :meth:`DecompositionMethods.apply_ln_to_stack`, which :meth:`DecompositionMethods.logit_attrs`
uses) centres each component and divides it by the recorded LayerNorm scale, without the gain and bias: that is the
LayerNorm only when it has been folded (gain 1, bias 0), as TransformerLens assumes. ``accumulated_resid`` at the top
applies the whole final LayerNorm instead (the logit lens), as TransformerLens 2.18 does.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(), seed=0)
    >>> _, cache = model.run_with_cache("hello")
    >>> stack, labels = cache.decompose_resid(return_labels=True)
    >>> labels, bool(torch.allclose(stack.sum(0), cache["resid_post", -1], atol=1e-5))
    (['embed', 'pos_embed', '0_attn_out', '0_mlp_out', '1_attn_out', '1_mlp_out'], True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from model.network.decompose import (
    SliceLike,
    apply_slice,
    check_decomposable,
    check_slice,
    head_results,
    neuron_results,
    scale_stack,
)
from model.network.labels import component_label

Stack = Tensor | tuple[Tensor, list[str]]


def _top(layer: object, n_layers: int) -> int:
    """``layer`` as a block count in ``0..n_layers`` (None and -1 mean ``n_layers``)."""
    if layer is None or layer == -1:
        return n_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= n_layers:
        raise IndexError(f"layer must be an int in 0..{n_layers} (or None / -1 for the top), got {layer!r}")
    return layer


def _flags(**flags: object) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")


class DecompositionMethods:
    """TransformerLens's ``ActivationCache`` methods (see the module docstring)."""

    weights: Any  # the CacheWeights view (ActivationCache sets it, and __getitem__ / __contains__)
    has_batch_dim: bool

    def _prepared(self, pos_slice: SliceLike, **flags: object) -> Any:
        _flags(**flags)
        check_slice(pos_slice)
        return check_decomposable(self.weights)

    def _finish(
        self,
        parts: list[Tensor],
        labels: list[str],
        layer: int,
        pos_slice: SliceLike,
        apply_ln: bool,
        return_labels: bool,
        mlp_input: bool = False,
        recompute_ln: bool = False,
    ) -> Stack:
        stack = torch.stack(parts) if parts else self._empty(pos_slice)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input, pos_slice, recompute_ln=recompute_ln)
        return (stack, labels) if return_labels else stack

    def _empty(self, pos_slice: SliceLike) -> Tensor:
        embed = apply_slice(self["hook_embed"], pos_slice, dim=-2)
        return embed.new_zeros(0, *embed.shape)

    def accumulated_resid(
        self,
        layer: int | None = None,
        incl_mid: bool = False,
        apply_ln: bool = False,
        pos_slice: SliceLike = None,
        mlp_input: bool = False,
        return_labels: bool = False,
    ) -> Stack:
        """The residual stream at every layer boundary up to ``layer``: ``[component, *batch_and_pos, d_model]``."""
        weights = self._prepared(
            pos_slice, incl_mid=incl_mid, apply_ln=apply_ln, mlp_input=mlp_input, return_labels=return_labels
        )
        n = weights.cfg.n_layers
        layer = _top(layer, n)
        parts, labels = [], []
        for lay in range(layer + 1):
            if lay == n:
                parts.append(self["resid_post", n - 1])
                labels.append("final_post")
                continue
            parts.append(self["resid_pre", lay])
            labels.append(f"{lay}_pre")
            if (incl_mid and lay < layer) or (mlp_input and lay == layer):
                parts.append(self["resid_mid", lay])
                labels.append(f"{lay}_mid")
        parts = [apply_slice(p, pos_slice, dim=-2) for p in parts]
        return self._finish(parts, labels, layer, pos_slice, apply_ln, return_labels, mlp_input, layer == n)

    def decompose_resid(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        mode: str = "all",
        apply_ln: bool = False,
        pos_slice: SliceLike = None,
        incl_embeds: bool = True,
        return_labels: bool = False,
    ) -> Stack:
        """The sublayer outputs (``attn_out``, ``mlp_out``; biases included) below ``layer``, after the embeddings."""
        weights = self._prepared(
            pos_slice, mlp_input=mlp_input, apply_ln=apply_ln, incl_embeds=incl_embeds, return_labels=return_labels
        )
        if mode not in ("all", "mlp", "attn"):
            raise ValueError(f"mode={mode!r} is not one of ['all', 'mlp', 'attn']")
        layer = _top(layer, weights.cfg.n_layers)
        incl_attn, incl_mlp = mode != "mlp", mode != "attn" and not weights.cfg.attn_only
        parts, labels = [], []
        if incl_embeds:
            for name in ("embed", "pos_embed"):
                if f"hook_{name}" in self:
                    parts.append(self[f"hook_{name}"])
                    labels.append(name)
        for lay in range(layer):
            for kind, wanted in (("attn_out", incl_attn), ("mlp_out", incl_mlp)):
                if wanted:
                    parts.append(self[kind, lay])
                    labels.append(f"{lay}_{kind}")
        if mlp_input and incl_attn:
            parts.append(self["attn_out", layer])
            labels.append(f"{layer}_attn_out")
        parts = [apply_slice(p, pos_slice, dim=-2) for p in parts]
        return self._finish(parts, labels, layer, pos_slice, apply_ln, return_labels, mlp_input)

    def stack_head_results(
        self,
        layer: int = -1,
        return_labels: bool = False,
        incl_remainder: bool = False,
        pos_slice: SliceLike = None,
        apply_ln: bool = False,
    ) -> Stack:
        """Each head's write below ``layer`` (``hook_result``, or ``z @ W_O`` when it was not recorded)."""
        weights = self._prepared(
            pos_slice, return_labels=return_labels, incl_remainder=incl_remainder, apply_ln=apply_ln
        )
        layer = _top(layer, weights.cfg.n_layers)
        parts, labels = [], []
        for lay in range(layer):
            result = apply_slice(head_results(self, weights, lay), pos_slice, dim=-3)
            parts += list(result.movedim(-2, 0))
            labels += [component_label("head", lay, h) for h in range(weights.cfg.n_heads)]
        return self._with_remainder(parts, labels, layer, pos_slice, incl_remainder, apply_ln, return_labels)

    def _with_remainder(
        self,
        parts: list[Tensor],
        labels: list[str],
        layer: int,
        pos_slice: SliceLike,
        incl_remainder: bool,
        apply_ln: bool,
        return_labels: bool,
    ) -> Stack:
        if incl_remainder:
            total = apply_slice(self["resid_post", layer - 1], pos_slice, dim=-2) if layer > 0 else None
            if total is None:
                raise ValueError("incl_remainder needs layer >= 1 (the remainder of the stream after block layer-1)")
            parts.append(total - (torch.stack(parts).sum(0) if parts else 0))
            labels.append("remainder")
        return self._finish(parts, labels, layer, pos_slice, apply_ln, return_labels)

    def get_neuron_results(self, layer: int, neuron_slice: SliceLike = None, pos_slice: SliceLike = None) -> Tensor:
        """``[*batch_and_pos, neuron, d_model]``: what each neuron of block ``layer`` writes (without ``b_out``)."""
        weights = self._prepared(pos_slice)
        check_slice(neuron_slice, "neuron_slice")
        n = weights.cfg.n_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
            raise IndexError(f"layer must be a block index in 0..{n - 1}, got {layer!r}")
        layer = layer % n
        name = f"blocks.{layer}.mlp.hook_post"
        return neuron_results({name: apply_slice(self[name], pos_slice, dim=-2)}, weights, layer, neuron_slice)

    def stack_neuron_results(
        self,
        layer: int,
        pos_slice: SliceLike = None,
        neuron_slice: SliceLike = None,
        return_labels: bool = False,
        incl_remainder: bool = False,
        apply_ln: bool = False,
    ) -> Stack:
        """Each neuron's write below ``layer`` (labels ``L{l}N{n}``), one component per neuron."""
        weights = self._prepared(
            pos_slice, return_labels=return_labels, incl_remainder=incl_remainder, apply_ln=apply_ln
        )
        layer = _top(layer, weights.cfg.n_layers)
        neurons = apply_slice(torch.arange(weights.cfg.d_mlp), neuron_slice).reshape(-1).tolist()
        parts, labels = [], []
        for lay in range(layer):
            parts += list(self.get_neuron_results(lay, neuron_slice, pos_slice).movedim(-2, 0))
            labels += [component_label("neuron", lay, n) for n in neurons]
        return self._with_remainder(parts, labels, layer, pos_slice, incl_remainder, apply_ln, return_labels)

    def stack_activation(self, activation_name: str, layer: int = -1, sublayer_type: str | None = None) -> Tensor:
        """``[layer, ...]``: the activation ``activation_name`` of every block below ``layer``, stacked."""
        layer = _top(layer, check_decomposable(self.weights).cfg.n_layers)
        return torch.stack([self[activation_name, lay, sublayer_type] for lay in range(layer)])

    def apply_ln_to_stack(
        self,
        residual_stack: Tensor,
        layer: int | None = None,
        mlp_input: bool = False,
        pos_slice: SliceLike = None,
        batch_slice: SliceLike = None,
        has_batch_dim: bool = True,
        recompute_ln: bool = False,
    ) -> Tensor:
        """Centre each component and divide by the recorded scale of the LayerNorm at ``layer`` (module docstring)."""
        weights = self._prepared(pos_slice, mlp_input=mlp_input, has_batch_dim=has_batch_dim, recompute_ln=recompute_ln)
        check_slice(batch_slice, "batch_slice")
        if not isinstance(residual_stack, Tensor) or residual_stack.shape[-1:] != (weights.cfg.d_model,):
            raise ValueError(
                f"residual_stack must be a tensor [component, ..., d_model={weights.cfg.d_model}], got "
                f"{getattr(residual_stack, 'shape', type(residual_stack).__name__)}"
            )
        layer = _top(layer, weights.cfg.n_layers)
        return scale_stack(
            self,
            weights,
            residual_stack,
            layer,
            mlp_input=mlp_input,
            pos_slice=pos_slice,
            batch_slice=batch_slice,
            has_batch_dim=has_batch_dim,
            cache_has_batch_dim=self.has_batch_dim,
            recompute_ln=recompute_ln,
        )

    def logit_attrs(
        self,
        residual_stack: Tensor,
        tokens: str | int | Tensor,
        incorrect_tokens: str | int | Tensor | None = None,
        pos_slice: SliceLike = None,
        batch_slice: SliceLike = None,
        has_batch_dim: bool = True,
    ) -> Tensor:
        """Each component's direct contribution to the logit of ``tokens`` (minus ``incorrect_tokens``): the stack
        scaled by the final LayerNorm (:meth:`apply_ln_to_stack`) dotted with the unembedding directions."""
        weights = check_decomposable(self.weights)
        directions = weights.tokens_to_residual_directions(tokens)
        if incorrect_tokens is not None:
            wrong = weights.tokens_to_residual_directions(incorrect_tokens)
            if wrong.shape != directions.shape:
                raise ValueError(
                    f"tokens and incorrect_tokens must have the same shape, got "
                    f"{tuple(directions.shape[:-1])} and {tuple(wrong.shape[:-1])}"
                )
            directions = directions - wrong
        scaled = self.apply_ln_to_stack(
            residual_stack, -1, pos_slice=pos_slice, batch_slice=batch_slice, has_batch_dim=has_batch_dim
        )
        return (scaled * directions.to(scaled.device)).sum(dim=-1)

    def get_full_resid_decomposition(
        self,
        layer: int | None = None,
        mlp_input: bool = False,
        expand_neurons: bool = True,
        apply_ln: bool = False,
        pos_slice: SliceLike = None,
        return_labels: bool = False,
    ) -> Stack:
        """Every head, every neuron (or MLP output), the embeddings and the summed biases: they add up to the stream
        entering ``layer`` (``[component, *batch_and_pos, d_model]``)."""
        weights = self._prepared(
            pos_slice,
            mlp_input=mlp_input,
            expand_neurons=expand_neurons,
            apply_ln=apply_ln,
            return_labels=return_labels,
        )
        layer = _top(layer, weights.cfg.n_layers)
        heads, labels = self.stack_head_results(layer + mlp_input, return_labels=True, pos_slice=pos_slice)
        parts = [heads]
        if not weights.cfg.attn_only and layer > 0:
            if expand_neurons:
                more, names = self.stack_neuron_results(layer, pos_slice=pos_slice, return_labels=True)
            else:
                more, names = self.decompose_resid(
                    layer, mlp_input, "mlp", pos_slice=pos_slice, incl_embeds=False, return_labels=True
                )
            parts.append(more)
            labels = labels + names
        for name in ("embed", "pos_embed"):
            if f"hook_{name}" in self:
                parts.append(apply_slice(self[f"hook_{name}"], pos_slice, dim=-2)[None])
                labels.append(name)
        shape = apply_slice(self["hook_embed"], pos_slice, dim=-2).shape
        bias = weights.accumulated_bias(layer, mlp_input, include_mlp_biases=expand_neurons)
        parts.append(bias.to(heads.device).expand((1, *shape)))
        labels.append("bias")
        stack = torch.cat(parts)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, mlp_input, pos_slice)
        return (stack, labels) if return_labels else stack

    def _result_from_z(self, layer: int) -> Tensor:
        """``cache["result", layer]`` when only ``z`` was recorded."""
        return head_results(self, check_decomposable(self.weights), layer)
