"""An SAE's configuration, with SAELens's field names, and its ``cfg.json`` in SAELens's layout.

A saved SAE is a folder holding ``cfg.json`` and ``sae_weights.safetensors`` (tensors ``W_enc [d_in, d_sae]``,
``b_enc [d_sae]``, ``W_dec [d_sae, d_out]``, ``b_dec [d_out]``), as SAELens writes them, so that
``sae_lens.SAE.load_from_disk(folder)`` can read it. ``cfg.json`` is the flat (pre-6.0) SAELens document,
which every SAELens version loads (6.x converts it): ``architecture``, ``d_in``, ``d_sae``, ``hook_name``,
``hook_layer``, ``activation_fn_str``, ``activation_fn_kwargs`` (``{"k": k}`` for TopK), ``apply_b_dec_to_input``,
``normalize_activations``, ``model_name``, ``context_size``, ... and, for a transcoder, ``d_out``,
``hook_name_out``, ``hook_layer_out``. What MiniGPT Lens adds (the weights' hash, the training command and
history, the measured figures) sits under the one key ``minigpt_lens``, which SAELens ignores.

Architectures (``architecture``): ``"standard"`` (ReLU SAE), ``"topk"`` (TopK SAE), ``"transcoder"`` (ReLU
transcoder, SAELens's name) and ``"skip_transcoder"`` (a ReLU transcoder with SAELens's affine skip path: a
weight ``W_skip [d_out, d_in]``, the reconstruction ``f @ W_dec + b_dec + x @ W_skip.T``). The TopK ones are
``"topk_transcoder"`` and ``"topk_skip_transcoder"``: SAELens (6.x) has no such classes, so SAELens cannot load
those; everything else about their files is the same.

Example:
    >>> cfg = SAEConfig("topk", d_in=64, d_sae=256, hook_name="blocks.1.hook_resid_post", k=8)
    >>> cfg.activation_fn_str, cfg.activation_fn_kwargs, cfg.d_out, cfg.hook_layer
    ('topk', {'k': 8}, 64, 1)
    >>> SAEConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> SAEConfig("topk", d_in=64, d_sae=256, hook_name="hook_embed")
    Traceback (most recent call last):
    ...
    ValueError: architecture 'topk' needs k, the number of features kept per token (1 <= k <= d_sae = 256)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

ARCHITECTURES = ("standard", "topk", "transcoder", "topk_transcoder", "skip_transcoder", "topk_skip_transcoder")
ACTIVATIONS = {"relu": ("standard", "transcoder", "skip_transcoder"), "topk": ("topk", "topk_transcoder",
               "topk_skip_transcoder")}  # fmt: skip
CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"
FORMAT, FORMAT_VERSION = "minigpt-lens-sae", 1


def _architecture_for(activation: str, transcoder: bool, skip: bool = False) -> str:
    """The SAELens ``architecture`` of an activation (``"relu"``/``"topk"``) and kind (SAE, transcoder, or
    transcoder with a skip path).

    Example:
        >>> _architecture_for("relu", False), _architecture_for("topk", True), _architecture_for("relu", True, True)
        ('standard', 'topk_transcoder', 'skip_transcoder')
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"architecture {activation!r} is not one of ['topk', 'relu']")
    if skip and not transcoder:
        raise ValueError("a skip path is for transcoders (an SAE reconstructs its own input: the skip would be x)")
    return ACTIVATIONS[activation][2 if skip else int(bool(transcoder))]


