"""Shared machinery of the bad-input matrix (tests/model/test_bad_input_model.py, tests/interp/test_bad_input_interp.py
and the rooms' tests/interp/<room>/test_bad_input_*.py).

A :class:`Case` is one row: an entry point, a bad input, the exception type expected and a phrase its
message must contain. :func:`assert_clean_failure` runs a row and checks the house rule: the
exception is exactly ValueError, TypeError, KeyError, IndexError, FileNotFoundError or (a feature not offered
offline, such as a hub download) NotImplementedError, raised in this project's code (the last traceback frame is
not in torch, pandas or the standard library), its message contains the phrase, and the failed call changed
nothing: every model's weights are bit-identical, no hook is left active, and the grad mode and train/eval
flags are as before.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_model

from model import MiniGPT
from model.network.hooks import active_hook_count

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = (ValueError, TypeError, KeyError, IndexError, FileNotFoundError, NotImplementedError)


@dataclass(frozen=True)
class Case:
    """One row of the matrix: ``call(env)`` must raise ``error`` with ``phrase`` in its message."""

    entry: str  # "MiniGPT.forward", "interp.observe.dla.direct_logit_attribution", ...
    label: str  # the bad input, in a few words
    call: Callable[[SimpleNamespace], object]
    error: type[Exception]
    phrase: str
    xfail: str | None = None  # the fix it waits for, in a file this helper may not edit

    @property
    def id(self) -> str:
        return f"{self.entry}: {self.label}"


def params(cases: list[Case]) -> list:
    """pytest params with readable ids; rows waiting for a fix elsewhere are strict xfails."""
    out = []
    for case in cases:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def nan_hook(act: torch.Tensor, hook) -> torch.Tensor:
    """A hook that makes every value of its activation NaN."""
    return act * float("nan")


def in_hooks(model: MiniGPT, hooks: list, fn: Callable[[], object]) -> object:
    """``fn()`` with ``hooks`` active on ``model`` (as a user's ``with model.hooks(...)`` block)."""
    with model.hooks(hooks):
        return fn()


def build_env(tmp: Path) -> SimpleNamespace:
    """Tiny models (plain, attention-only, post-norm, NaN / inf weights), tokens, caches and a DLA frame."""
    env = SimpleNamespace(tmp=tmp)
    env.model, env.attn_only, env.post = make_model(), make_model(attn_only=True), make_model(norm="post")
    env.nan_model, env.inf_model = make_model(), make_model()
    with torch.no_grad():
        env.nan_model.blocks[1].attn.W_Q[0, 0, 0] = float("nan")
        env.inf_model.blocks[0].mlp.W_in[0, 0] = float("inf")
    env.models = [env.model, env.attn_only, env.post, env.nan_model, env.inf_model]
    gen = torch.Generator().manual_seed(0)
    env.tokens = torch.randint(3, 64, (2, 6), generator=gen)
    env.other = torch.randint(3, 64, (2, 6), generator=gen)
    env.reference = torch.randint(3, 64, (3, 8), generator=gen)
    with torch.no_grad():
        _, env.cache = env.model.run_with_cache(env.tokens)
        _, env.small_cache = env.model.run_with_cache(env.tokens, names_filter="hook_embed")
        _, env.nan_cache = env.model.run_with_cache(env.tokens, fwd_hooks=[("blocks.0.hook_attn_out", nan_hook)])
    from interp import direct_logit_attribution

    env.frame = direct_logit_attribution(env.model, env.tokens, env.cache)
    return env


def _snapshot(model: MiniGPT) -> dict[str, torch.Tensor]:
    """Every tensor of the state dict as raw bytes (NaN-safe bit comparison)."""
    return {k: v.detach().clone().contiguous().view(torch.uint8) for k, v in model.state_dict().items()}


def _message(err: BaseException) -> str:
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def _ours(filename: str) -> bool:
    path = Path(filename).resolve()
    return path.is_relative_to(ROOT) and ".venv" not in path.parts


def assert_clean_failure(case: Case, env: SimpleNamespace) -> None:
    """Run ``case`` and check the rule of the module docstring."""
    before = [_snapshot(m) for m in env.models]
    modes = [m.training for m in env.models]
    grad = torch.is_grad_enabled()
    with pytest.raises(Exception) as info:
        case.call(env)
    err = info.value
    assert type(err) in ALLOWED, f"{case.id}: raised {type(err).__name__}: {err} (not one of the typed errors)"
    assert isinstance(err, case.error), f"{case.id}: expected {case.error.__name__}, got {type(err).__name__}: {err}"
    assert case.phrase in _message(err), f"{case.id}: message {_message(err)!r} lacks {case.phrase!r}"
    last = traceback.extract_tb(info.tb)[-1]
    assert _ours(last.filename), f"{case.id}: raised deep inside {last.filename}:{last.lineno}, not at our check"
    for model, snap in zip(env.models, before, strict=True):
        after = _snapshot(model)
        changed = [k for k in snap if not torch.equal(snap[k], after[k])]
        assert not changed, f"{case.id}: the failed call modified the weights {changed}"
    assert [m.training for m in env.models] == modes, f"{case.id}: the failed call switched train/eval mode"
    assert torch.is_grad_enabled() == grad, f"{case.id}: the failed call left the grad mode changed"
    assert active_hook_count() == 0, f"{case.id}: a hook outlived the failed call"


def covered_entries(cases: list[Case]) -> set[str]:
    """Entry names of the rows, with every dotted prefix (a method row covers its class)."""
    out = set()
    for case in cases:
        parts = case.entry.split(".")
        out |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    return out
