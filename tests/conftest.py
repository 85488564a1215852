"""Shared test builders: tiny seeded models that run in milliseconds, no downloads."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import torch
from plotly.graph_objects import Figure

from model import MiniGPT, ModelConfig

APP = str(Path(__file__).resolve().parents[1] / "dashboards" / "app.py")

CONFIG_VARIANTS = {
    "locked": {},
    "post-norm": {"norm": "post"},
    "no-norm-attn-only-untied": {"norm": "none", "attn_only": True, "tied_embed": False},
    "rotary-no-bias": {"positional": "rotary", "bias": False},
    "sinusoidal-relu": {"positional": "sinusoidal", "act": "relu"},
    "untied-gelu-new-3-layers": {"tied_embed": False, "act": "gelu_new", "n_layers": 3},
}


def figure_array(value: list | dict) -> np.ndarray:
    """A figure array as sent to the browser: a plain list, or plotly's base64 ``{dtype, bdata, shape}``."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return flat.reshape([int(n) for n in str(value.get("shape", len(flat))).split(",")])
    return np.asarray(value)


def make_cfg(**overrides) -> ModelConfig:
    """A small config (d_model 32, 4 heads, 2 layers, vocab 64, context 16) with overrides."""
    base = {"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "d_vocab": 64, "n_ctx": 16}
    base.update(overrides)
    return ModelConfig(**base)


def make_model(seed: int = 0, **overrides) -> MiniGPT:
    """A seeded tiny model; weights a bit larger than the init so that nothing is near-uniform."""
    model = MiniGPT(make_cfg(**overrides), seed=seed)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture
def tiny_model() -> MiniGPT:
    return make_model()


@pytest.fixture(params=list(CONFIG_VARIANTS), ids=list(CONFIG_VARIANTS))
def variant_model(request) -> MiniGPT:
    return make_model(**CONFIG_VARIANTS[request.param])


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 64, (3, 12), generator=torch.Generator().manual_seed(0))


# The shipped models, loaded once per session, and the probe: BOS + r + r with r = 15 random tokens.
@pytest.fixture(scope="session")
def induction_model() -> MiniGPT:
    return MiniGPT.from_pretrained("induction-2l").eval()


@pytest.fixture(scope="session")
def text_model() -> MiniGPT:
    return MiniGPT.from_pretrained("minigpt-text").eval()


@pytest.fixture(scope="session")
def repeated_tokens() -> torch.Tensor:
    from model.training.data import repeated_pair_batch

    return repeated_pair_batch(64, 15, torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def restore_torch_threads():
    """The app sets torch to one thread (see dashboards/app.py); give the other test modules their setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def open_page(page: str | None = None):
    """A fresh dashboard session (streamlit AppTest) on ``page`` (a file under ``dashboards/views``), run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    return at


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (restored after): the SAEs and models of the features tests are so small
    that they run several times faster on one thread, and leave the other core alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def validated(fig: Figure) -> Figure:
    """Check ``fig`` against plotly's full validation (the dashboard skips it for speed) and its colour scales."""
    Figure(fig.to_dict())  # raises ValueError naming any invalid property
    for trace in fig.to_dict()["data"]:
        assert not isinstance(trace.get("colorscale", []), str), (
            "named colour scales mean different things in plotly.js"
        )
    scale = fig.to_dict()["layout"].get("coloraxis", {}).get("colorscale", [])
    assert not isinstance(scale, str), "named colour scales mean different things in plotly.js"
    return fig


@pytest.fixture
def saved(tmp_path):
    """A tiny model saved as ``tmp_path/m.safetensors`` + ``m.json`` (provenance ``{"steps": 7}``): (model, path)."""
    from model.storage.checkpoint import save_checkpoint

    model = make_model()
    return model, save_checkpoint(
        tmp_path / "m", model.cfg, model.state_dict(), model.tokenizer.to_dict(), {"steps": 7}
    )


def listing(folder: Path) -> list[str]:
    """The names in ``folder``, sorted (what a failed write must leave unchanged)."""
    return sorted(p.name for p in folder.iterdir())


def errors(at) -> list[str]:
    """The error messages an AppTest run shows."""
    return [e.value for e in at.error]


def assert_renders(at, n_charts: int = 1) -> None:
    """An AppTest run raised nothing and drew at least ``n_charts`` plotly charts."""
    assert not at.exception, f"the page raised: {at.exception[0].message if at.exception else ''}"
    assert len(at.get("plotly_chart")) >= n_charts, f"fewer than {n_charts} plots; errors: {errors(at)}"
