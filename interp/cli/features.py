"""The ``minigpt sae train|features|steer`` subcommands (registered in :mod:`interp.cli.main`).

``train`` trains an SAE (``--hook``) or a transcoder (``--transcoder LAYER``) on the model's activations over
random windows of the built-in corpus's training split, then measures the standard figures on the validation
split and records them, with the exact command, in the SAE's ``cfg.json``. ``features`` shows one feature (its
label, top contexts, histogram and logit effects) or the features active on a prompt; ``steer`` samples a
continuation with a feature steered, ablated or clamped. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import argparse
import shlex

from interp.cli.common import check_out, check_top, emit, load_model, prompt_tokens

SAE_EXAMPLES = (
    "  minigpt sae train --hook blocks.1.hook_resid_post --d-sae 512 --k 16 --out runs/my-sae\n"
    "  minigpt sae train --transcoder 1 --d-sae 512 --k 16 --out runs/my-transcoder\n"
    "  minigpt sae features --sae minigpt-text-resid-post-1 --feature 7\n"
    '  minigpt sae features --sae minigpt-text-resid-post-0 --prompt "the value of the"\n'
    '  minigpt sae steer --sae minigpt-text-resid-post-1 --feature 7 --value 6 --prompt "the "'
)
SAE_HELP = "shipped SAE name or an SAE folder (cfg.json + sae_weights.safetensors)"


def add_sae_arguments(p: argparse.ArgumentParser) -> None:
    subs = p.add_subparsers(dest="sae_command", metavar="train|features|steer", required=True)
    t = subs.add_parser("train", help="train an SAE or a transcoder on a model's activations")
    t.add_argument("--model", default="minigpt-text", help="shipped name or .safetensors path (default minigpt-text)")
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument("--hook", help="the hook point an SAE reads and reconstructs, e.g. blocks.1.hook_resid_post")
    where.add_argument("--transcoder", type=int, metavar="LAYER", help="train a transcoder of this layer's MLP")
    t.add_argument("--d-sae", type=int, required=True, help="number of features")
    t.add_argument("--architecture", choices=["topk", "relu"], default="topk", help="default topk")
    t.add_argument("--k", type=int, help="topk: features per token")
    t.add_argument("--l1", type=float, help="relu: L1 coefficient (default 1.0)")
    t.add_argument("--skip", action="store_true", help="transcoders: an affine skip path W_skip beside the features")
    t.add_argument("--aux-k", type=int, default=0, help="topk: AuxK, dead features fit the residual (0: off)")
    t.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    t.add_argument("--batch-size", type=int, default=1024, help="activations per step (default 1024)")
    t.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (default 1e-3)")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights and the activation stream (default 0)")
    t.add_argument("--windows", type=int, default=32768, help="training windows drawn from the train split")
    t.add_argument("--eval-windows", type=int, help="validation windows for the figures (default: the whole split)")
    t.add_argument("--out", required=True, help="the SAE's folder, e.g. runs/my-sae")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument("--ckpt-every", type=int, default=0, help="save every N steps (0: only at the end)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    f = subs.add_parser("features", help="one feature's card, or the features active on a prompt")
    f.add_argument("--sae", required=True, help=SAE_HELP)
    f.add_argument("--model", help="the model the SAE reads (default: the one it was trained on)")
    which = f.add_mutually_exclusive_group(required=True)
    which.add_argument("--feature", type=int, help="show this feature")
    which.add_argument("--prompt", help="list the features active at each character of this text")
    f.add_argument("--top", type=int, default=10, help="rows to show (default 10)")
    f.add_argument("--windows", type=int, default=512, help="validation windows searched for top contexts")
    f.add_argument("--out", help="also write the main table to this CSV file")
    s = subs.add_parser("steer", help="sample with a feature steered, ablated or clamped")
    s.add_argument("--sae", required=True, help=SAE_HELP)
    s.add_argument("--model", help="the model the SAE reads (default: the one it was trained on)")
    s.add_argument("--feature", type=int, required=True, help="the feature to change")
    s.add_argument("--mode", choices=["steer", "ablate", "clamp"], default="steer", help="default steer")
    s.add_argument("--value", type=float, default=0.0, help="steer: amount along the direction; clamp: the value")
    s.add_argument("--prompt", required=True, help="the text to continue")
    s.add_argument("--max-new-tokens", type=int, default=40, help="characters to add (default 40)")
    s.add_argument("--temperature", type=float, default=0.8, help="default 0.8")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default 0), the same for both continuations")
    s.add_argument("--top", type=int, default=8, help="next-token changes to show (default 8)")


def run_sae(args: argparse.Namespace) -> int:
    return {"train": _train, "features": _features, "steer": _steer}[args.sae_command](args)


def _corpus_windows(model, split: str, n: int | None, seed: int = 0):
    import torch

    from model.training.data import builtin_corpus, text_batch, text_eval_batches

    data = builtin_corpus(model.tokenizer)
    if split == "train":
        return text_batch(data.train, n, model.cfg.n_ctx, torch.Generator().manual_seed(seed))
    return torch.cat(text_eval_batches(data.val, model.cfg.n_ctx, max_windows=n))


def _train(args: argparse.Namespace) -> int:
    from interp.features.evaluate import sae_metrics
    from interp.features.training import train_sae, train_transcoder

    if args.skip and args.transcoder is None:
        raise ValueError("--skip is for transcoders (--transcoder LAYER): an SAE's skip path would be its input")
    model = load_model(args.model).eval().requires_grad_(False)
    if model.tokenizer is None:
        raise ValueError("sae train reads the built-in corpus, so the model needs the 64-symbol tokenizer")
    tokens = _corpus_windows(model, "train", args.windows, args.seed)
    options = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
               "ckpt_every": args.ckpt_every, "out": args.out, "resume": args.resume, "model_name": args.model,
               "progress": not args.no_progress, "command": "minigpt " + shlex.join(args.argv),
               "dataset_path": f"pydoc_data.topics (train split, {len(tokens)} random windows)"}  # fmt: skip
    options |= {"k": args.k} if args.architecture == "topk" else {"l1_coefficient": args.l1}
    options |= {"skip": True} if args.skip else {}
    options |= {"aux_k": args.aux_k} if args.aux_k else {}
    if args.transcoder is not None:
        sae = train_transcoder((model, args.transcoder, tokens), args.d_sae, args.architecture, **options)
    else:
        sae = train_sae((model, args.hook, tokens), args.d_sae, args.architecture, **options)
    val = _corpus_windows(model, "val", args.eval_windows)
    metrics = sae_metrics(model, val, sae=sae, progress=not args.no_progress)
    sae.provenance["metrics"] = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.iloc[0].items()}
    sae.provenance["metrics_data"] = f"pydoc_data.topics validation split, {len(val)} windows of {val.shape[1]} tokens"
    sae.save(args.out)
    print(f"wrote {args.out} ({sae.cfg.architecture}, {sae.cfg.d_sae} features, {sae.provenance['steps']} steps)")
    print(metrics.T.to_string(header=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def _load(args: argparse.Namespace):
    from interp.features.sae import SAE

    sae = SAE.from_pretrained(args.sae)
    return load_model(args.model or sae.cfg.model_name or "minigpt-text").eval(), sae


def _features(args: argparse.Namespace) -> int:
    from interp.features.analysis import activation_histogram, feature_logit_effects, sae_activations, top_activations
    from interp.features.labels import feature_label

    check_top(args.top)
    check_out(args.out)
    model, sae = _load(args)
    tokens = _corpus_windows(model, "val", args.windows)
    _, cache = model.run_with_cache(
        tokens,
        names_filter=list(dict.fromkeys([sae.cfg.hook_name, sae.cfg.hook_name_out or sae.cfg.hook_name])),
        return_type=None,
    )
    if args.prompt is not None:
        active = sae_activations(model, prompt_tokens(model, args.prompt), sae=sae)
        shown = active.groupby("pos", sort=True).head(3).reset_index(drop=True)
        labels = {f: feature_label(model, tokens, cache, sae=sae, feature=f) for f in shown.feature.unique()}
        shown = shown.assign(label=shown.feature.map(labels))
        emit(shown.drop(columns="batch"), args, f"the strongest 3 features at each position of {args.prompt!r}", active)
        return 0
    top = top_activations(model, tokens, cache, sae=sae, feature=args.feature, k=args.top)
    hist = activation_histogram(model, tokens, cache, sae=sae, feature=args.feature)
    print(f"feature {args.feature} of {args.sae}: {feature_label(model, tokens, cache, sae=sae, feature=args.feature)}")
    print(f"fires on {hist['count'].sum()} of {tokens.numel()} validation tokens ({hist.firing_rate.sum():.2%})")
    effects = (
        feature_logit_effects(model, sae, args.feature, k=args.top) if sae.cfg.d_out == model.cfg.d_model else None
    )
    if effects is not None:
        for side in ("promoted", "suppressed"):
            chars = " ".join(repr(s) for s in effects[effects.side == side].target_str)
            print(f"  {side}: {chars}")
    emit(top[["activation", "context"]], args, "top-activating contexts («c» marks the character)", top)
    return 0


def _steer(args: argparse.Namespace) -> int:
    from interp.features.steering import feature_intervention, generate_steered

    check_top(args.top)
    model, sae = _load(args)
    tokens = prompt_tokens(model, args.prompt)
    effect = feature_intervention(model, tokens, sae=sae, feature=args.feature, mode=args.mode, value=args.value)
    common = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed}
    plain = model.generate(args.prompt, **common)
    steered = generate_steered(model, args.prompt, sae=sae, feature=args.feature, value=args.value, mode=args.mode,
                               **common)  # fmt: skip
    print(f"plain:   {plain!r}")
    print(f"{dict(steer='steered', ablate='ablated', clamp='clamped')[args.mode]}: {steered!r}")
    changed = effect.reindex(effect.prob_delta.abs().sort_values(ascending=False).index).head(args.top)
    print(f"next-token probabilities after {args.prompt!r}, largest changes:")
    print(changed[["target_str", "prob_clean", "prob_intervened", "prob_delta"]].to_string(index=False,
          float_format=lambda x: f"{x:.4f}"))  # fmt: skip
    return 0
