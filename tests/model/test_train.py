"""model.training.loop: schedule, config validation, determinism, exact resume, loss curve and preset smoke runs."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from conftest import make_cfg

from interp import induction_report
from model import PRESETS, TrainConfig, load_checkpoint, train
from model.training.data import TextData
from model.training.evaluation import bigram_baseline
from model.training.loop import lr_at

TINY = TrainConfig(task="induction", steps=8, batch_size=8, warmup_steps=3, eval_every=4, log_every=2, ckpt_every=0)
TINY_CFG = make_cfg(n_ctx=32, attn_only=True, n_heads=2)


def test_lr_schedule_warmup_then_cosine():
    """The lr rises linearly to its peak over warm-up, then falls monotonically to lr * min_lr_ratio."""
    cfg = TrainConfig(steps=100, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2), "warm-up is not linear to the peak"
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:])), "the cosine part is not monotone"
    assert lrs[-1] == pytest.approx(1e-3), "the schedule does not end at lr * min_lr_ratio"
    assert lrs[55] == pytest.approx(1e-3 + 0.9e-2 * 0.5 * (1 + math.cos(math.pi * 45 / 89))), "not a cosine"


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"task": "vision"}, "task"),
        ({"steps": 0}, "steps"),
        ({"lr": -1.0}, "lr"),
        ({"unknown": "replace"}, "unknown"),
        ({"task": "induction", "text_file": "x.txt"}, "text_file"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"val_windows": 0}, "val_windows"),
        ({"samples": 9}, "samples"),
    ],
)
def test_train_config_validation(changes, match):
    """Invalid TrainConfig fields raise a ValueError naming the field."""
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)


def test_presets_follow_the_issue_recipe():
    """induction-2l: 1 head/layer, attention-only, no LayerNorm, untied, batch 128, lr 3e-3; text: locked config."""
    cfg, tcfg = PRESETS["induction-2l"]
    assert (cfg.n_heads, cfg.n_layers, cfg.d_model, cfg.attn_only, cfg.norm, cfg.tied_embed) == (
        1,
        2,
        64,
        True,
        "none",
        False,
    )
    assert (tcfg.batch_size, tcfg.lr, tcfg.weight_decay, tcfg.task) == (128, 3e-3, 0.01, "induction")
    text_cfg, text_tcfg = PRESETS["minigpt-text"]
    assert text_cfg == type(text_cfg)() and text_tcfg.task == "text" and text_tcfg.lr == 3e-3


def test_same_seed_same_weights(tmp_path):
    """Two runs with the same seed produce bit-identical weights; another seed does not."""
    a = train(TINY_CFG, TINY, tmp_path / "a", progress=False, command="test").model.state_dict()
    b = train(TINY_CFG, TINY, tmp_path / "b", progress=False, command="test").model.state_dict()
    c = train(TINY_CFG, TINY.replace(seed=1), tmp_path / "c", progress=False, command="test").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "training is not deterministic for a fixed seed"
    assert not all(torch.equal(a[k], c[k]) for k in a), "the seed has no effect"


def test_resume_continues_the_exact_run(tmp_path):
    """Stopping at step 5 and resuming to 8 gives the same weights as 8 uninterrupted steps."""
    whole = train(TINY_CFG, TINY, tmp_path / "whole", progress=False, command="test").model.state_dict()
    train(TINY_CFG, TINY, tmp_path / "part", progress=False, command="first", until_step=5)
    assert load_checkpoint(tmp_path / "part").provenance["steps"] == 5
    resumed = train(TINY_CFG, TINY, tmp_path / "part", resume=str(tmp_path / "part"), progress=False, command="again")
    assert resumed.history[-1]["step"] == 8 and resumed.history[0]["step"] == 2, "history not carried over"
    assert load_checkpoint(resumed.path).provenance["commands"] == ["first", "again"], "resume lost the first command"
    for k, v in whole.items():
        assert torch.equal(resumed.model.state_dict()[k], v), f"{k} differs: optimizer/RNG/schedule not restored"


def test_resume_errors(tmp_path):
    """Resuming a finished run or with another model config is a clear ValueError."""
    train(TINY_CFG, TINY.replace(steps=4), tmp_path / "m", progress=False, command="test")
    with pytest.raises(ValueError, match="already at step 4"):
        train(TINY_CFG, TINY.replace(steps=4), tmp_path / "m", resume=str(tmp_path / "m"), progress=False)
    with pytest.raises(ValueError, match="different model config"):
        train(TINY_CFG.replace(n_heads=4), TINY.replace(steps=8), tmp_path / "m", resume=str(tmp_path / "m"))


def test_outputs_beside_the_checkpoint(tmp_path):
    """A run leaves the checkpoint, its training state, and the loss curve as HTML and PNG, with provenance."""
    result = train(
        TINY_CFG, TINY, tmp_path / "m", progress=False, command="minigpt train --test", report=induction_report
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["m.json", "m.loss.html", "m.loss.png", "m.safetensors", "m.train.safetensors"], names
    assert (tmp_path / "m.loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert "plotly" in (tmp_path / "m.loss.html").read_text()
    prov = json.loads((tmp_path / "m.json").read_text())["provenance"]
    assert prov["command"] == "minigpt train --test" and prov["steps"] == 8
    assert prov["train_loss"] == result.history[-1]["train_loss"] and prov["val_loss"] is not None
    assert prov["history"] == result.history and "second_copy_loss" in prov["final_eval"]


def test_bigram_baseline_known_answer():
    """On train 'abab...' the add-alpha bigram gives val 'abab' the hand-computed loss."""
    a, b = 15, 16
    train_ids = torch.tensor([a, b] * 50)
    val_ids = torch.tensor([a, b, a, b])
    alpha, v = 0.1, 64
    p_b_a = (50 + alpha) / (50 + v * alpha)  # 50 a->b transitions
    p_a_b = (49 + alpha) / (49 + v * alpha)  # 49 b->a transitions
    expected = -(2 * math.log(p_a_b) + 2 * math.log(p_b_a)) / 4  # val[0] follows the last train 'b'
    got = bigram_baseline(TextData(train=train_ids, val=val_ids, source="test"), alpha=alpha)
    assert got == pytest.approx(expected, rel=1e-9), "bigram counts or conditioning are off by one"


def test_train_on_a_text_file(tmp_path):
    """task='text' with a user file trains, reports dropped characters, and records the data source."""
    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat. ☃ " * 40, encoding="utf-8")
    cfg = TrainConfig(steps=4, batch_size=4, eval_every=2, text_file=str(path), unknown="drop", ckpt_every=0, samples=1)
    result = train(make_cfg(), cfg, tmp_path / "m", progress=False, command="test")
    prov = load_checkpoint(result.path).provenance
    assert "dropped 40 unknown characters" in prov["data"] and prov["final_eval"]["val_nats_per_char"] > 0
    assert len(prov["final_eval"]["samples"]) == 1 and prov["final_eval"]["samples"][0]["text"].startswith("the ")


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_smoke_training_lowers_the_loss(tmp_path, preset):
    """A few dozen steps of each preset's recipe lower the training loss (the full runs are not repeated)."""
    model_cfg, cfg = PRESETS[preset]
    cfg = cfg.replace(steps=40, batch_size=32, warmup_steps=5, log_every=10, eval_every=40, val_windows=64, samples=0)
    result = train(model_cfg, cfg, tmp_path / preset, progress=False, command="test")
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    assert last < first - 0.01, f"{preset}: loss went {first:.4f} -> {last:.4f}; the optimizer is not learning"


def test_loss_png_is_a_valid_image_with_both_series(tmp_path):
    """The PNG writer emits a decodable RGB image of the asked size containing the train and val colours."""
    import struct
    import zlib

    from model.training.lossplot import SERIES, write_loss_png

    history = [
        {"step": s, "train_loss": 4 - s / 100, "val_loss": 4.2 - s / 100 if s % 20 == 0 else None}
        for s in range(0, 200, 10)
    ]
    write_loss_png(history, tmp_path / "c.png", width=320, height=200)
    data = (tmp_path / "c.png").read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (320, 200) and data[24:26] == b"\x08\x02", "IHDR is not 8-bit RGB of the asked size"
    idat_len = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41 : 41 + idat_len])
    assert len(raw) == height * (1 + 3 * width), "IDAT does not hold one filtered row per line"
    pixels = {
        tuple(raw[i : i + 3])
        for r in range(height)
        for i in range(r * (1 + 3 * width) + 1, (r + 1) * (1 + 3 * width), 3)
    }
    for _, label, color in SERIES:
        assert color in pixels, f"the {label} series was not drawn"
    with pytest.raises(ValueError, match="no finite losses"):
        write_loss_png([{"step": 0, "train_loss": None, "val_loss": None}], tmp_path / "e.png")
