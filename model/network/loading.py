"""Where a MiniGPT comes from and goes to on disk: shipped checkpoints, our own files, HuggingFace GPT-2.

:class:`LoadingMethods` is a mixin of :class:`~model.network.minigpt.MiniGPT`; the formats themselves (schema,
hashes, atomic writes, the GPT-2 layout) live in :mod:`model.storage`, which knows nothing of the class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.network.hf_tokenizer import HFTokenizer
from model.network.parameters import uninitialized
from model.network.tokenizer import Tokenizer


class LoadingMethods:
    """``from_pretrained``, ``save_pretrained``, ``from_hf_gpt2`` and ``to_hf_gpt2_state_dict``."""

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        device: str | torch.device | None = None,
        step: int | None = None,
        dtype: Any = None,
        **processing: bool,
    ):
        """A shipped checkpoint by name (``"induction-2l"``) or path; ``step``: that snapshot of its run (``Run``).

        A Hugging Face model folder (``config.json``, safetensors weights, ``tokenizer.json``) loads as that model,
        with its tokenizer (:func:`model.storage.hf_folder.read_hf_folder`; ``dtype`` applies to it), its weights
        processed as TransformerLens's ``from_pretrained`` processes them (``fold_ln``, ``center_writing_weights``,
        ``center_unembed``, ``fold_value_biases``: each True unless passed False; see ``process_weights_``).
        :meth:`from_pretrained_no_processing` keeps them as they are. MiniGPT checkpoints load as saved.

        Example:
            >>> from model import MiniGPT
            >>> model = MiniGPT.from_pretrained("induction-2l")
            >>> model.cfg.attn_only, MiniGPT.from_pretrained("induction-2l", step=3000).provenance["steps"]
            (True, 3000)
        """
        from model.storage.runs import load_step

        if _is_hf_folder(name_or_path):
            if step is not None:
                raise ValueError("step= picks a snapshot of a MiniGPT run; a Hugging Face folder has one model")
            model = cls._from_hf_folder(name_or_path, device, dtype)
            model.process_weights_(**processing)
            return model
        if processing:
            raise TypeError(f"{sorted(processing)}: weight processing applies to Hugging Face folders; call "
                            "model.process_weights_(...) on a MiniGPT checkpoint")  # fmt: skip
        try:
            ckpt = load_step(name_or_path, step)
        except FileNotFoundError as err:
            if isinstance(name_or_path, str | Path) and str(name_or_path) and Path(name_or_path).is_dir():
                raise FileNotFoundError(
                    f"{name_or_path} is a folder without config.json, so not a Hugging Face model folder (which "
                    f"holds config.json beside its weights); read as a MiniGPT checkpoint: {err}"
                ) from None
            raise
        model = cls(ckpt.cfg, tokenizer_from_dict(ckpt.tokenizer, ckpt.cfg.d_vocab) if ckpt.tokenizer else None)
        model.load_state_dict(ckpt.state_dict)
        model.provenance = dict(ckpt.provenance)
        return model.to(device) if device is not None else model

    @classmethod
    def _from_hf_folder(cls, folder: str | Path, device: Any, dtype: Any):
        """The model of a Hugging Face folder (:func:`model.storage.hf_folder.read_hf_folder`), weights as they are."""
        from model.storage.hf_folder import read_hf_folder

        cfg, state, tokenizer, dtype = read_hf_folder(folder, dtype)
        with uninitialized():  # the loaded tensors become the parameters: no second copy, no random draw
            model = cls(cfg, tokenizer)  # refuses a tokenizer larger than the vocabulary
        if tokenizer is not None:
            tokenizer.cover(cfg.d_vocab)
        expected = model.state_dict()
        for name, tensor in state.items():
            if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
                raise ValueError(
                    f"{folder}: the weight {name} has shape {tuple(tensor.shape)}, but config.json makes it "
                    f"{tuple(expected[name].shape)}; the weights and config.json disagree"
                )
        model.load_state_dict(state, assign=True)
        model.provenance = {"source": str(folder)}
        model = model.to(dtype)
        return model.to(device) if device is not None else model

    @classmethod
    def from_pretrained_no_processing(cls, name_or_path: str, device: str | torch.device | None = None, **kwargs: Any):
        """:meth:`from_pretrained` with the weights as they are (TransformerLens's name)."""
        off = dict.fromkeys(("fold_ln", "center_writing_weights", "center_unembed", "fold_value_biases"), False)
        if isinstance(name_or_path, str | Path) and Path(name_or_path).is_dir():
            kwargs = off | kwargs
        return cls.from_pretrained(name_or_path, device, **kwargs)

    def save_pretrained(self, path: str, provenance: dict[str, Any] | None = None) -> None:
        """Write ``path`` (``.safetensors``) and the JSON beside it, atomically."""
        from model.storage.checkpoint import save_checkpoint

        tokenizer = self.tokenizer.to_dict() if self.tokenizer is not None else None
        save_checkpoint(path, self.cfg, self.state_dict(), tokenizer, provenance or self.provenance)

    @classmethod
    def from_hf_gpt2(cls, model_or_state_dict: Any, config: Any = None):
        """A MiniGPT with the weights of a HuggingFace GPT-2.

        ``model_or_state_dict``: a ``GPT2LMHeadModel`` / ``GPT2Model``, or a state dict with its ``GPT2Config``.
        """
        from model.storage.hf_gpt2 import hf_gpt2_to_minigpt

        cfg, state = hf_gpt2_to_minigpt(model_or_state_dict, config)
        model = cls(cfg)
        model.load_state_dict(state)
        return model

    def to_hf_gpt2_state_dict(self) -> dict[str, Tensor]:
        """This model's weights in HuggingFace GPT-2 layout (``transformer.h.{l}.attn.c_attn.weight`` ...)."""
        from model.storage.hf_gpt2 import minigpt_to_hf_gpt2

        return minigpt_to_hf_gpt2(self.cfg, self.state_dict())


def _is_hf_folder(path: object) -> bool:
    """A folder with a ``config.json``: a Hugging Face model (MiniGPT checkpoints and runs are files)."""
    return isinstance(path, str | Path) and bool(str(path)) and (Path(path) / "config.json").is_file()


def tokenizer_from_dict(data: dict, d_vocab: int) -> Tokenizer | HFTokenizer:
    """The tokenizer a checkpoint stored (``kind`` ``"char"`` or ``"hf"``), for a model of ``d_vocab`` ids."""
    if isinstance(data, dict) and data.get("kind") == "hf":
        tokenizer = HFTokenizer.from_dict(data)
        tokenizer.cover(d_vocab)
        return tokenizer
    return Tokenizer.from_dict(data)
