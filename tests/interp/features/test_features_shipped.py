"""The shipped SAEs: they load by name, their recorded figures are measured again on held-out text (a slice of
the validation split), and every one meets the target (CE loss recovered >= 0.9 at L0 <= 16)."""

import pytest
import torch

from interp.features.evaluate import sae_metrics
from interp.features.sae import SAE, list_saes
from model import MiniGPT
from model.training.data import builtin_corpus, text_eval_batches

SHIPPED = ["minigpt-text-mlp-transcoder-1", "minigpt-text-resid-post-0", "minigpt-text-resid-post-1"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_shipped_saes_load_by_name():
    assert sorted(list_saes()) == SHIPPED
    for name in SHIPPED:
        sae = SAE.from_pretrained(name)
        assert sae.cfg.model_name == "minigpt-text"
        assert sae.cfg.k == 16 and sae.cfg.d_sae >= 512
        assert sae.provenance["command"].startswith("minigpt sae train")
        assert sae.W_dec.norm(dim=-1).sub(1).abs().max() < 1e-4


@pytest.fixture(scope="module")
def held_out():
    model = MiniGPT.from_pretrained("minigpt-text").eval()
    val = torch.cat(text_eval_batches(builtin_corpus(model.tokenizer).val, model.cfg.n_ctx, max_windows=256))
    return model, val


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_figures_hold_on_held_out_text(name, held_out):
    model, val = held_out
    sae = SAE.from_pretrained(name)
    recorded = sae.provenance["metrics"]
    row = sae_metrics(model, val, sae=sae).iloc[0]
    print(f"\n{name}: variance explained {row.variance_explained:.4f}, L0 {row.l0:.2f}, dead {row.dead}, "
          f"dense {row.dense}, CE recovered {row.ce_recovered:.4f} on {len(val)} validation windows "
          f"(recorded on the whole split: {recorded['ce_recovered']:.4f})")  # fmt: skip
    assert row.l0 <= 16
    assert abs(row.ce_recovered - recorded["ce_recovered"]) < 0.05
    assert abs(row.variance_explained - recorded["variance_explained"]) < 0.05
    assert recorded["l0"] <= 16 and recorded["ce_recovered"] >= 0.9
