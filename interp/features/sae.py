"""The sparse autoencoder (and transcoder): encode, decode, save and load in SAELens's layout, shipped by name.

``f = act((x - b_dec) @ W_enc + b_enc)`` (``b_dec`` is subtracted only when ``cfg.apply_b_dec_to_input``, as
in SAELens; transcoders read an MLP's input and do not), ``x_hat = f @ W_dec + b_dec``, plus ``x @ W_skip.T``
for a skip transcoder (SAELens's ``SkipTranscoder``: an affine path that carries the linear part of the MLP,
so that the features carry the rest). ``act`` is ReLU, or
TopK: the ``k`` largest pre-activations of each token kept (through a ReLU), the rest zero. Each row of
``W_dec`` (one feature's direction, a column of the ``[d_out, d_sae]`` dictionary) has unit norm after
training. An SAE is a ``torch.nn.Module`` that follows the splice protocol of :mod:`model.network.splice`,
so ``model.run_with_saes(tokens, [sae])`` runs the model with it spliced in.

Shipped SAEs live in ``model/checkpoints/saes/<name>/`` (``cfg.json`` + ``sae_weights.safetensors``) and
load by name (:func:`list_saes`); any other folder in that layout loads by its path.

Example:
    >>> import torch
    >>> sae = SAE(SAEConfig("topk", d_in=8, d_sae=32, hook_name="blocks.0.hook_resid_post", k=2), seed=0)
    >>> x = torch.randn(5, 8)
    >>> f = sae.encode(x)
    >>> f.shape, int((f > 0).sum(-1).max()), sae.decode(f).shape, sae.W_dec.norm(dim=-1).mean().item()
    (torch.Size([5, 32]), 2, torch.Size([5, 8]), 1.0)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from interp.features.config import CFG_FILE, FORMAT, FORMAT_VERSION, WEIGHTS_FILE, SAEConfig
from model.storage.checkpoint import json_default
from model.storage.files import atomic_paths, check_output_path
from model.storage.registry import CHECKPOINT_DIR, PICKLE_SUFFIXES
from model.storage.schema import read_safetensors_header

SAE_DIR = CHECKPOINT_DIR / "saes"
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")
SKIP_NAME = "W_skip"


def _weight_names(cfg: SAEConfig) -> tuple[str, ...]:
    """The tensors of an SAE's weights file: ``WEIGHT_NAMES``, and ``W_skip`` for a skip transcoder."""
    return WEIGHT_NAMES + ((SKIP_NAME,) if cfg.has_skip else ())


def _check_features_input(x: object, size: int, what: str) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{what} takes a float tensor [..., {size}], got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else ""))  # fmt: skip
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"{what} takes a tensor [..., {size}], got shape {tuple(x.shape)}")
    return x


