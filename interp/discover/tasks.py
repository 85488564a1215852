"""Ground truth for circuit discovery: models with a known circuit, each with its clean and corrupted prompts.

=====================  ================================================  =========================================
name                   model                                             task and corruption
=====================  ================================================  =========================================
``planted-induction``  :func:`~interp.discover.planted.planted_induction`  ``BOS + r + r``; another ``BOS + s + s``;
                       (weights by hand: K-composition, saturated)         loss on the second copy (tokens 17-30)
``planted-lookup``     :func:`~interp.discover.planted.planted_lookup`    ``pi(first token)`` at the last position;
                       (weights by hand: head, MLP, V-composition)         the first token changed; logit diff
``induction-2l``       the shipped checkpoint (trained)                  as ``planted-induction``
``modular-sum``        :func:`~interp.discover.trained.train_modular_sum`  ``a b =`` -> ``(a + b) mod 10``; the pairs
                       (trained in ~2 s: needs its MLP)                    shuffled; logit diff of the two answers
=====================  ================================================  =========================================

:attr:`KnownCircuit.circuit` is the set of edges the corruption can reach (the ground truth every method
is scored against); :attr:`KnownCircuit.mechanism` adds the edges that are part of the mechanism but carry
the same value on clean and corrupted prompts (positions), which no token corruption can see.

Example:
    >>> task = known_circuit("planted-lookup", batch=4)
    >>> task.circuit.size, task.mechanism.size, tuple(task.clean.shape)
    (4, 8, (4, 12))
    >>> round(task.circuit.faithfulness(task.model, task.clean, task.corrupted, task.metric), 4)
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_int, check_seed
from interp.common.metrics import LogitDiff, LossAt, Metric
from interp.discover.circuit import Circuit, circuit_from_edges
from interp.discover.planted import _permutation, planted_induction, planted_lookup
from interp.discover.trained import modular_sum_data, train_modular_sum
from model.network.minigpt import MiniGPT
from model.training.data import repeated_pair_batch

NAMES = ("planted-induction", "planted-lookup", "induction-2l", "modular-sum")
SEG = 15  # r in BOS + r + r
INDUCTION = ["embed->L0H0.v", "L0H0->L1H0.k", "embed->L1H0.q", "embed->L1H0.v", "L1H0->logits"]
INDUCTION_POSITIONS = ["pos_embed->L0H0.q", "pos_embed->L0H0.k"]
LOOKUP = ["embed->L0H0.v", "L0H0->L0.mlp", "L0.mlp->L1H0.v", "L1H0->logits"]
LOOKUP_POSITIONS = ["pos_embed->L0H0.q", "pos_embed->L0H0.k", "pos_embed->L1H0.q", "pos_embed->L1H0.k"]
MODULAR = ["embed->L0H0.v", "L0H0->L0.mlp", "L0.mlp->logits"]


@dataclass(frozen=True)
class KnownCircuit:
    """A model, the prompts and metric of its task, and the circuit known to do it."""

    name: str
    model: MiniGPT
    clean: Int[Tensor, "batch pos"]
    corrupted: Int[Tensor, "batch pos"]
    metric: Metric
    circuit: Circuit  # the edges the corruption reaches: the ground truth
    mechanism: Circuit  # with the edges whose value the corruption leaves unchanged (positions)
    description: str

    def __post_init__(self) -> None:
        if not isinstance(self.model, MiniGPT):
            raise TypeError(f"KnownCircuit.model must be a MiniGPT, got {type(self.model).__name__}")
        if not isinstance(self.metric, Metric):
            raise TypeError(f"KnownCircuit.metric must be a Metric, got {type(self.metric).__name__}")
        if not isinstance(self.circuit, Circuit) or not isinstance(self.mechanism, Circuit):
            raise TypeError("KnownCircuit.circuit and .mechanism must be Circuits (interp.discover.circuit.Circuit)")
        if not set(self.circuit.edges) <= set(self.mechanism.edges):
            raise ValueError("KnownCircuit.mechanism must contain every edge of .circuit")
        for name in ("clean", "corrupted"):
            tokens = getattr(self, name)
            if not isinstance(tokens, Tensor) or tokens.ndim != 2:
                raise TypeError(f"KnownCircuit.{name} must be a [batch, pos] tensor of token ids")
        if self.clean.shape != self.corrupted.shape:
            raise ValueError(f"clean {tuple(self.clean.shape)} and corrupted {tuple(self.corrupted.shape)} differ")


def _induction_prompts(batch: int, seed: int) -> tuple[Tensor, Tensor]:
    clean = repeated_pair_batch(batch, SEG, torch.Generator().manual_seed(seed))
    return clean, repeated_pair_batch(batch, SEG, torch.Generator().manual_seed(seed + 1))


def _lookup_prompts(batch: int, seed: int) -> tuple[Tensor, Tensor, Metric]:
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(3, 64, (batch, 12), generator=gen)
    clean[:, 0] = 0
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] - 3 + torch.randint(1, 61, (batch,), generator=gen)) % 61 + 3  # another token
    table = _permutation(64)
    metric = LogitDiff(answer=tuple(table[clean[:, 1]].tolist()), wrong=tuple(table[corrupted[:, 1]].tolist()))
    return clean, corrupted, metric


def _modular_prompts(model: MiniGPT, seed: int) -> tuple[Tensor, Tensor, Metric]:
    tokens, answers = modular_sum_data(model)
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    differ = answers != answers[order]
    clean, corrupted = tokens[differ], tokens[order][differ]
    metric = LogitDiff(answer=tuple(answers[differ].tolist()), wrong=tuple(answers[order][differ].tolist()))
    return clean, corrupted, metric


def known_circuit(name: str, batch: int = 32, seed: int = 0) -> KnownCircuit:
    """The task ``name`` (one of :data:`NAMES`, see the table above) with ``batch`` prompts drawn from ``seed``
    (``modular-sum`` uses every pair whose shuffled partner has another answer, and trains its model from
    ``seed``)."""
    if name not in NAMES:
        raise ValueError(f"unknown known-circuit task {name!r}; use one of {list(NAMES)}")
    batch, seed = check_int(batch, "batch", minimum=1), check_seed(seed)
    if name in ("planted-induction", "induction-2l"):
        model = planted_induction() if name == "planted-induction" else MiniGPT.from_pretrained("induction-2l").eval()
        clean, corrupted = _induction_prompts(batch, seed)
        circuit = circuit_from_edges(INDUCTION)
        what = "by hand" if name == "planted-induction" else "trained (the shipped checkpoint)"
        return KnownCircuit(name, model, clean, corrupted, LossAt(range(SEG + 2, 2 * SEG + 1)), circuit,
                            circuit_from_edges(INDUCTION_POSITIONS + INDUCTION),
                            f"induction, {what}: previous-token head L0H0, induction head L1H0 (K-composition); "
                            "BOS + r + r against BOS + s + s, loss on the second copy")  # fmt: skip
    if name == "planted-lookup":
        clean, corrupted, metric = _lookup_prompts(batch, seed)
        return KnownCircuit(name, planted_lookup(), clean, corrupted, metric, circuit_from_edges(LOOKUP),
                            circuit_from_edges(LOOKUP_POSITIONS + LOOKUP),
                            "lookup by hand: L0H0 moves the first token, L0.mlp maps it through a permutation, L1H0 "
                            "moves the result (V-composition); the first token changed, logit difference")  # fmt: skip
    model = train_modular_sum(seed)
    clean, corrupted, metric = _modular_prompts(model, seed)
    circuit = circuit_from_edges(MODULAR)
    return KnownCircuit(name, model, clean, corrupted, metric, circuit, circuit,
                        "modular addition, trained: the head moves both digits, the MLP adds them mod 10; "
                        "the pairs shuffled, logit difference of the two answers")  # fmt: skip
