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

TransformerLens's keywords map onto ours (``d_mlp`` is ``d_ff``, ``normalization_type="LN"``/``None`` is
``norm="pre"``/``"none"``, ``act_fn`` is ``act``, ``positional_embedding_type="standard"`` is ``"learned"``), or fail
naming our spelling; ``cfg.normalization_type``, ``cfg.act_fn``, ``cfg.positional_embedding_type``, ``cfg.device`` and
``cfg.dtype`` read them back:

    >>> cfg = ModelConfig(d_mlp=128, normalization_type=None, act_fn="relu")
    >>> cfg.d_ff, cfg.norm, cfg.normalization_type, cfg.positional_embedding_type, str(cfg.device)
    (128, 'none', None, 'standard', 'cpu')
    >>> ModelConfig(normalization_type="RMS")
    Traceback (most recent call last):
    ...
    ValueError: normalization_type='RMS' has no MiniGPT counterpart; MiniGPT spells it norm= and takes ['none', 'pre'] \
(from TransformerLens's ['LN', None])
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

    # TransformerLens's names, read-only: HookedTransformerConfig spells these differently
    @property
    def normalization_type(self) -> str | None:
        """``"LN"`` with LayerNorm (pre- or post-norm), ``None`` with ``norm="none"``."""
        return None if self.norm == "none" else "LN"

    @property
    def act_fn(self) -> str | None:
        """The MLP nonlinearity (``act``); None for attention-only models, as in TransformerLens."""
        return None if self.attn_only else self.act

    @property
    def positional_embedding_type(self) -> str:
        """``"standard"`` (learned), ``"sinusoidal"`` or ``"rotary"``."""
        return {"learned": "standard"}.get(self.positional, self.positional)

    @property
    def eps(self) -> float:
        return self.ln_eps

    @property
    def d_vocab_out(self) -> int:
        return self.d_vocab

    @property
    def default_prepend_bos(self) -> bool:
        return True

    @property
    def device(self) -> Any:
        """The device of the model this config belongs to (``torch.device("cpu")`` for a config of no model)."""
        placement = self.__dict__.get("_placement")
        if placement is None:
            import torch

            return torch.device("cpu")
        return placement[0]

    @property
    def dtype(self) -> Any:
        """The parameter dtype of the model this config belongs to (``torch.float32`` for a config of no model)."""
        placement = self.__dict__.get("_placement")
        if placement is None:
            import torch

            return torch.float32
        return placement[1]

    def _place(self, device: Any, dtype: Any) -> None:
        """Record the model's device and dtype (each MiniGPT holds its own copy of its config)."""
        object.__setattr__(self, "_placement", (device, dtype))

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

    def in_use(self) -> dict[str, Any]:
        """The fields that shape this model, by name: ``d_ff`` and ``act`` need an MLP, ``ln_eps`` a LayerNorm,
        ``rotary_base`` rotary positions; every other field always applies.

        Example:
            >>> sorted(set(ModelConfig().to_dict()) - set(ModelConfig().in_use()))
            ['rotary_base']
        """
        unused = {"d_ff": self.attn_only, "act": self.attn_only, "ln_eps": self.norm == "none"}
        unused["rotary_base"] = self.positional != "rotary"
        return {k: v for k, v in self.to_dict().items() if not unused.get(k, False)}

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __getstate__(self) -> dict[str, Any]:
        return self.to_dict()  # the fields only: a pickled config belongs to no model

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

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


_TL_ONLY = {  # TransformerLens keywords with no counterpart: what to do instead
    "device": "move the model: model.to(device)",
    "dtype": "convert the model: model.to(dtype)",
    "seed": "pass seed= to MiniGPT(cfg, seed=...)",
    "tokenizer_name": "MiniGPT uses its 64-symbol character tokenizer",
    "use_attn_result": "call model.set_use_attn_result(True)",
    "use_attn_in": "call model.set_use_attn_in(True) (or just hook blocks.L.hook_attn_in)",
    "use_split_qkv_input": "call model.set_use_split_qkv_input(True) (or just hook blocks.L.hook_q_input)",
    "use_hook_mlp_in": "call model.set_use_hook_mlp_in(True) (or just hook blocks.L.hook_mlp_in)",
}
_TL_VALUES = {
    "normalization_type": ("norm", {"LN": "pre", None: "none"}),
    "positional_embedding_type": (
        "positional",
        {"standard": "learned", "sinusoidal": "sinusoidal", "rotary": "rotary"},
    ),
    "act_fn": ("act", {a: a for a in ACTIVATIONS}),
}
_TL_RENAMES = {"d_mlp": "d_ff", "eps": "ln_eps", "init_range": "init_std"}


def _from_transformer_lens(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Our keywords for TransformerLens's (``d_mlp``, ``normalization_type``, ``act_fn``, ...), or an error that names
    our spelling."""
    out = {k: v for k, v in kwargs.items() if k not in _TL_RENAMES and k not in _TL_VALUES}
    for theirs, ours in _TL_RENAMES.items():
        if theirs in kwargs:
            if ours in kwargs and kwargs[ours] != kwargs[theirs]:
                raise ValueError(
                    f"{theirs}={kwargs[theirs]!r} and {ours}={kwargs[ours]!r} disagree ({theirs} is {ours})"
                )
            out[ours] = kwargs[theirs]
    for theirs, (ours, table) in _TL_VALUES.items():
        if theirs in kwargs:
            if kwargs[theirs] not in table:
                raise ValueError(
                    f"{theirs}={kwargs[theirs]!r} has no MiniGPT counterpart; MiniGPT spells it {ours}= and takes "
                    f"{sorted(set(table.values()))} (from TransformerLens's {list(table)})"
                )
            out[ours] = table[kwargs[theirs]]
    if "act_fn" in kwargs and kwargs["act_fn"] is None:
        out.pop("act")
    if kwargs.get("d_mlp", 0) is None:  # TransformerLens's attention-only models have d_mlp=None
        out.pop("d_ff")
        out.setdefault("attn_only", True)
    for name, advice in _TL_ONLY.items():
        if name in out:
            raise ValueError(f"{name}= is a TransformerLens config keyword MiniGPT does not take; {advice}")
    return out


def _init_with_transformer_lens_keywords(init: Any) -> Any:
    def __init__(self: ModelConfig, *args: Any, **kwargs: Any) -> None:
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        if set(kwargs) - known - {"d_head"}:
            kwargs = _from_transformer_lens(kwargs)
            unknown = sorted(set(kwargs) - known - {"d_head"})
            if unknown:
                raise TypeError(f"unknown config keywords {unknown}; MiniGPT's are {sorted(known)}")
        d_head = kwargs.pop("d_head", None)
        init(self, *args, **kwargs)
        if d_head is not None and d_head != self.d_head:
            raise ValueError(
                f"d_head={d_head} but MiniGPT's d_head is d_model // n_heads = {self.d_head}; set d_model and n_heads"
            )

    __init__.__doc__ = init.__doc__
    return __init__


ModelConfig.__init__ = _init_with_transformer_lens_keywords(ModelConfig.__init__)  # type: ignore[method-assign]