class SAE(nn.Module):
    """A sparse autoencoder or transcoder with SAELens's weight names and config fields (see the module docstring).

    ``SAE(cfg, seed=...)`` is freshly initialised (random unit decoder rows, the encoder their transpose, zero
    biases); :func:`interp.features.training.train_sae` trains one; :meth:`from_pretrained` loads one.
    ``provenance`` holds how it was made (command, training history, measured figures).
    """

    def __init__(self, cfg: SAEConfig, *, seed: int | None = None, provenance: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not isinstance(cfg, SAEConfig):
            raise TypeError(f"cfg must be an SAEConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.provenance: dict[str, Any] = dict(provenance or {})
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        directions = torch.randn(cfg.d_sae, cfg.d_out, generator=gen)
        directions /= directions.norm(dim=-1, keepdim=True)
        encoder = directions.t().clone() if cfg.d_out == cfg.d_in else torch.randn(cfg.d_in, cfg.d_sae, generator=gen)
        if cfg.d_out != cfg.d_in:
            encoder /= encoder.norm(dim=0, keepdim=True)
        self.W_enc = nn.Parameter(encoder.contiguous())  # d_in d_sae
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(directions)  # d_sae d_out
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_out))
        # skip transcoders: the affine path x @ W_skip.T, zero at first (SAELens's layout); None otherwise, which
        # the splice protocol of model.network.splice reads as "no skip path"
        self.W_skip = nn.Parameter(torch.zeros(cfg.d_out, cfg.d_in)) if cfg.has_skip else None  # d_out d_in

    # ------------------------------------------------------------------ the protocol of model.network.splice
    @property
    def hook_name(self) -> str:
        """The hook point the SAE reads."""
        return self.cfg.hook_name

    @property
    def hook_name_out(self) -> str | None:
        """Transcoders: the hook point the reconstruction is written to (None for an SAE: where it reads)."""
        return self.cfg.hook_name_out

    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Feature activations of ``x`` (non-negative; at most ``k`` non-zero per token for TopK)."""
        return self._encode(_check_features_input(x, self.cfg.d_in, "encode"))

    def decode(self, features: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_out"]:
        """The features' part of the reconstruction, ``features @ W_dec + b_dec`` (a skip transcoder adds
        ``x @ W_skip.T`` to it: :meth:`forward`)."""
        return self._decode(_check_features_input(features, self.cfg.d_sae, "decode"))

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """The reconstruction of ``x``: ``decode(encode(x))``, plus ``x @ W_skip.T`` for a skip transcoder."""
        x = _check_features_input(x, self.cfg.d_in, "forward")
        return self._reconstruct(x, self._encode(x))

    def pre_activations(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """``(x - b_dec) @ W_enc + b_enc``, before the ReLU / TopK."""
        return self._pre(_check_features_input(x, self.cfg.d_in, "pre_activations"))

    def _pre(self, x: Tensor) -> Tensor:
        x = x.to(self.W_enc.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def _encode(self, x: Tensor) -> Tensor:
        pre = self._pre(x)
        if self.cfg.k is None:
            return torch.relu(pre)
        values, index = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, index, torch.relu(values))

    def _decode(self, features: Tensor) -> Tensor:
        return features @ self.W_dec + self.b_dec

    def _reconstruct(self, x: Tensor, features: Tensor) -> Tensor:
        """The whole reconstruction from the input and its features (the skip path included)."""
        out = self._decode(features)
        return out if self.W_skip is None else out + x.to(self.W_skip.dtype) @ self.W_skip.T

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the folder ``path`` (``cfg.json`` + ``sae_weights.safetensors``, together, atomically); returns it.

        Example:
            >>> import tempfile
            >>> sae = SAE(SAEConfig("standard", d_in=4, d_sae=8, hook_name="hook_embed"), seed=0)
            >>> folder = sae.save(tempfile.mkdtemp() + "/my-sae")
            >>> sorted(p.name for p in folder.iterdir()), SAE.from_pretrained(folder).cfg == sae.cfg
            (['cfg.json', 'sae_weights.safetensors'], True)
        """
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a folder path (str or Path), got {type(path).__name__}")
        folder = Path(os.fspath(path))
        weights = check_output_path(folder / WEIGHTS_FILE, create_parent=True, what="SAE")
        tensors = {name: getattr(self, name).detach().to("cpu", torch.float32).contiguous()
                   for name in _weight_names(self.cfg)}  # fmt: skip
        doc = self.cfg.to_dict()
        with atomic_paths(weights, folder / CFG_FILE) as (tmp_w, tmp_j):
            save_file(tensors, str(tmp_w), metadata={"format": FORMAT})
            digest = hashlib.sha256(tmp_w.read_bytes()).hexdigest()
            doc["minigpt_lens"] = {"format": FORMAT, "format_version": FORMAT_VERSION, "weights_sha256": digest,
                                   "provenance": self.provenance}  # fmt: skip
            tmp_j.write_text(json.dumps(doc, indent=2, default=json_default) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device | None = None) -> SAE:
        """A shipped SAE by name (:func:`list_saes`) or a folder in SAELens's layout (or its ``cfg.json``).

        Checks, each a ValueError saying what is wrong: the config; the weights file's header (pickle files are
        refused), its tensor names and shapes against the config; the hash recorded by MiniGPT Lens (folders
        written by SAELens have none); NaN or inf.

        Example:
            >>> SAE.from_pretrained("minigpt-text-resid-post-1").cfg.hook_name
            'blocks.1.hook_resid_post'
        """
        folder = _resolve_sae(name_or_path)
        doc = _read_cfg(folder / CFG_FILE)
        cfg = SAEConfig.from_dict(_flatten(doc), str(folder / CFG_FILE))
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing: an SAE folder holds {CFG_FILE} and {WEIGHTS_FILE}")
        _check_layout(cfg, read_safetensors_header(weights), str(weights))
        ours = doc.get("minigpt_lens") if isinstance(doc.get("minigpt_lens"), dict) else {}
        if "weights_sha256" in ours and hashlib.sha256(weights.read_bytes()).hexdigest() != ours["weights_sha256"]:
            raise ValueError(f"{weights} does not match the hash in {CFG_FILE}: the weights are damaged or the two "
                             "files come from different saves; save the SAE again")  # fmt: skip
        try:
            tensors = load_file(weights)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{weights} is damaged: not a readable safetensors file ({err})") from None
        names = _weight_names(cfg)
        bad = [k for k in names if not bool(torch.isfinite(tensors[k]).all())]
        if bad:
            raise ValueError(f"{weights}: {bad} hold NaN or inf; train the SAE again")
        sae = cls(cfg, provenance=ours.get("provenance") or {})
        sae.load_state_dict({k: tensors[k].float() for k in names})
        return sae.eval().to(device) if device is not None else sae.eval()


