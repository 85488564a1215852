"""SAEs and transcoders: planted-feature recovery (toy superposition), the SAELens round trip, splicing, resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from interp.features.config import SAEConfig
from interp.features.sae import SAE
from interp.features.toy import planted_feature_recovery, toy_features
from interp.features.training import train_sae, train_transcoder
from model import MiniGPT, ModelConfig

# The planted-feature test's setting: 32 features in 16 dimensions, each on with p = 0.05 (mean L0 1.6),
# a dictionary of 64 latents (2x the true features), TopK with L0 = k = 2.
N_FEATURES, D, P, D_SAE, K = 32, 16, 0.05, 64, 2


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def toy():
    return toy_features(n_features=N_FEATURES, d=D, p=P, n=20_000, seed=0)


@pytest.mark.slow
def test_planted_features_are_recovered(toy):
    torch.manual_seed(0)
    sae = train_sae(toy.activations, D_SAE, architecture="topk", k=K, steps=500, batch_size=256, seed=0,
                    progress=False)  # fmt: skip
    frame = planted_feature_recovery(sae, toy.directions)
    l0 = float((sae.encode(toy.activations) > 0).sum(-1).float().mean())
    score = float(frame.cosine.mean())
    print(f"\nplanted features: mean max cosine {score:.4f} (min {frame.cosine.min():.4f}) at d_sae={D_SAE}, "
          f"L0={l0:.2f} ({N_FEATURES} features in {D} dims, true L0 {toy.l0:.2f})")  # fmt: skip
    assert l0 <= K
    assert score >= 0.95
    # a random dictionary of the same size does much worse: the score measures recovery, not luck
    chance = float(planted_feature_recovery(SAE(sae.cfg, seed=1), toy.directions).cosine.mean())
    print(f"random dictionary of {D_SAE}: {chance:.4f}")
    assert chance < 0.8


def test_recovery_finds_the_planted_directions_exactly(toy):
    sae = SAE(SAEConfig("standard", d_in=D, d_sae=N_FEATURES, hook_name="toy"))
    perm = torch.randperm(N_FEATURES, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.W_dec.copy_(toy.directions[perm] * 3.0)  # scale does not matter, only direction
    frame = planted_feature_recovery(sae, toy.directions)
    assert frame.feature.tolist() == torch.argsort(perm).tolist()
    assert frame.cosine.min() == pytest.approx(1.0, abs=1e-6)


def test_save_load_round_trip_in_saelens_layout(tmp_path, toy):
    sae = train_sae(toy.activations, 48, architecture="topk", k=3, steps=40, batch_size=128, seed=0, progress=False,
                    hook_name="blocks.0.hook_resid_post", model_name="toy")  # fmt: skip
    folder = sae.save(tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    for field in ("d_in", "d_sae", "hook_name", "architecture", "apply_b_dec_to_input", "activation_fn_str",
                  "model_name", "dtype", "device"):  # fmt: skip
        assert field in cfg, field
    assert (cfg["d_in"], cfg["d_sae"], cfg["architecture"]) == (D, 48, "topk")
    tensors = load_file(folder / "sae_weights.safetensors")
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {"W_enc": (D, 48), "b_enc": (48,), "W_dec": (48, D),
                                                               "b_dec": (D,)}  # fmt: skip
    loaded = SAE.from_pretrained(folder)
    x = toy.activations[:64]
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert torch.equal(loaded(x), sae.decode(sae.encode(x)))
    assert loaded.W_dec.norm(dim=-1).sub(1).abs().max() < 1e-5  # unit decoder rows
    assert int((loaded.encode(x) > 0).sum(-1).max()) <= 3


def test_damaged_weights_are_refused(tmp_path, toy):
    sae = SAE(SAEConfig("standard", d_in=D, d_sae=8, hook_name="toy"), seed=0)
    folder = sae.save(tmp_path / "s")
    data = bytearray((folder / "sae_weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "sae_weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="hash"):
        SAE.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="no shipped SAE"):
        SAE.from_pretrained("no-such-sae")


def test_relu_training_is_seeded_and_sparse(toy):
    a, b = (train_sae(toy.activations, 32, architecture="relu", l1_coefficient=1.0, steps=60, batch_size=128, seed=3,
                      progress=False) for _ in range(2))  # fmt: skip
    assert torch.equal(a.W_enc, b.W_enc)
    l0 = float((a.encode(toy.activations) > 0).sum(-1).float().mean())
    assert l0 < 32


def test_resume_continues_bit_for_bit(tmp_path, toy):
    opts = dict(architecture="topk", k=2, steps=60, batch_size=64, seed=1, progress=False, resample_every=20)
    whole = train_sae(toy.activations, 24, **opts)
    train_sae(toy.activations, 24, out=tmp_path / "run", until_step=25, **opts)
    resumed = train_sae(toy.activations, 24, out=tmp_path / "run", resume=True, **opts)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(whole, name), getattr(resumed, name)), name
    assert (tmp_path / "run" / "loss.html").is_file()


@pytest.fixture(scope="module")
def tiny():
    return MiniGPT(ModelConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32, d_vocab=12, n_ctx=8), seed=0).eval()


def test_splice_replaces_the_activation_and_caches_features(tiny):
    tokens = torch.randint(0, 12, (3, 8), generator=torch.Generator().manual_seed(0))
    sae = SAE(SAEConfig("topk", d_in=16, d_sae=32, hook_name="blocks.0.hook_resid_post", k=4), seed=0)
    seen = {}

    def grab(x, hook):
        seen["resid"] = x.clone()

    spliced = tiny.run_with_saes(tokens, [sae], fwd_hooks=[("blocks.0.hook_resid_post", grab)])
    _, clean = tiny.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_post"])
    x = clean["blocks.0.hook_resid_post"]
    assert torch.allclose(seen["resid"], sae(x), atol=1e-6)  # later layers see the reconstruction
    out, cache = tiny.run_with_cache_with_saes(tokens, [sae])
    assert torch.allclose(out, spliced, atol=1e-6)
    name = "blocks.0.hook_resid_post"
    assert torch.allclose(cache[f"{name}.hook_sae_acts"], sae.encode(x), atol=1e-6)
    assert torch.allclose(cache[f"{name}.hook_sae_recons"] + cache[f"{name}.hook_sae_error"], x, atol=1e-5)
    with_error = tiny.run_with_saes(tokens, [sae], use_error_term=True)
    assert torch.allclose(with_error, tiny(tokens), atol=1e-5)
    assert not torch.allclose(spliced, tiny(tokens), atol=1e-3)
    assert torch.equal(tiny(tokens), tiny(tokens))  # no hook state left behind


def test_transcoder_trains_from_mlp_input_to_output(tiny):
    tokens = torch.randint(0, 12, (64, 8), generator=torch.Generator().manual_seed(1))
    tc = train_transcoder((tiny, 1, tokens), 64, k=8, steps=200, batch_size=128, warmup_steps=10, lr=5e-3, seed=0,
                          progress=False)  # fmt: skip
    assert tc.cfg.hook_name == "blocks.1.ln2.hook_normalized"
    assert tc.cfg.hook_name_out == "blocks.1.hook_mlp_out"
    _, cache = tiny.run_with_cache(tokens, names_filter=[tc.cfg.hook_name, tc.cfg.hook_name_out])
    x, y = cache[tc.cfg.hook_name], cache[tc.cfg.hook_name_out]
    fvu = float((tc(x).detach() - y).pow(2).sum() / (y - y.mean((0, 1))).pow(2).sum())
    print(f"\ntiny transcoder: fraction of variance unexplained {fvu:.3f}")
    assert fvu < 0.5
    _, cache = tiny.run_with_cache_with_saes(tokens, [tc])
    assert torch.allclose(cache["blocks.1.hook_mlp_out.hook_sae_recons"], tc(x), atol=1e-5)


def test_bad_training_options_say_what_to_do(toy):
    with pytest.raises(ValueError, match="needs k"):
        train_sae(toy.activations, 16, architecture="topk")
    with pytest.raises(ValueError, match="architecture"):
        train_sae(toy.activations, 16, architecture="gated", k=2)
    with pytest.raises(ValueError, match="more than d_sae"):
        train_sae(toy.activations, 4, k=8)
    with pytest.raises(ValueError, match="l1_coefficient is for"):
        train_sae(toy.activations, 16, k=2, l1_coefficient=0.1)
