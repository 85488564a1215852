"""The ``minigpt train``, ``minigpt generate`` and ``minigpt hooks`` subcommands (registered in :mod:`interp.cli.main`).

``train`` runs a preset (:mod:`model.training.presets`) and, for the induction task, records
:func:`interp.reports.induction.induction_report` in the checkpoint; ``generate`` samples a continuation;
``hooks`` lists the hook points and their shapes.
"""

from __future__ import annotations

import argparse
import shlex

from interp.cli.common import MODEL_HELP, load_model, prompt_tokens

TRAIN_EXAMPLES = (
    "  minigpt train --preset induction-2l --out model/checkpoints/induction-2l\n"
    "  minigpt train --preset minigpt-text --out model/checkpoints/minigpt-text\n"
    "  minigpt train --preset minigpt-text --text-file my.txt --unknown drop --steps 2000 --out runs/mine\n"
    "  minigpt train --preset minigpt-text --out runs/mine --resume runs/mine --steps 4000"
)
GENERATE_EXAMPLES = (
    '  minigpt generate --model minigpt-text --prompt "the " --temperature 0.8 --seed 1\n'
    '  minigpt generate --model runs/mine.safetensors --prompt "def " --temperature 0  # greedy'
)
HOOKS_EXAMPLES = '  minigpt hooks --model induction-2l --prompt "abcabc"'


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from model.training.presets import PRESETS

    p.add_argument("--preset", required=True, choices=sorted(PRESETS), help="model + training recipe")
    p.add_argument("--out", required=True, help="checkpoint path without suffix, e.g. runs/my-model")
    p.add_argument("--steps", type=int, help="total optimizer steps (preset default otherwise)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int, help="sequences per step")
    p.add_argument("--seed", type=int, help="seed of the initial weights and the data stream")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda")
    p.add_argument("--text-file", help="train on this UTF-8 text file instead of the built-in corpus (text presets)")
    p.add_argument("--unknown", choices=["drop", "error"], help="characters outside the 64 symbols in --text-file")
    p.add_argument("--resume", help="continue from this checkpoint (its .train.safetensors must sit beside it)")
    p.add_argument("--eval-every", type=int, help="validate every N steps")
    p.add_argument("--ckpt-every", type=int, help="write the checkpoint every N steps (0: only at the end)")
    p.add_argument("--snapshots", type=int, help="write about N snapshots of the weights (0: none; preset default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from model.training.loop import train
    from model.training.presets import PRESETS

    model_cfg, cfg = PRESETS[args.preset]
    fields = ("steps", "lr", "batch_size", "seed", "device", "text_file", "unknown", "eval_every", "ckpt_every")
    changes = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    if args.snapshots is not None:  # about N: a third log-spaced, the rest evenly spaced (model.training.schedule)
        from model.training.schedule import about

        changes["snapshots"] = about(args.snapshots)
    cfg = cfg.replace(**changes)
    command = "minigpt " + shlex.join(args.argv)
    report = None
    if cfg.task == "induction":  # the model is judged by interp's analyses, passed in (the model knows none)
        from interp.reports.induction import induction_report as report
    result = train(
        model_cfg, cfg, args.out, resume=args.resume, command=command, progress=not args.no_progress, report=report
    )
    hist = result.history
    val = next((h["val_loss"] for h in reversed(hist) if h["val_loss"] is not None), float("nan"))
    print(
        f"wrote {result.path} (steps {hist[-1]['step']}, train loss {hist[-1]['train_loss']:.4f}, val loss {val:.4f})"
    )
    for key, value in result.final.items():
        if key != "samples":
            print(f"  {key}: {value}")
    return 0


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="minigpt-text", help=MODEL_HELP)
    p.add_argument("--prompt", default="", help="text to continue (lower-cased; specials are added for you)")
    p.add_argument("--max-new-tokens", type=int, default=100, help="characters to add (default 100)")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    p.add_argument("--top-k", type=int, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="sample only from the smallest set with this much probability")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0): same seed, same text")


def run_generate(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    prompt_tokens(model, args.prompt, allow_empty=True)  # an empty prompt starts from <bos> alone
    text = model.generate(
        args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, seed=args.seed,
    )  # fmt: skip
    print(text)
    return 0


def add_hooks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="minigpt-text", help=MODEL_HELP)
    p.add_argument("--prompt", default="hello world", help="text whose activations give the shapes")


def run_hooks(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    _, cache = model.run_with_cache(prompt_tokens(model, args.prompt), names_filter=list(model.hook_names))
    width = max(len(n) for n in model.hook_names)
    print(f"{'hook':<{width}}  shape")
    for name in model.hook_names:
        print(f"{name:<{width}}  {list(cache[name].shape)}")
    return 0
