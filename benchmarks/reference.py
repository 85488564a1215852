"""A plain PyTorch GPT with no hooks, of the same architecture as a pre-norm MiniGPT.

Written the way one writes a small GPT without interpretability in mind (fused ``c_attn``,
``nn.Linear``/``nn.LayerNorm``, ``scaled_dot_product_attention``). The benchmarks time MiniGPT
against it, and the tests use it as an independent implementation of the forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model import MiniGPT


class PlainBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, act: str) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc_in = nn.Linear(d_model, d_ff)
        self.fc_out = nn.Linear(d_ff, d_model)
        self.approximate = "tanh" if act == "gelu_new" else "none"

    def forward(self, x: Tensor) -> Tensor:
        batch, pos, d_model = x.shape
        q, k, v = self.c_attn(self.ln1(x)).split(d_model, dim=2)
        q, k, v = (t.view(batch, pos, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(batch, pos, d_model))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x)), approximate=self.approximate))


class PlainGPT(nn.Module):
    """Token + learned position embedding, pre-norm blocks, final LayerNorm, tied unembedding."""

    def __init__(
        self, d_vocab: int, n_ctx: int, d_model: int, n_heads: int, n_layers: int, d_ff: int, act: str = "gelu"
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(d_vocab, d_model)
        self.wpe = nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList(PlainBlock(d_model, n_heads, d_ff, act) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)

    @classmethod
    def from_minigpt(cls, model: MiniGPT) -> PlainGPT:
        """The same weights in the plain layout (pre-norm, learned positions, tied, biases, GELU)."""
        cfg = model.cfg
        if not (
            cfg.norm == "pre" and cfg.positional == "learned" and cfg.tied_embed and cfg.bias and not cfg.attn_only
        ):
            raise ValueError("PlainGPT mirrors only pre-norm, learned-position, tied, biased MiniGPTs with MLPs")
        if cfg.act == "relu":
            raise ValueError("PlainGPT uses GELU; pick act='gelu' or 'gelu_new'")
        plain = cls(cfg.d_vocab, cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff, cfg.act)
        with torch.no_grad():
            plain.wte.weight.copy_(model.W_E)
            plain.wpe.weight.copy_(model.W_pos)
            plain.ln_f.weight.copy_(model.ln_final.w)
            plain.ln_f.bias.copy_(model.ln_final.b)
            for ours, theirs in zip(model.blocks, plain.blocks, strict=True):
                a = ours.attn
                w = torch.cat([a.W_Q, a.W_K, a.W_V])  # [3 head, d_model, d_head]
                theirs.c_attn.weight.copy_(w.transpose(1, 2).reshape(-1, cfg.d_model))
                theirs.c_attn.bias.copy_(torch.cat([a.b_Q, a.b_K, a.b_V]).reshape(-1))
                theirs.c_proj.weight.copy_(a.W_O.reshape(-1, cfg.d_model).T)
                theirs.c_proj.bias.copy_(a.b_O)
                for ln_ours, ln_theirs in ((ours.ln1, theirs.ln1), (ours.ln2, theirs.ln2)):
                    ln_theirs.weight.copy_(ln_ours.w)
                    ln_theirs.bias.copy_(ln_ours.b)
                theirs.fc_in.weight.copy_(ours.mlp.W_in.T)
                theirs.fc_in.bias.copy_(ours.mlp.b_in)
                theirs.fc_out.weight.copy_(ours.mlp.W_out.T)
                theirs.fc_out.bias.copy_(ours.mlp.b_out)
        return plain.to(model.device)
