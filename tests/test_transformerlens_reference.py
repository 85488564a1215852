"""Ours against TransformerLens 2.x itself: tests/data/transformerlens_reference.npz holds TransformerLens's outputs on
a seeded HF GPT-2 of the locked sizes (written by tests/data/make_transformerlens_reference.py in a TransformerLens
venv); we load the same GPT-2 weights with ``MiniGPT.from_hf_gpt2`` and compare at 1e-5.

Every LayerNorm of that GPT-2 has gain 1 and bias 0 (and its other biases are random): TransformerLens's
``apply_ln_to_stack``, ``logit_attrs`` and the ``apply_ln=True`` decompositions assume folded LayerNorms, and with
gain 1 / bias 0 folding changes nothing, so both sides compute the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from interp.compat import evals, patching, utils
from model import MiniGPT

DATA = Path(__file__).parent / "data" / "transformerlens_reference.npz"
TOL = 1e-5


@pytest.fixture(scope="module")
def ref():
    data = np.load(DATA)
    meta = json.loads(str(data["meta"]))
    hf = GPT2LMHeadModel(GPT2Config(**meta["gpt2_config"])).eval()
    state = {k[3:]: torch.from_numpy(data[k]) for k in data.files if k.startswith("hf/")}
    missing = hf.load_state_dict(state, strict=False).missing_keys
    assert all(k.endswith(".attn.bias") or k == "lm_head.weight" for k in missing), f"weights missing: {missing}"
    model = MiniGPT.from_hf_gpt2(hf).eval()
    tl = {k[3:]: torch.from_numpy(data[k]) for k in data.files if k.startswith("tl/")}
    tokens, corrupted = torch.from_numpy(data["tokens"]), torch.from_numpy(data["corrupted"])
    return model, tl, meta, tokens, corrupted


def close(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    ours = torch.as_tensor(ours).detach().float()
    assert tuple(ours.shape) == tuple(theirs.shape), f"{name}: shape {tuple(ours.shape)} vs TL {tuple(theirs.shape)}"
    err = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    print(f"{name:40s} {tuple(ours.shape)!s:22s} max |ours - TL| {err:.2e}")
    assert err < TOL, f"{name} differs from TransformerLens by {err:.2e}"


def test_forward_loss_and_weights(ref):
    model, tl, _, tokens, _ = ref
    logits, _ = model.run_with_cache(tokens)
    close("logits", logits, tl["logits"])
    close("loss_fn(per_token=True)", model.loss_fn(logits, tokens, per_token=True), tl["loss_per_token"])
    close("forward(stop_at_layer=1)", model(tokens, stop_at_layer=1), tl["stop_at_layer_1"])
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_in", "W_out", "b_in", "b_out", "b_U"):
        close(f"model.{name}", getattr(model, name), tl[f"weight_{name}"])
    close(
        "tokens_to_residual_directions", model.tokens_to_residual_directions(tokens[0, :3]), tl["residual_directions"]
    )


def test_factored_matrices(ref):
    model, tl, _, _, _ = ref
    close("OV[1, 2].AB", model.OV[1, 2].AB, tl["OV_AB_1_2"])
    close("QK[0, 3].AB", model.QK[0, 3].AB, tl["QK_AB_0_3"])
    close("OV.S", model.OV.S, tl["OV_S"])
    close("QK.S", model.QK.S, tl["QK_S"])
    close("OV.norm()", model.OV.norm(), tl["OV_norm"])
    # eigenvalues come in no fixed order: compare their moduli sorted
    ours = torch.sort(model.OV.eigenvalues.abs(), dim=-1).values
    close("sorted |OV.eigenvalues|", ours, torch.sort(tl["OV_eigenvalues_abs"], dim=-1).values)


CACHE_CALLS = {
    "decompose_resid": lambda c: c.decompose_resid(return_labels=True),
    "decompose_resid_l1_mlp_ln": lambda c: c.decompose_resid(1, mlp_input=True, apply_ln=True, pos_slice=-1,
                                                             return_labels=True),
    "accumulated_resid": lambda c: c.accumulated_resid(incl_mid=True, return_labels=True),
    "accumulated_resid_ln": lambda c: c.accumulated_resid(apply_ln=True, pos_slice=-1, return_labels=True),
    "accumulated_resid_l1_mlp": lambda c: c.accumulated_resid(1, mlp_input=True, apply_ln=True, return_labels=True),
    "stack_head_results": lambda c: c.stack_head_results(return_labels=True),
    "stack_head_results_ln_rem": lambda c: c.stack_head_results(-1, True, True, -1, True),
    "stack_head_results_l1": lambda c: c.stack_head_results(1, return_labels=True),
    "full_resid": lambda c: c.get_full_resid_decomposition(expand_neurons=False, return_labels=True),
    "full_resid_neurons_ln": lambda c: c.get_full_resid_decomposition(apply_ln=True, pos_slice=-1, return_labels=True),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CACHE_CALLS))
def test_cache_decompositions_and_labels(ref, name):
    model, tl, meta, tokens, _ = ref
    _, cache = model.run_with_cache(tokens)
    stack, labels = CACHE_CALLS[name](cache)
    assert labels == meta["labels"][name], f"{name}: labels {labels} vs TL {meta['labels'][name]}"
    close(name, stack, tl[name])


def test_ln_stack_logit_attrs_and_keys(ref):
    model, tl, meta, tokens, _ = ref
    _, cache = model.run_with_cache(tokens)
    stack = cache.stack_head_results(pos_slice=-1)
    close("apply_ln_to_stack", cache.apply_ln_to_stack(stack, pos_slice=-1), tl["apply_ln_to_stack"])
    close("logit_attrs", cache.logit_attrs(stack, tokens[:, -1], pos_slice=-1), tl["logit_attrs"])
    close("logit_attrs(answer, wrong)", cache.logit_attrs(stack, meta["answer"], meta["wrong"], pos_slice=-1),
          tl["logit_attrs_diff"])  # fmt: skip
    close('cache["attn", 1]', cache["attn", 1], tl["cache_attn_1"])
    close('cache["result", 0] (from z)', cache["result", 0], tl["cache_result_0"])
    close('cache["resid_post", -1]', cache["resid_post", -1], tl["cache_resid_post_neg1"])
    _, single = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    close('remove_batch_dim: ["pattern", 0]', single["pattern", 0], tl["single_pattern_0"])


PATCHES = ["get_act_patch_resid_pre", "get_act_patch_resid_mid", "get_act_patch_attn_out", "get_act_patch_mlp_out",
           "get_act_patch_attn_head_out_all_pos", "get_act_patch_attn_head_out_by_pos",
           "get_act_patch_attn_head_k_all_pos", "get_act_patch_attn_head_pattern_all_pos",
           "get_act_patch_attn_head_pattern_by_pos", "get_act_patch_attn_head_all_pos_every",
           "get_act_patch_block_every"]  # fmt: skip


def test_patching_functions(ref):
    model, tl, meta, tokens, corrupted = ref
    _, clean_cache = model.run_with_cache(tokens)
    a, w = meta["answer"], meta["wrong"]

    def metric(logits):
        return (logits[:, -1, a] - logits[:, -1, w]).mean()

    for name in PATCHES:
        close(f"patching.{name}", getattr(patching, name)(model, corrupted, clean_cache, metric), tl[f"patch_{name}"])


def test_backward_hook_gradients(ref):
    """``run_with_cache(incl_bwd=True)``: every hook's gradient of the loss equals TransformerLens's backward hooks',
    except at ``ln1``: TransformerLens calls ``ln1`` three times (query, key and value inputs), so its backward hook
    fires three times and its cache keeps the last, the query branch's gradient alone; ours is the whole gradient
    (autograd's), the sum of the three branches. Both are checked: TL's equals our query branch, and ours the sum."""
    model, tl, _, tokens, _ = ref
    names = sorted(k.removeprefix("grad/") for k in tl if k.startswith("grad/"))
    assert len(names) >= 36 and set(names) <= set(model.hook_names), "TL's gradients are for hooks we have"
    loss, cache = model.run_with_cache(tokens, names_filter=names, incl_bwd=True, return_type="loss")
    close("loss (incl_bwd)", loss, tl["bwd_loss"])
    ln1 = {n for n in names if ".ln1." in n}
    assert len(ln1) == 4, ln1
    for name in sorted(set(names) - ln1):
        close(f"{name}_grad", cache[name + "_grad"], tl[f"grad/{name}"])
    for layer, block in enumerate(model.blocks):
        ln, attn = f"blocks.{layer}.ln1.", f"blocks.{layer}.attn."
        branch = {x: torch.einsum("bphd,hmd->bpm", cache[f"{attn}hook_{x}_grad"], getattr(block.attn, f"W_{x.upper()}"))
                  for x in "qkv"}  # fmt: skip
        close(f"{ln}hook_normalized_grad (sum of q, k, v)", cache[ln + "hook_normalized_grad"], sum(branch.values()))
        close(f"TL {ln}hook_normalized_grad (q only)", branch["q"], tl[f"grad/{ln}hook_normalized"])
        # LayerNorm gain 1, bias 0: normalized = (x - mean) / scale, so d loss / d scale = -<grad, normalized> / scale
        normalized, scale = cache[ln + "hook_normalized"], cache[ln + "hook_scale"]
        query_scale_grad = -(branch["q"] * normalized).sum(-1, keepdim=True) / scale
        close(f"TL {ln}hook_scale_grad (q only)", query_scale_grad, tl[f"grad/{ln}hook_scale"])


def test_evals_equal_transformerlens(ref):
    """``evals.ioi_eval`` (short IOI prompts, MiniGPT's tokenizer) and ``evals.induction_loss`` (same seed, a GPT-2 of
    20,100 tokens, as TransformerLens draws in [100, 20000)) give TransformerLens's numbers on the same weights."""
    model, tl, meta, _, _ = ref
    for symmetric in (False, True):
        data = evals.IOIDataset(model.tokenizer, num_samples=6, symmetric=symmetric, **meta["ioi"])
        result = evals.ioi_eval(model, dataset=data, batch_size=4)
        close(f"ioi_eval(symmetric={symmetric})", torch.tensor([result["Logit Difference"], result["Accuracy"]]),
              tl[f"ioi_{symmetric}"])  # fmt: skip
    data = np.load(DATA)
    hf = GPT2LMHeadModel(GPT2Config(**meta["induction_gpt2"])).eval()
    state = {k[4:]: torch.from_numpy(data[k]).float() for k in data.files if k.startswith("hf2/")}
    hf.load_state_dict(state, strict=False)
    model = MiniGPT.from_hf_gpt2(hf)  # built before seeding: the tokens are drawn from torch's global generator
    torch.manual_seed(meta["induction_seed"])
    close("induction_loss", evals.induction_loss(model, **meta["induction_args"]), tl["induction_loss"])


def test_utils_pos_slice_and_labels(ref):
    """TransformerLens's small ``utils`` helpers, ``run_with_cache(pos_slice=...)`` (an int drops the position
    axis; a pattern is sliced on its query axis), ``all_head_labels`` and ``hook_dict``'s names, on the same weights."""
    model, tl, meta, tokens, _ = ref
    logits, x = model(tokens), torch.linspace(-4, 4, 17)
    close(
        "utils.composition_scores", utils.composition_scores(model.OV[0], model.QK[1].T), tl["utils_composition_scores"]
    )
    close("utils.lm_accuracy", utils.lm_accuracy(logits, tokens), tl["utils_lm_accuracy"])
    close("utils.lm_accuracy(per_token)", utils.lm_accuracy(logits, tokens, per_token=True).float(),
          tl["utils_lm_accuracy_per_token"])  # fmt: skip
    close("utils.lm_cross_entropy_loss(per_token)", utils.lm_cross_entropy_loss(logits, tokens, per_token=True),
          tl["utils_lm_cross_entropy_loss"])  # fmt: skip
    close("utils.get_corner(W_Q, 2)", utils.get_corner(model.W_Q, 2), tl["utils_get_corner"])
    close("utils.gelu_new", utils.gelu_new(x), tl["utils_gelu_new"])
    close("utils.solu", utils.solu(x.view(1, 17)), tl["utils_solu"])
    close("OV[1, 2].get_corner(3)", model.OV[1, 2].get_corner(3), tl["fm_get_corner"])
    for mode in "QKV":
        close(
            f"all_composition_scores({mode!r})",
            model.all_composition_scores(mode),
            tl[f"all_composition_scores_{mode}"],
        )
    for key in (k for k in tl if k.startswith("pos_slice_")):
        tag, name = key.removeprefix("pos_slice_").split("/")
        pos_slice = {"last": -1, "2_5": (2, 5)}[tag]
        _, cache = model.run_with_cache(tokens, names_filter=name, pos_slice=pos_slice)
        close(f"run_with_cache(pos_slice={pos_slice})[{name}]", cache[name], tl[key])
    assert model.all_head_labels() == meta["all_head_labels"]
    assert set(meta["hook_dict"]) <= set(model.hook_dict), "every TransformerLens hook name of a GPT-2 is ours"


def test_optional_inputs(ref):
    """TransformerLens's optional inputs: the per-head copies of the residual (``hook_attn_in``, ``hook_q_input`` ...)
    and ``hook_mlp_in``, cached after the ``set_use_*`` flags, and edited in place by a hook: the same activations
    and logits as TransformerLens's (each edit with its own flag alone: with both ``use_attn_in`` and split inputs,
    TransformerLens feeds the split inputs from ``resid_pre`` and drops an edit at ``hook_attn_in``, where ours flow
    on into them). A hook there works without the flag too."""
    model, tl, _, tokens, _ = ref
    model.set_use_attn_in(True)
    model.set_use_split_qkv_input(True)
    model.set_use_hook_mlp_in(True)
    try:
        _, cache = model.run_with_cache(tokens)
    finally:
        model.set_use_attn_in(False)
        model.set_use_split_qkv_input(False)
        model.set_use_hook_mlp_in(False)
    for key in (k for k in tl if k.startswith("optional/")):
        close(key, cache[key.removeprefix("optional/")], tl[key])

    def zero_head_1(x, hook):
        x[:, :, 1] = 0.0

    def halve(x, hook):
        x *= 0.5

    edits = {"blocks.1.hook_k_input": zero_head_1, "blocks.0.hook_attn_in": zero_head_1, "blocks.0.hook_mlp_in": halve}
    for key in (k for k in tl if k.startswith("optional_edit/")):
        name = key.removeprefix("optional_edit/")
        close(key, model.run_with_hooks(tokens, fwd_hooks=[(name, edits[name])]), tl[key])
    assert not torch.equal(tl["optional_edit/blocks.0.hook_mlp_in"], model(tokens)), "the edit changes the logits"


def test_process_weights_equals_from_pretrained_processing(ref):
    """``process_weights_()`` (fold the LayerNorms, centre the writers and the unembedding, fold ``b_V``) gives
    TransformerLens's processed weights, logits and ``apply_ln_to_stack`` attributions on a GPT-2 whose LayerNorms
    have random gains and biases; then the attributions sum to the logit (less the LayerNorm-free constant)."""
    _, tl, meta, tokens, _ = ref
    data = np.load(DATA)
    hf = GPT2LMHeadModel(GPT2Config(**meta["gpt2_config"])).eval()
    hf.load_state_dict({k[4:]: torch.from_numpy(data[k]) for k in data.files if k.startswith("hf3/")}, strict=False)
    model = MiniGPT.from_hf_gpt2(hf).eval()
    raw = model(tokens)
    model.process_weights_()
    assert not model.cfg.tied_embed and float(model.blocks[0].ln1.w.std()) == 0.0
    for name in (
        k.removeprefix("processed/") for k in tl if k.startswith("processed/W_") or k.startswith("processed/b_")
    ):
        close(f"processed {name}", getattr(model, name), tl[f"processed/{name}"])
    logits, cache = model.run_with_cache(tokens)
    close("processed logits", logits, tl["processed/logits"])
    close("log-probs before and after", logits.log_softmax(-1), raw.log_softmax(-1))
    stack = cache.apply_ln_to_stack(cache.decompose_resid(layer=-1, pos_slice=-1), layer=-1, pos_slice=-1)
    attrs = cache.logit_attrs(stack, tokens=tokens[:, -1], pos_slice=-1)
    close("processed logit_attrs", attrs, tl["processed/logit_attrs"])


def test_optional_input_gradients(ref):
    """Backward hooks on the optional inputs: a gradient wanted there makes every head read its own input (the
    split path), and the gradients equal TransformerLens's with its flag set."""
    model, tl, _, tokens, _ = ref
    names = [k.removeprefix("optional_grad/") for k in tl if k.startswith("optional_grad/")]
    assert len(names) == 5
    model.zero_grad()
    _, cache = model.run_with_cache(tokens, names_filter=names, incl_bwd=True, return_type="loss")
    model.zero_grad()
    for name in names:
        close(f"{name}_grad", cache[name + "_grad"], tl[f"optional_grad/{name}"])