def _flatten(doc: dict[str, Any]) -> dict[str, Any]:
    """SAELens 6.x keeps hook_name and friends under ``metadata`` and TopK's k at the top: bring them to the
    flat layout this config reads."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    flat = {**{k: v for k, v in meta.items() if v is not None}, **doc}
    if "k" in doc and not flat.get("activation_fn_kwargs"):
        flat["activation_fn_kwargs"] = {"k": doc["k"]}
    return flat


def _read_cfg(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: an SAE folder holds {CFG_FILE} and {WEIGHTS_FILE}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); save the SAE again") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(doc).__name__}")
    return doc


def _check_layout(cfg: SAEConfig, layout: dict[str, tuple[str, tuple[int, ...]]], where: str) -> None:
    expected = {"W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,), "W_dec": (cfg.d_sae, cfg.d_out),
                "b_dec": (cfg.d_out,)} | ({SKIP_NAME: (cfg.d_out, cfg.d_in)} if cfg.has_skip else {})  # fmt: skip
    problems = [f"missing {k}" for k in expected if k not in layout]
    problems += [f"unexpected {k}" for k in layout if k not in expected]
    problems += [f"{k} has shape {layout[k][1]}, expected {s}" for k, s in expected.items()
                 if k in layout and layout[k][1] != s]  # fmt: skip
    problems += [f"{k} is {layout[k][0]}, not a float" for k in expected
                 if k in layout and layout[k][0] not in ("F32", "F16", "BF16", "F64")]  # fmt: skip
    if problems:
        raise ValueError(f"{where} does not fit its config ({cfg.architecture}, d_in {cfg.d_in}, d_sae {cfg.d_sae}): "
                         + "; ".join(problems))  # fmt: skip


def list_saes() -> dict[str, str]:
    """Shipped SAE names -> what each reads (its hook points and size).

    Example:
        >>> sorted(list_saes())[:2]
        ['minigpt-text-mlp-transcoder-1', 'minigpt-text-resid-post-0']
    """
    found = {}
    for cfg_path in sorted(SAE_DIR.glob(f"*/{CFG_FILE}")):
        if (cfg_path.parent / WEIGHTS_FILE).is_file():
            doc = _read_cfg(cfg_path)
            where = doc.get("hook_name", "?") + (f" -> {doc['hook_name_out']}" if doc.get("hook_name_out") else "")
            found[cfg_path.parent.name] = f"{doc.get('architecture')} on {doc.get('model_name')} {where}, " \
                                          f"{doc.get('d_sae')} features"  # fmt: skip
    return found


def _resolve_sae(name_or_path: str | os.PathLike) -> Path:
    """The folder of a shipped SAE name, or of a path (a folder, or its ``cfg.json`` / weights file).

    Example:
        >>> _resolve_sae("no-such-sae")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no shipped SAE named 'no-such-sae' and no folder no-such-sae; shipped: [...]
    """
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(f"expected an SAE name or folder path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if not text.strip():
        raise ValueError(f"the SAE name is empty; give a shipped name {sorted(list_saes())} or a folder")
    if "/" not in text and os.sep not in text and (SAE_DIR / text / CFG_FILE).is_file():
        return SAE_DIR / text
    path = Path(text)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"{path} looks like a pickle file ({path.suffix}); SAEs load only from safetensors + "
                         "cfg.json, because unpickling can run arbitrary code")  # fmt: skip
    if path.is_file() and path.name in (CFG_FILE, WEIGHTS_FILE):
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"no shipped SAE named {text!r} and no folder {path}; shipped: {sorted(list_saes())}")
    return path
