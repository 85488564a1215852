"""``process_weights_`` on every config: what each step must leave unchanged (logits, or log-probabilities after
centring the unembedding), what it must make true (LayerNorms w = 1 and b = 0, a mean-free residual stream, ``b_V``
zero), and the ARENA logit attribution, which sums exactly to the logit difference on processed weights only.
TransformerLens's own processed weights are compared in tests/test_transformerlens_reference.py.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from model import MiniGPT

TOL = dict(atol=2e-5, rtol=1e-5)


@pytest.fixture(params=list(CONFIG_VARIANTS), ids=list(CONFIG_VARIANTS))
def model(request):
    model = make_model(**CONFIG_VARIANTS[request.param])
    with torch.no_grad():  # LayerNorm gains and biases away from 1 and 0, so that folding has work to do
        for name, p in model.named_parameters():
            if ".ln" in name or name.startswith("ln_final"):
                p.normal_(1.0 if name.endswith(".w") else 0.0, 0.3)
    return model


def test_each_step_keeps_what_it_must(model, tokens):
    before = model(tokens)
    steps = ("fold_ln", "center_writing_weights", "fold_value_biases", "center_unembed")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in steps:
            model.process_weights_(**{s: s == step for s in steps})
            after = model(tokens)
            if step == "center_unembed":  # the logits move by one number per position
                torch.testing.assert_close(after.log_softmax(-1), before.log_softmax(-1), **TOL)
                shift = after - before
                torch.testing.assert_close(shift, shift[..., :1].expand_as(shift), **TOL)
            else:
                torch.testing.assert_close(after, before, **TOL, msg=f"{step} changed the logits")
    pre = model.cfg.norm == "pre"
    assert any("skipped" in str(w.message) for w in caught) == (model.cfg.norm != "pre"), [str(w) for w in caught]
    if pre:
        for ln in [model.ln_final, *(b.ln1 for b in model.blocks), *(b.ln2 for b in model.blocks if b.ln2)]:
            assert torch.equal(ln.w, torch.ones_like(ln.w)) and (ln.b is None or not ln.b.any())
        _, cache = model.run_with_cache(tokens)
        if model.cfg.positional != "sinusoidal":  # a sinusoidal table is fixed, not a weight to centre
            mean = cache["resid_post", -1].mean(-1).abs().max()
            print(f"\n{model.cfg.positional}: residual stream's largest mean after centring {mean:.1e}")
            assert mean < 1e-5
    assert not model.cfg.tied_embed or not pre
    assert all(b.attn.b_V is None or not b.attn.b_V.any() for b in model.blocks)


def test_a_processed_model_saves_and_loads(tmp_path, tokens):
    model = make_model()
    model.process_weights_()
    assert not model.cfg.tied_embed and model.unembed.has_bias
    model.save_pretrained(tmp_path / "processed")
    again = MiniGPT.from_pretrained(tmp_path / "processed")
    assert torch.equal(again(tokens), model(tokens))


def test_arena_logit_attribution_sums_exactly_once_processed(tokens):
    """ARENA's ``residual_stack_to_logit_diff``: once processed (as TransformerLens's ``from_pretrained`` loads GPT-2)
    the attributions plus ``b_U``'s difference are the logit difference; on raw weights the final LayerNorm's gain and
    bias are left out and the sum misses."""
    model = MiniGPT.from_pretrained("minigpt-text")
    answer, wrong = model.to_single_token("a"), model.to_single_token("e")

    def attributed_and_actual(m):
        logits, cache = m.run_with_cache(tokens)
        direction = m.tokens_to_residual_directions(torch.tensor(answer)) - m.tokens_to_residual_directions(wrong)
        stack = cache.apply_ln_to_stack(cache.decompose_resid(layer=-1, pos_slice=-1), layer=-1, pos_slice=-1)
        attributed = (stack @ direction).sum(0) + m.b_U[answer] - m.b_U[wrong]  # [batch]
        return attributed, logits[:, -1, answer] - logits[:, -1, wrong]

    raw_sum, actual = attributed_and_actual(model)
    model.process_weights_()
    processed_sum, actual_after = attributed_and_actual(model)
    print(f"\nlogit difference {actual[0]:.4f}: attributed {raw_sum[0]:.4f} raw, {processed_sum[0]:.4f} processed")
    torch.testing.assert_close(actual_after, actual, **TOL)
    torch.testing.assert_close(processed_sum, actual_after, atol=1e-4, rtol=1e-4)
    assert (raw_sum - actual).abs().max() > 0.01, "raw weights: the sum leaves out the final LayerNorm's w and b"


def test_bad_flags_are_refused():
    with pytest.raises(TypeError, match="fold_ln must be True or False, got 1"):
        make_model().process_weights_(fold_ln=1)
