"""The network and everything that makes or stores one.

Rooms (see docs/ARCHITECTURE.md), in import tiers: a module may import only from its own tier or a lower one,
and ``tests/test_architecture.py`` holds the package to :data:`TIERS`.

- ``model.network``: the MiniGPT itself (config, tokenizer, token ids, hooks, cache, layers, logits,
  factored matrices). ``config`` and ``tokenizer`` sit in the lowest tier, so storage can use them.
- ``model.storage``: files on disk (atomic writes, the JSON schema, checkpoints, the shipped registry, HF GPT-2).
- ``model.training``: presets, the loop, resume, data and evaluation. The network knows nothing of training.

Example:
    >>> import sys, model
    >>> "torch" in sys.modules or "model.network.minigpt" not in sys.modules
    True
    >>> from model import MiniGPT, ModelConfig
    >>> MiniGPT(ModelConfig(n_layers=1), seed=0).cfg.n_params
    56256
"""

from model.lazy import lazy_exports

TIERS: tuple[tuple[str, ...], ...] = (
    ("model.lazy", "model.network.config", "model.network.tokenizer", "model.network.hf_tokenizer"),  # plain Python
    ("model.storage",),  # (config, state dict) <-> files; never the MiniGPT class
    ("model.network",),  # the torch modules; MiniGPT's constructors call storage
    ("model.training",),  # trains a MiniGPT; evaluations that need an analysis are passed in
)

_EXPORTS = {
    "ActivationCache": "model.network.cache",
    "FactoredMatrix": "model.network.factored_matrix",
    "HookPoint": "model.network.hooks",
    "MiniGPT": "model.network.minigpt",
    "ModelConfig": "model.network.config",
    "Tokenizer": "model.network.tokenizer",
    "load_checkpoint": "model.storage.checkpoint",
    "save_checkpoint": "model.storage.checkpoint",
    "list_checkpoints": "model.storage.registry",
    "Run": "model.storage.runs",
    "list_runs": "model.storage.runs",
    "SnapshotSchedule": "model.training.schedule",
    "PRESETS": "model.training.presets",
    "TrainConfig": "model.training.presets",
    "train": "model.training.loop",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
