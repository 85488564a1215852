"""Dev-only parity with TransformerLens's HookedTransformer on the same weights: logits and every cache entry.

TransformerLens is not a dependency: its 2.x line (the last with HookedTransformer) pins transformers < 5,
which conflicts with ours, so this file is skipped unless you run it in an environment that has it, e.g.
``python -m venv /tmp/tl && /tmp/tl/bin/pip install -c requirements-torch.txt torch "transformer-lens<3"
pytest pytest-timeout hypothesis`` then ``/tmp/tl/bin/python -m pytest tests/test_transformerlens_parity.py``.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_model

from model import MiniGPT

transformer_lens = pytest.importorskip("transformer_lens", reason="transformer_lens is not installed (dev-only check)")
if not hasattr(transformer_lens, "HookedTransformerConfig"):
    pytest.skip("TransformerLens >= 4 removed HookedTransformer; install transformer-lens<3", allow_module_level=True)

TOL = 1e-5
ZERO_IF_ABSENT = {"b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b", "b_U"}  # biases a no-bias MiniGPT lacks
CONFIGS = {
    "locked-like": {},
    "untied-gelu-new-3-layers": {"tied_embed": False, "act": "gelu_new", "n_layers": 3},
    "rotary-relu": {"positional": "rotary", "act": "relu"},
    "no-norm-attn-only": {"norm": "none", "attn_only": True},
    "no-bias": {"bias": False},
}


def to_hooked_transformer(model: MiniGPT):
    """A HookedTransformer of the same architecture with our weights (zeros for biases we do not have)."""
    cfg = model.cfg
    tl_cfg = transformer_lens.HookedTransformerConfig(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_ctx=cfg.n_ctx,
        d_head=cfg.d_head,
        n_heads=cfg.n_heads,
        d_mlp=None if cfg.attn_only else cfg.d_ff,
        d_vocab=cfg.d_vocab,
        act_fn=None if cfg.attn_only else cfg.act,
        normalization_type="LN" if cfg.norm == "pre" else None,
        positional_embedding_type="rotary" if cfg.positional == "rotary" else "standard",
        rotary_base=int(cfg.rotary_base),
        attn_only=cfg.attn_only,
        eps=cfg.ln_eps,
        use_attn_result=True,
        default_prepend_bos=False,
        device="cpu",
    )
    tl = transformer_lens.HookedTransformer(tl_cfg)
    ours = dict(model.state_dict())
    ours["unembed.W_U"] = model.W_U.detach()  # TransformerLens always has a separate W_U and b_U
    buffers = {name for name, _ in tl.named_buffers()}
    state = {}
    for key, value in tl.state_dict().items():
        if key in ours:
            state[key] = ours[key]
        elif key.rsplit(".", 1)[-1] in ZERO_IF_ABSENT or key in buffers:
            state[key] = torch.zeros_like(value) if key not in buffers else value  # a bias we lack, or TL's buffer
        else:
            raise AssertionError(f"TransformerLens weight {key} has no MiniGPT counterpart")
    unused = sorted(set(ours) - set(state))
    assert not unused, f"MiniGPT weights TransformerLens has no place for: {unused}"
    tl.load_state_dict(state)
    return tl.eval()


@pytest.mark.parametrize("variant", list(CONFIGS))
def test_logits_and_cache_match_hooked_transformer(variant, tokens):
    """Our logits and every activation we cache equal TransformerLens's under the same hook names (to 1e-5)."""
    overrides = CONFIGS[variant]
    model = make_model(**overrides)
    tl = to_hooked_transformer(model)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda name: True)
        tl_logits, tl_cache = tl.run_with_cache(tokens)
    err = (logits - tl_logits).abs().max().item()
    assert err < TOL, f"logits differ from HookedTransformer by {err:.2e}"
    missing = [name for name in cache if name not in tl_cache]
    assert not missing, f"hook names TransformerLens does not have: {missing} (names must match TL's)"
    for name, ours in cache.items():
        theirs = tl_cache[name]
        assert ours.shape == theirs.shape, f"{name}: shape {tuple(ours.shape)} vs TransformerLens {tuple(theirs.shape)}"
        finite = torch.isfinite(theirs)
        assert torch.equal(finite, torch.isfinite(ours)), f"{name}: masked (-inf) entries differ"
        err = (ours[finite] - theirs[finite]).abs().max().item() if finite.any() else 0.0
        assert err < TOL, f"{name} differs from TransformerLens by {err:.2e}"
