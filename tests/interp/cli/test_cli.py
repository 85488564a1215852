"""The `minigpt` command line, run in-process: exit codes, stdout, stderr, and files written."""

from __future__ import annotations

import json
import re

import pytest
from conftest import make_model

from interp.cli.main import COMMANDS, main


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    make_model(n_ctx=32).save_pretrained(str(path), {"steps": 0})
    return str(path) + ".safetensors"


def test_top_level_help_lists_every_command(capsys):
    """`minigpt --help` exits 0 and names every registered subcommand."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    missing = [name for name in COMMANDS if name not in out]
    assert not missing, f"--help does not mention {missing}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help_with_examples(command, capsys):
    """`minigpt <command> --help` exits 0 and shows at least one example invocation."""
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"minigpt {command}" in out, f"{command} --help has no examples"


def test_no_or_unknown_command_is_a_usage_error(capsys):
    """No subcommand or an unknown one exits 2 with a usage message on stderr."""
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "usage: minigpt" in err and "invalid choice" in err


def test_generate_is_seeded_and_greedy_ignores_the_seed(tiny_ckpt, capsys):
    """The same seed prints the same text; temperature 0 prints the same text for any seed."""
    args = ["generate", "--model", tiny_ckpt, "--prompt", "the ", "--max-new-tokens", "10"]
    outs = []
    for extra in (["--seed", "1"], ["--seed", "1"], ["--temperature", "0", "--seed", "1"], ["--temperature", "0"]):
        assert main(args + extra) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1], "same seed, different text"
    assert outs[2] == outs[3], "greedy decoding depends on the seed"
    assert all(o.startswith("the ") and o.endswith("\n") for o in outs), f"prompt not echoed: {outs}"


def test_unknown_model_is_one_line_exit_2(capsys):
    """An unknown model name exits 2 with one line on stderr naming the shipped models, nothing on stdout."""
    assert main(["generate", "--model", "no-such-model", "--prompt", "a"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", "wrote to stdout on error"
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minigpt generate: error:"), captured.err
    assert "no-such-model" in lines[0] and "induction-2l" in lines[0]


def test_bad_argument_value_is_exit_2(tiny_ckpt, capsys):
    """A non-numeric --max-new-tokens or an out-of-range --top-p exits 2 with a message."""
    assert main(["generate", "--model", tiny_ckpt, "--max-new-tokens", "many"]) == 2
    assert main(["generate", "--model", tiny_ckpt, "--top-p", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "invalid int value" in err and "top_p must be in (0, 1]" in err


def test_hooks_lists_names_and_shapes(tiny_ckpt, capsys):
    """`minigpt hooks` prints every hook name of the model with its activation shape on the prompt."""
    assert main(["hooks", "--model", tiny_ckpt, "--prompt", "abc"]) == 0
    out = capsys.readouterr().out
    model = make_model(n_ctx=32)
    for name in model.hook_names:
        assert name in out, f"{name} missing from the hook listing"
    assert re.search(r"blocks\.0\.attn\.hook_pattern +\[1, 4, 4, 4\]", out), "pattern shape wrong or missing"
    assert re.search(r"blocks\.1\.attn\.hook_result +\[1, 4, 4, 32\]", out), "hook_result not listed with its shape"


def test_train_writes_checkpoint_and_records_the_command(tmp_path, capsys):
    """`minigpt train` exits 0, writes the checkpoint pair and records the exact command in provenance."""
    out = tmp_path / "ind"
    argv = ["train", "--preset", "induction-2l", "--out", str(out), "--steps", "3", "--batch-size", "8"]
    argv.append("--no-progress")
    assert main(argv) == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    prov = json.loads(out.with_suffix(".json").read_text())["provenance"]
    assert prov["command"] == "minigpt " + " ".join(argv) and prov["steps"] == 3


def test_train_with_missing_text_file_writes_nothing(tmp_path, capsys):
    """A missing --text-file exits 2 with one line naming it and leaves no files behind."""
    missing = str(tmp_path / "nope.txt")
    argv = ["train", "--preset", "minigpt-text", "--out", str(tmp_path / "m"), "--text-file", missing]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.txt" in err and "does not exist" in err, err
    assert list(tmp_path.iterdir()) == [], "a failed train left files behind"


# ------------------------------------------------------------------------------------------- ablate / sweep / patch
def test_ablate_prints_before_and_after_and_writes_the_table(tiny_ckpt, tmp_path, capsys):
    """`minigpt ablate` names the ablations, prints loss before/after equal to ablate(), and --out writes it."""
    import pandas as pd
    import torch

    from interp import ablate
    from model import MiniGPT

    out = tmp_path / "ablation.csv"
    argv = ["ablate", "--model", tiny_ckpt, "--heads", "1.2,0.3", "--prompt", "the cat sat", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "zero-ablate head L1H2" in printed and "zero-ablate head L0H3" in printed, printed
    table = pd.read_csv(out)
    assert list(table.columns) == ["measure", "before", "after", "change"]
    model = MiniGPT.from_pretrained(tiny_ckpt)
    tokens = model.to_tokens("the cat sat")
    loss = table.set_index("measure").loc["loss"]
    with torch.no_grad():
        assert loss.before == pytest.approx(float(model(tokens, return_type="loss")), abs=1e-5)
    assert loss.after == pytest.approx(ablate(model, tokens, heads="1.2,0.3").loss, abs=1e-5), "CLI != library"


def test_ablate_mean_uses_a_reference_and_logit_diff_metric(tiny_ckpt, capsys):
    """--method mean with --reference texts and --answer/--wrong prints a logit-difference row."""
    argv = ["ablate", "--model", tiny_ckpt, "--heads", "0.1", "--method", "mean", "--prompt", "abcabc"]
    argv += ["--reference", "hello world", "--reference", "another one", "--answer", "a", "--wrong", "b"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "mean-ablate head L0H1" in printed and "logit difference" in printed, printed


def test_sweep_prints_the_top_rows_and_writes_every_row(tiny_ckpt, tmp_path, capsys):
    """`minigpt sweep --top 3` prints 3 heads, largest |delta| first, and writes all 8 rows equal to head_sweep."""
    import pandas as pd

    from interp import head_sweep
    from model import MiniGPT

    out = tmp_path / "sweep.csv"
    argv = ["sweep", "--model", tiny_ckpt, "--prompt", "hello there", "--top", "3", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split() == ["layer", "head", "metric_clean", "metric_ablated", "delta"], printed
    assert len(printed) == 2 + 3 + 1, f"expected a title, a header, 3 rows and the 'wrote' line: {printed}"
    written = pd.read_csv(out)
    model = MiniGPT.from_pretrained(tiny_ckpt)
    expected = head_sweep(model, model.to_tokens("hello there"))
    assert len(written) == 8 and written.delta.values == pytest.approx(expected.delta.values, abs=1e-5)
    shown = [abs(float(line.split()[-1])) for line in printed[2:5]]
    assert shown == sorted(shown, reverse=True), "rows not ranked by |delta|"


def test_patch_writes_every_cell(tiny_ckpt, tmp_path, capsys):
    """`minigpt patch --grid heads` (real and attribution) writes one row per head with normalised scores."""
    import pandas as pd

    out = tmp_path / "patch.csv"
    argv = ["patch", "--model", tiny_ckpt, "--clean", "the cat sat", "--corrupted", "the dog sat", "--grid", "heads"]
    for extra in ([], ["--attribution"]):
        assert main([*argv, *extra, "--out", str(out)]) == 0, capsys.readouterr().err
        assert "normalized 0 = corrupted, 1 = clean" in capsys.readouterr().out
        frame = pd.read_csv(out)
        assert len(frame) == 8 and {"layer", "head", "normalized", "metric_clean"} <= set(frame.columns)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ablate", "--prompt", "abc"], "nothing to ablate"),
        (["ablate", "--prompt", "abc", "--heads", "1.9"], "valid heads 0..3"),
        (["ablate", "--prompt", "abc", "--heads", "1.0", "--answer", "a"], "--answer and --wrong go together"),
        (["sweep", "--prompt", "abc", "--loss-positions", "x"], "--loss-positions must look like 16:31"),
        (["patch", "--clean", "abc", "--corrupted", "abcd"], "must have the same shape"),
    ],
    ids=["nothing", "bad-head", "answer-alone", "bad-positions", "lengths"],
)
def test_ablation_commands_report_bad_input_in_one_line(tiny_ckpt, capsys, argv, message):
    """Bad ablate/sweep/patch input exits 2 with one line on stderr saying what was wrong."""
    assert main([*argv, "--model", tiny_ckpt]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_ablate_a_hugging_face_folder(tmp_path, capsys):
    """``--model`` takes a Hugging Face model folder: its BPE tokenizer reads the prompt, the library agrees."""
    import pandas as pd
    from hf_folders import gpt2_folder

    from interp import ablate
    from model import MiniGPT

    folder, out = gpt2_folder(tmp_path / "gpt2"), tmp_path / "ablation.csv"
    argv = ["ablate", "--model", str(folder), "--heads", "L1H2", "--prompt", "The list of names", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    model = MiniGPT.from_pretrained(str(folder))
    after = pd.read_csv(out).set_index("measure").loc["loss"].after
    assert after == pytest.approx(ablate(model, model.to_tokens("The list of names"), heads="L1H2").loss, abs=1e-5)
