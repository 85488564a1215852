"""ModelConfig: every architectural choice of a MiniGPT, in one frozen dataclass.

The defaults are the locked MiniGPT config (d_model 64, 4 heads, 2 layers, d_ff 256,
vocab 64, context 32). ``cfg.n_params`` gives the parameter count from the closed-form
formula, which the tests check against the real model to the digit.

Example:
    >>> from model import ModelConfig
    >>> cfg = ModelConfig()
    >>> cfg.d_head, cfg.n_params
    (16, 106240)
    >>> ModelConfig(n_heads=3)
    Traceback (most recent call last):
    ...
    ValueError: d_model=64 is not divisible by n_heads=3; pick n_heads from [1, 2, 4, 8, 16, 32, 64] or change d_model
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

POSITIONAL = ("learned", "sinusoidal", "rotary")
NORMS = ("pre", "post", "none")
ACTIVATIONS = ("relu", "gelu", "gelu_new")


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 64  # width of the residual stream
    n_heads: int = 4  # attention heads per layer; d_head = d_model // n_heads
    n_layers: int = 2  # transformer blocks
    d_ff: int = 256  # hidden width of each MLP (d_mlp), canonically 4 * d_model
    d_vocab: int = 64  # vocabulary size (the character tokenizer has exactly 64 symbols)
    n_ctx: int = 32  # longest sequence the model accepts (positions 0 .. n_ctx - 1)
    positional: str = "learned"  # "learned" table | fixed "sinusoidal" table | "rotary" on q and k
    norm: str = "pre"  # "pre": x + f(LN(x)); "post": LN(x + f(x)); "none": no LayerNorm at all
    act: str = "gelu"  # MLP nonlinearity: "relu" | "gelu" (exact) | "gelu_new" (GPT-2's tanh form)
    attn_only: bool = False  # blocks without MLPs (toy attention-only models)
    tied_embed: bool = True  # unembedding W_U is W_E.T (no separate parameter, no b_U)
    bias: bool = True  # biases in attention, MLP and LayerNorm (and b_U when untied)
    ln_eps: float = 1e-5  # LayerNorm epsilon
    rotary_base: float = 10_000.0  # frequency base of rotary embeddings
    init_std: float = 0.02  # std of the normal initialisation of every weight matrix

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "n_layers", "d_ff", "d_vocab", "n_ctx"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                f"pick n_heads from {divisors} or change d_model"
            )
        for name, allowed in (("positional", POSITIONAL), ("norm", NORMS), ("act", ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {list(allowed)}")
        if self.positional == "rotary" and self.d_head % 2:
            raise ValueError(f"rotary embeddings need an even d_head, got d_head={self.d_head}")
        if not self.ln_eps > 0:
            raise ValueError(f"ln_eps must be > 0, got {self.ln_eps!r}")
        if not self.init_std > 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std!r}")

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def d_mlp(self) -> int:
        """Alias of ``d_ff`` (TransformerLens's name)."""
        return self.d_ff

    @property
    def has_ln(self) -> bool:
        return self.norm != "none"

    @property
    def n_params(self) -> int:
        """Number of trainable parameters, from the closed-form formula.

        embed ``V d`` + learned positions ``n_ctx d`` + per layer
        [attention ``4 d^2`` (+ ``4 d`` biases) + MLP ``2 d f`` (+ ``f + d``) + LayerNorms
        ``2 d`` each (``d`` without bias)] + final LayerNorm (pre-norm only) + untied ``W_U``
        ``d V`` (+ ``V``).
        """
        d, f, v, b = self.d_model, self.d_ff, self.d_vocab, int(self.bias)
        ln = d * (1 + b) if self.has_ln else 0
        attn = 4 * d * d + 4 * d * b + ln
        mlp = 0 if self.attn_only else 2 * d * f + (f + d) * b + ln
        total = v * d + self.n_layers * (attn + mlp)
        total += self.n_ctx * d if self.positional == "learned" else 0
        total += ln if self.norm == "pre" else 0
        total += 0 if self.tied_embed else d * v + v * b
        return total

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a dict, naming unknown keys instead of a bare TypeError."""
        if not isinstance(data, dict):
            raise TypeError(f"a config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)
