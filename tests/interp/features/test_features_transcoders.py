"""Training transcoders: skip transcoders (an affine path W_skip beside the features), the dead-feature resampler
on inputs with a large mean (an MLP's input after its LayerNorm), and AuxK (dead features fit the residual)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp.features.analysis import feature_dla
from interp.features.config import SAEConfig
from interp.features.dead import _auxk_loss
from interp.features.sae import SAE
from interp.features.streams import _make_source
from interp.features.training import SAETrainConfig, _Run, train_sae, train_transcoder
from model import MiniGPT, ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _linear_task(n: int = 4000, d_in: int = 8, d_out: int = 6):
    """Inputs and a target that is exactly affine in them: ``y = x @ A + c``."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d_in, generator=gen)
    a, c = torch.randn(d_in, d_out, generator=gen), torch.randn(d_out, generator=gen)
    return x, x @ a + c, a


def _fvu(tc: SAE, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((tc(x) - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


def test_skip_transcoder_recovers_an_affine_target():
    """On a target exactly affine in the input, the skip path carries it: near-zero error, W_skip = A.T."""
    x, y, a = _linear_task()
    opts = dict(k=1, steps=400, batch_size=256, lr=1e-2, warmup_steps=10, seed=0, progress=False,
                hook_name="in", hook_name_out="out")  # fmt: skip
    skip = train_transcoder((x, y), 16, skip=True, **opts)
    plain = train_transcoder((x, y), 16, **opts)
    assert skip.cfg.architecture == "topk_skip_transcoder" and skip.W_skip.shape == (6, 8)
    fvu_skip, fvu_plain = _fvu(skip, x, y), _fvu(plain, x, y)
    print(f"\naffine target: FVU {fvu_skip:.2e} with the skip path, {fvu_plain:.3f} without")
    assert fvu_skip < 1e-3, "the skip path should fit an affine target: is x @ W_skip.T in the loss?"
    assert fvu_plain > 10 * fvu_skip
    # the skip path alone (x @ W_skip.T, W_skip [d_out, d_in]: the map A transposed) holds nearly all of the map
    with torch.no_grad():
        centred = x @ skip.W_skip.T - (x @ skip.W_skip.T).mean(0)
        alone = float((centred - (y - y.mean(0))).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
    print(f"the skip path alone: FVU {alone:.4f}; max |W_skip - A.T| {(skip.W_skip - a.T).abs().max():.3f}")
    assert alone < 0.05, "W_skip should be [d_out, d_in], the affine map transposed"


def test_skip_transcoder_round_trip_in_saelens_layout(tmp_path):
    """cfg.json says skip_transcoder, the weights hold W_skip [d_out, d_in], and the loaded one computes the same."""
    x, y, _ = _linear_task(n=500)
    tc = train_transcoder((x, y), 16, architecture="relu", skip=True, steps=20, batch_size=64, seed=0,
                          progress=False, hook_name="in", hook_name_out="out")  # fmt: skip
    folder = tc.save(tmp_path / "tc")
    doc = json.loads((folder / "cfg.json").read_text())
    assert (doc["architecture"], doc["d_in"], doc["d_out"]) == ("skip_transcoder", 8, 6)
    tensors = load_file(folder / "sae_weights.safetensors")
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {"W_enc": (8, 16), "b_enc": (16,), "W_dec": (16, 6),
                                                               "b_dec": (6,), "W_skip": (6, 8)}  # fmt: skip
    loaded = SAE.from_pretrained(folder)
    assert loaded.cfg == tc.cfg
    assert torch.equal(loaded(x), tc(x))
    assert not torch.equal(loaded(x), loaded.decode(loaded.encode(x))), "forward should add x @ W_skip.T"
    del tensors["W_skip"]  # a skip transcoder's file without its skip weight does not fit its config
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    doc["minigpt_lens"].pop("weights_sha256")
    (folder / "cfg.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="missing W_skip"):
        SAE.from_pretrained(folder)


def test_skip_transcoder_resumes_bit_for_bit(tmp_path):
    """W_skip and its Adam moments are in the training state: a resumed run ends where the whole one does."""
    x, y, _ = _linear_task(n=500)
    opts = dict(k=2, skip=True, steps=40, batch_size=64, seed=1, progress=False, resample_every=10, hook_name="in",
                hook_name_out="out")  # fmt: skip
    whole = train_transcoder((x, y), 16, **opts)
    train_transcoder((x, y), 16, out=tmp_path / "run", until_step=15, **opts)
    resumed = train_transcoder((x, y), 16, out=tmp_path / "run", resume=True, **opts)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "W_skip"):
        assert torch.equal(getattr(whole, name), getattr(resumed, name)), name


def test_skip_is_only_for_transcoders():
    """An SAE has no skip path (it would be its own input); the config says so."""
    with pytest.raises(ValueError, match="for transcoders"):
        train_sae(torch.randn(100, 4), 8, k=2, skip=True, progress=False)
    with pytest.raises(ValueError, match="hook_name_out"):
        SAEConfig("topk_skip_transcoder", d_in=4, d_sae=8, hook_name="x", k=2)
    assert SAE(SAEConfig("topk_transcoder", d_in=4, d_sae=8, hook_name="x", hook_name_out="y", k=2)).W_skip is None


@pytest.fixture(scope="module")
def tiny():
    return MiniGPT(ModelConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32, d_vocab=12, n_ctx=8), seed=0).eval()


def test_spliced_skip_transcoder_includes_the_skip_in_its_reconstruction(tiny):
    """hook_sae_recons = decode(features) + x @ W_skip.T, hook_sae_error = target - recons; feature DLA sums up."""
    cfg = SAEConfig("topk_skip_transcoder", d_in=16, d_sae=32, hook_name="blocks.1.ln2.hook_normalized",
                    hook_name_out="blocks.1.hook_mlp_out", k=4)  # fmt: skip
    tc = SAE(cfg, seed=0)
    with torch.no_grad():
        tc.W_skip.copy_(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    tokens = torch.randint(0, 12, (3, 8), generator=torch.Generator().manual_seed(0))
    _, clean = tiny.run_with_cache(tokens, names_filter=[cfg.hook_name, cfg.hook_name_out])
    x, y = clean[cfg.hook_name], clean[cfg.hook_name_out]
    _, cache = tiny.run_with_cache_with_saes(tokens, [tc])
    recons = cache["blocks.1.hook_mlp_out.hook_sae_recons"]
    with torch.no_grad():
        expected = tc.decode(tc.encode(x)) + x @ tc.W_skip.T
    assert torch.allclose(recons, expected, atol=1e-5), "the splice should add the skip path x @ W_skip.T"
    assert torch.allclose(cache["blocks.1.hook_mlp_out.hook_sae_error"], y - recons, atol=1e-5)
    assert torch.allclose(tiny.run_with_saes(tokens, [tc], use_error_term=True), tiny(tokens), atol=1e-5)
    frame = feature_dla(tiny, tokens, sae=tc)
    assert (frame.component_type == "sae_skip").sum() == tokens.numel()
    assert (frame.component_type == "sae_error").sum() == tokens.numel()


def test_resampled_transcoder_features_read_the_deviation_from_the_mean():
    """A resampled transcoder feature fires on the input it was resampled from, not on every token: a transcoder
    reads raw inputs (no b_dec subtracted), so the new encoder direction and bias must remove the inputs' mean."""
    gen = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(8, generator=gen) + torch.randn(2048, 8, generator=gen)  # a large common offset
    y = torch.relu(x) @ torch.randn(8, 6, generator=gen)
    cfg = SAETrainConfig(d_sae=32, k=4, steps=100, batch_size=2048, resample_every=10, seed=0)
    sae_cfg = SAEConfig("topk_transcoder", d_in=8, d_sae=32, hook_name="in", hook_name_out="out", k=4, d_out=6)
    run = _Run(cfg, sae_cfg, _make_source((x, y), 2048, 0, transcoder=True), None, False, "test")
    run.silent[:8] = cfg.resample_every  # features 0..7 have been silent long enough
    with torch.no_grad():
        error = run.sae._reconstruct(x, run.sae._encode(x)) - y
        run._resample(x, error)
        fires = (run.sae._pre(x)[:, :8] > 0).float().mean(0)
    assert run.state["resampled"][0]["features"] == 8
    print(f"\nresampled features fire on {fires.mean():.0%} of the tokens (at most {fires.max():.0%})")
    assert float(fires.max()) < 0.75, "a resampled feature fires on nearly every token: is the input mean removed?"


def test_auxk_fits_the_residual_with_the_dead_features_only():
    """AuxK's loss is ||e - e_hat||^2 with e the (detached) residual and e_hat the top aux_k dead features' decoding
    (no bias); its gradient reaches the dead features and nothing else."""
    x = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
    sae = SAE(SAEConfig("topk", d_in=8, d_sae=32, hook_name="x", k=4), seed=0)
    dead = torch.zeros(32, dtype=torch.bool)
    dead[::4] = True
    error = (sae(x) - x).detach()
    pre = sae.pre_activations(x).detach().masked_fill(~dead, float("-inf"))
    values, index = pre.topk(3, dim=-1)
    by_hand = (torch.zeros(256, 32).scatter(-1, index, values.relu()) @ sae.W_dec.detach() + error).pow(2).sum(-1)
    loss = _auxk_loss(sae, x, error, dead, aux_k=3)
    assert torch.allclose(loss, by_hand.mean(), rtol=1e-5), "AuxK should decode the dead features' top aux_k"
    loss.backward()
    assert sae.W_enc.grad[:, ~dead].abs().max() == 0 and sae.W_dec.grad[~dead].abs().max() == 0, "live features moved"
    assert sae.W_enc.grad[:, dead].abs().max() > 0, "the dead features should get a gradient"
    assert float(_auxk_loss(sae, x, error, torch.zeros(32, dtype=torch.bool), aux_k=3)) == 0.0  # nothing dead


def test_bad_auxk_options_say_what_to_do():
    x = torch.randn(100, 4)
    with pytest.raises(ValueError, match=r"aux_k \(AuxK\) is for architecture='topk'"):
        train_sae(x, 8, architecture="relu", aux_k=4, progress=False)
    with pytest.raises(ValueError, match="more than d_sae"):
        train_sae(x, 8, k=2, aux_k=9, progress=False)
    with pytest.raises(ValueError, match="aux_coefficient"):
        train_sae(x, 8, k=2, aux_k=4, aux_coefficient=-1.0, progress=False)