def _layer(hook_name: str) -> int:
    match = re.match(r"blocks\.(\d+)\.", hook_name)
    return int(match.group(1)) if match else 0


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class SAEConfig:
    """What an SAE is: SAELens's field names; ``d_out`` / ``hook_name_out`` only for transcoders."""

    architecture: str
    d_in: int
    d_sae: int
    hook_name: str
    k: int | None = None  # TopK: features kept per token
    d_out: int | None = None  # transcoders: output size (None: d_in)
    hook_name_out: str | None = None  # transcoders: where the reconstruction is written
    apply_b_dec_to_input: bool | None = None  # None: True for SAEs, False for transcoders (SAELens's defaults)
    model_name: str = ""
    context_size: int | None = None
    dataset_path: str = ""
    normalize_activations: str = "none"  # scaling is folded into the weights after training
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r} is not one of {list(ARCHITECTURES)}")
        _positive("d_in", self.d_in)
        _positive("d_sae", self.d_sae)
        if not isinstance(self.hook_name, str) or not self.hook_name:
            raise ValueError(f"hook_name must be a hook point name such as 'blocks.0.hook_resid_post', got "
                             f"{self.hook_name!r}")  # fmt: skip
        is_topk = self.architecture in ACTIVATIONS["topk"]
        if is_topk and (isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= self.d_sae):
            raise ValueError(
                f"architecture {self.architecture!r} needs k, the number of features kept per token "
                f"(1 <= k <= d_sae = {self.d_sae})"
            )
        if not is_topk and self.k is not None:
            raise ValueError(f"k={self.k!r} is for TopK architectures; architecture {self.architecture!r} uses ReLU")
        if self.is_transcoder:
            if not isinstance(self.hook_name_out, str) or not self.hook_name_out:
                raise ValueError(f"a {self.architecture} needs hook_name_out, the hook point it writes")
            object.__setattr__(self, "d_out", self.d_in if self.d_out is None else self.d_out)
            _positive("d_out", self.d_out)
        elif self.d_out not in (None, self.d_in) or self.hook_name_out is not None:
            raise ValueError(f"d_out and hook_name_out are for transcoders; architecture {self.architecture!r} "
                             "writes where it reads")  # fmt: skip
        else:
            object.__setattr__(self, "d_out", self.d_in)
        if self.apply_b_dec_to_input is None:
            object.__setattr__(self, "apply_b_dec_to_input", not self.is_transcoder)
        if self.apply_b_dec_to_input and self.d_out != self.d_in:
            raise ValueError("apply_b_dec_to_input needs d_out == d_in (b_dec is subtracted from the input)")
        if self.normalize_activations != "none":
            raise ValueError("normalize_activations must be 'none': MiniGPT Lens folds the scaling into the weights")

    @property
    def is_transcoder(self) -> bool:
        return self.architecture.endswith("transcoder")

    @property
    def has_skip(self) -> bool:
        """A skip transcoder: the weights hold ``W_skip [d_out, d_in]``, added to the reconstruction."""
        return self.architecture.endswith("skip_transcoder")

    @property
    def activation(self) -> str:
        """``"relu"`` or ``"topk"``."""
        return "topk" if self.architecture in ACTIVATIONS["topk"] else "relu"

    @property
    def activation_fn_str(self) -> str:
        return self.activation

    @property
    def activation_fn_kwargs(self) -> dict[str, int]:
        return {"k": self.k} if self.k is not None else {}

    @property
    def hook_layer(self) -> int:
        return _layer(self.hook_name)

    @property
    def hook_head_index(self) -> None:
        return None

    def replace(self, **changes: Any) -> SAEConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The ``cfg.json`` document (without the ``minigpt_lens`` block), in SAELens's flat layout."""
        doc: dict[str, Any] = {
            "architecture": self.architecture, "d_in": self.d_in, "d_sae": self.d_sae, "dtype": self.dtype,
            "device": self.device, "model_name": self.model_name, "hook_name": self.hook_name,
            "hook_layer": self.hook_layer, "hook_head_index": None, "activation_fn_str": self.activation_fn_str,
            "activation_fn_kwargs": self.activation_fn_kwargs, "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "finetuning_scaling_factor": False, "normalize_activations": self.normalize_activations,
            "context_size": self.context_size, "dataset_path": self.dataset_path,
            "dataset_trust_remote_code": False, "prepend_bos": True, "sae_lens_training_version": None,
            "model_from_pretrained_kwargs": {}, "seqpos_slice": [None], "neuronpedia_id": None,
        }  # fmt: skip
        if self.is_transcoder:
            doc |= {"d_out": self.d_out, "hook_name_out": self.hook_name_out, "hook_layer_out":
                    _layer(self.hook_name_out), "hook_head_index_out": None}  # fmt: skip
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "cfg.json") -> SAEConfig:
        """The config of a ``cfg.json`` document; ValueError naming the key when it is missing or wrong."""
        if not isinstance(doc, dict):
            raise ValueError(f"{where} must hold a JSON object, got {type(doc).__name__}")
        missing = [key for key in ("architecture", "d_in", "d_sae", "hook_name") if key not in doc]
        if missing:
            raise ValueError(f"{where} lacks {missing}: it is not an SAE config in SAELens's layout")
        kwargs = doc.get("activation_fn_kwargs") or {}
        fields = {f.name for f in dataclasses.fields(cls)} - {"k"}
        values = {name: doc[name] for name in fields if name in doc and doc[name] is not None}
        try:
            return cls(k=kwargs.get("k") if isinstance(kwargs, dict) else None, **values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None
