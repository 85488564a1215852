"""TransformerLens's weight processing, in place: fold the LayerNorms' gains and biases into the weights that read
them, centre what writes to the residual stream, centre the unembedding, and fold the value biases into ``b_O``.

TransformerLens's ``from_pretrained`` does all four by default, so numbers people quote from it (direct logit
attributions, ``apply_ln_to_stack``, ``logit_attrs``, weight-based scores) are on processed weights; ARENA's
logit-attribution code sums exactly to the logit difference only then. :meth:`WeightProcessing.process_weights_`
does the same here. What each step leaves unchanged, for a pre-norm model with LayerNorms:

===========================  ============================================  ====================================
step                         what changes                                  unchanged
===========================  ============================================  ====================================
``fold_ln``                  ``w_ln`` and ``b_ln`` move into ``W_Q/K/V``,   every logit and activation after
                             ``W_in``, ``W_U`` (and their biases); the     each LayerNorm (``hook_normalized``
                             LayerNorms become ``w = 1``, ``b = 0``          reads the standardized residual)
``center_writing_weights``   ``W_E``, ``W_pos``, ``W_O``, ``b_O``,          every logit (each reader of the
                             ``W_out``, ``b_out`` lose their mean over     residual centres it first); the
                             ``d_model``                                   residual stream is then mean-free
``center_unembed``           ``W_U``, ``b_U`` lose their mean over the     every log-probability (the logits
                             vocabulary                                    shift by one number per position)
``fold_value_biases``        ``b_V`` moves into ``b_O`` (``b_V = 0``)       every logit (attention rows sum to 1)
===========================  ============================================  ====================================

A tied model is untied first where a step changes ``W_U`` or ``W_E`` (``cfg.tied_embed`` becomes False; with
biases it gains a ``b_U`` parameter, zeros, for the final LayerNorm's bias).

Example:
    >>> import torch
    >>> from model import MiniGPT
    >>> model = MiniGPT.from_pretrained("minigpt-text")
    >>> before = model("the cat").log_softmax(-1)
    >>> model.process_weights_()
    >>> torch.allclose(model("the cat").log_softmax(-1), before, atol=1e-5), float(model.blocks[0].ln1.w.std())
    (True, 0.0)
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from model.network.config import ModelConfig
from model.network.layers import LayerNorm, Unembed


class WeightProcessing:
    """``process_weights_`` and its steps (see the module docstring); mixed into MiniGPT."""

    cfg: ModelConfig

    def process_weights_(
        self,
        fold_ln: bool = True,
        center_writing_weights: bool = True,
        center_unembed: bool = True,
        fold_value_biases: bool = True,
    ) -> None:
        """TransformerLens's ``process_weights_``, in place (module docstring); its defaults are
        ``from_pretrained``'s. ``fold_ln`` and ``center_writing_weights`` need pre-norm LayerNorms: without them
        they are skipped, with a warning where that changes something (as in TransformerLens).

        Example:
            >>> from model import MiniGPT, ModelConfig
            >>> model = MiniGPT(ModelConfig(), seed=0)
            >>> model.process_weights_()
            >>> model.cfg.tied_embed, float(model.W_U.mean(-1).abs().max()) < 1e-6
            (False, True)
        """
        for name, flag in (("fold_ln", fold_ln), ("center_writing_weights", center_writing_weights),
                           ("center_unembed", center_unembed), ("fold_value_biases", fold_value_biases)):  # fmt: skip
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if self.cfg.norm != "pre":  # as TransformerLens: skipped, with a warning where it was asked for
            skipped = [n for n, f in (("fold_ln", fold_ln and self.cfg.norm == "post"),
                                      ("center_writing_weights", center_writing_weights)) if f]  # fmt: skip
            if skipped:
                warnings.warn(
                    f"{' and '.join(skipped)} skipped: they need pre-norm LayerNorms (every reader of the residual "
                    f"normalising it first), and this model has norm={self.cfg.norm!r}",
                    stacklevel=2,
                )
            fold_ln = center_writing_weights = False
        with torch.no_grad():
            if fold_ln:
                self.fold_layer_norm()
            if center_writing_weights:
                self.center_writing_weights()
            if center_unembed:
                self.center_unembed()
            if fold_value_biases:
                self.fold_value_biases()

    def fold_layer_norm(self) -> None:
        """Fold each LayerNorm's gain and bias into the weights that read it (and centre those weights over their
        input, which reads a mean-free vector); the LayerNorms become ``w = 1``, ``b = 0``."""
        with torch.no_grad():
            self._untie()
            readers = [(self.ln_final, [(self.unembed.W_U, self.unembed.b_U if self.unembed.has_bias else None)])]
            for block in self.blocks:
                attn = block.attn
                readers.append((block.ln1, [(attn.W_Q, attn.b_Q), (attn.W_K, attn.b_K), (attn.W_V, attn.b_V)]))
                if block.mlp is not None:
                    readers.append((block.ln2, [(block.mlp.W_in, block.mlp.b_in)]))
            for ln, weights in readers:
                for W, b in weights:
                    _fold(ln, W, b)
                ln.w.fill_(1.0)
                if ln.b is not None:
                    ln.b.zero_()

    def center_writing_weights(self) -> None:
        """Subtract, from every weight and bias that writes to the residual stream, its mean over ``d_model``."""
        with torch.no_grad():
            self._untie()
            writers = [self.embed.W_E]
            if self.pos_embed is not None and isinstance(self.pos_embed.W_pos, nn.Parameter):
                writers.append(self.pos_embed.W_pos)
            for block in self.blocks:
                writers += [block.attn.W_O, block.attn.b_O]
                if block.mlp is not None:
                    writers += [block.mlp.W_out, block.mlp.b_out]
            for weight in writers:
                if weight is not None:
                    weight -= weight.mean(-1, keepdim=True)

    def center_unembed(self) -> None:
        """Subtract the mean over the vocabulary from ``W_U`` and ``b_U``: each logit moves by the same amount."""
        with torch.no_grad():
            self._untie()
            self.unembed.W_U -= self.unembed.W_U.mean(-1, keepdim=True)
            if self.unembed.has_bias:
                self.unembed.b_U -= self.unembed.b_U.mean()

    def fold_value_biases(self) -> None:
        """Move ``b_V`` into ``b_O`` (``b_O += sum_h b_V[h] W_O[h]``; ``b_V = 0``): every attention row sums to 1."""
        with torch.no_grad():
            for block in self.blocks:
                attn = block.attn
                if attn.b_V is not None:
                    attn.b_O += torch.einsum("he,hed->d", attn.b_V, attn.W_O)
                    attn.b_V.zero_()

    def _untie(self) -> None:
        """Give a tied model its own ``W_U`` (a copy of ``W_E.T``) and, with biases, a ``b_U`` (zeros); ``cfg``
        follows (``tied_embed=False``)."""
        if not self.cfg.tied_embed:
            return
        old = self.cfg
        self.cfg = old.replace(tied_embed=False)
        unembed = Unembed(self.cfg, self.embed).to(self.embed.W_E)
        unembed.W_U.copy_(self.unembed.W_U)
        if unembed.has_bias:
            unembed.b_U.zero_()
        self.unembed = unembed
        for module in self.modules():
            if getattr(module, "cfg", None) is old:
                module.cfg = self.cfg


def _fold(ln: LayerNorm, W: Tensor, b: Tensor | None) -> None:
    """``ln(x) @ W + b == standardize(x) @ W' + b'`` for ``W [..., d_model, out]``: ``W' = w * W``, centred over
    ``d_model`` (it reads a mean-free vector), and ``b' = b + b_ln W``."""
    if ln.b is not None:
        b += torch.einsum("d,...de->...e", ln.b, W)  # a LayerNorm has a bias only where the model has biases
    W *= ln.w[:, None]
    W -= W.mean(-2, keepdim=True)
