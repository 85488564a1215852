"""A trained model with a known circuit of another shape: modular addition, which needs the MLP.

The task: ``<bos> a b =`` with digits ``a, b`` is answered, after ``=``, by the digit ``(a + b) mod 10``.
The model has one layer with one head and an MLP (``d_model`` 64, ``d_mlp`` 256, no LayerNorm, untied
unembedding); it is trained (seeded, all 100 pairs, Adam, about 2 s on one CPU thread) until it answers
every pair.

**Why its circuit is known.** At the ``=`` position the only way to learn ``a`` and ``b`` is the head: it
is the only part that reads other positions, and it reads their tokens through its value
(``embed -> L0H0.v``) and, for its pattern, its key (``embed -> L0H0.k``). With a pattern that does not
depend on the digits, the head writes a sum of one vector per digit, and a linear read-out of it scores
each answer ``c`` as ``f_c(a) + g_c(b)``. No such score is right on every pair: for two answers
``c != c'`` the difference ``D(a, b) = s_c - s_c' = F(a) + G(b)`` must be positive on the 10 pairs with
``a + b = c`` and negative on the 10 with ``a + b = c'`` (mod 10), but on either set ``a`` and ``b`` each
run through all ten digits once, so both sums equal ``sum F + sum G``: positive and negative at once. So
the answer must go through the only nonlinearity at that position, the MLP, and the known circuit is
``embed -> L0H0.v``, ``L0H0 -> L0.mlp``, ``L0.mlp -> logits``. The head's key edge (a digit-dependent
pattern) and its direct edge to the logits are what the argument cannot exclude; the tests measure that
they carry a small part.

Example:
    >>> model = train_modular_sum(steps=20)  # a few steps only, for the example
    >>> tokens, answers = modular_sum_data(model)
    >>> tokens.shape, model.to_string(tokens[23]), model.to_str_tokens(answers[23:24])
    (torch.Size([100, 4]), '<bos>23=', ['5'])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from interp.common.checks import check_int, check_model, check_seed
from model.network.config import ModelConfig
from model.network.minigpt import MiniGPT

CONFIG = ModelConfig(d_model=64, n_heads=1, n_layers=1, d_ff=256, n_ctx=8, norm="none", tied_embed=False,
                     init_std=0.1)  # fmt: skip
STEPS, LEARNING_RATE = 400, 1e-2


def modular_sum_data(model: MiniGPT) -> tuple[Int[Tensor, "pair 4"], Int[Tensor, " pair"]]:
    """Every pair: ``<bos> a b =`` (row ``10 a + b``) and the id of the answer digit ``(a + b) mod 10``."""
    model = check_model(model)
    digits = torch.tensor([model.to_single_token(str(i)) for i in range(10)])
    a, b = (x.flatten() for x in torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij"))
    eq = torch.full_like(a, model.to_single_token("="))
    tokens = torch.stack([torch.full_like(a, model.to_single_token("<bos>")), digits[a], digits[b], eq], dim=1)
    return tokens.to(model.device), digits[(a + b) % 10].to(model.device)


def train_modular_sum(seed: int = 0, steps: int = STEPS) -> MiniGPT:
    """The modular-addition model of the module docstring, trained from ``seed`` for ``steps`` Adam steps."""
    seed, steps = check_seed(seed), check_int(steps, "steps", minimum=1)
    model = MiniGPT(CONFIG, seed=seed)
    tokens, answers = modular_sum_data(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(model(tokens)[:, -1], answers)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.provenance = {"trained": "interp.discover.trained.train_modular_sum", "seed": seed, "steps": steps}
    return model.eval()
