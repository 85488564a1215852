"""Write tests/data/transformerlens_reference.npz: TransformerLens 2.x's outputs on a seeded HF GPT-2 of the locked
MiniGPT sizes, for tests/test_transformerlens_reference.py to compare ours against (at 1e-5) on the same weights.

Runs only in a TransformerLens 2.x venv (TransformerLens pins a numpy<2 world, so not in the project's venv)::

    python3 -m venv /work/tlvenv && /work/tlvenv/bin/pip install torch==2.13.0
    /work/tlvenv/bin/pip install torch==2.13.0 transformer-lens==2.18.0 "datasets<3" "pyarrow<18"
    /work/tlvenv/bin/python tests/data/make_transformerlens_reference.py

The GPT-2 is seeded (torch.manual_seed(0)); its biases are drawn at random (HF initialises them to zero) and every
LayerNorm has gain 1 and bias 0, so that TransformerLens's folded-LayerNorm semantics (``apply_ln_to_stack``,
``logit_attrs``, ``apply_ln=True`` decompositions) are the LayerNorm itself. The npz holds the HF state dict
(``hf/<key>``), the GPT2Config (``meta`` JSON), the tokens, TransformerLens's outputs (``tl/<name>``) and their labels.

Also: ``from_pretrained``'s weight processing on a GPT-2 with random LayerNorm gains and biases (``hf3/<key>``);
TransformerLens's optional inputs (``hook_attn_in``, ``hook_q/k/v_input``, ``hook_mlp_in``), cached and edited;
its small ``utils`` helpers, ``run_with_cache(pos_slice=...)`` and ``all_head_labels``; every
hook's gradient of the loss by TransformerLens's backward hooks (``run_with_cache(incl_bwd=True)``,
``tl/grad/<hook>``); ``evals.ioi_eval`` on IOI prompts short enough for the 32-token context, tokenized by MiniGPT's
character tokenizer (imported from the repository: plain Python); and ``evals.induction_loss``, which draws tokens in
``[100, 20000)``, on a second seeded GPT-2 with a vocabulary of 20,100 (``hf2/<key>``, ``meta["induction_gpt2"]``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformer_lens
from transformer_lens import HookedTransformer, HookedTransformerConfig, evals, patching
from transformer_lens import utils as tl_utils
from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
from transformers import GPT2Config, GPT2LMHeadModel

OUT = Path(__file__).with_name("transformerlens_reference.npz")
ROOT = Path(__file__).resolve().parents[2]
INDUCTION_GPT2 = dict(vocab_size=20100, n_positions=48, n_embd=8, n_layer=1, n_head=2, n_inner=16,
                      activation_function="gelu_new", layer_norm_epsilon=1e-5)  # fmt: skip
IOI = {"templates": ["[A] met [B]. [B] gave it to [A]", "then [B] saw [A]. [B] told [A]"], "names": ["Al", "Bo", "Cy"]}
INDUCTION_SEED, INDUCTION_ARGS = 5, {"batch_size": 2, "subseq_len": 20, "prepend_bos": False}
GPT2 = dict(vocab_size=64, n_positions=32, n_embd=64, n_layer=2, n_head=4, n_inner=256,
            activation_function="gelu_new", layer_norm_epsilon=1e-5)  # fmt: skip
ANSWER, WRONG = 20, 30
POS_SLICES = {"last": -1, "2_5": (2, 5)}
PROCESSED = ("W_E", "W_pos", "W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O", "b_O", "W_in", "b_in", "W_out", "b_out",
             "W_U", "b_U")  # fmt: skip
OPTIONAL_INPUTS = ("blocks.0.hook_attn_in", "blocks.1.hook_q_input", "blocks.0.hook_v_input", "blocks.1.hook_mlp_in")
POS_SLICED = ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_q", "blocks.1.hook_resid_post", "ln_final.hook_scale")


def seeded_gpt2(config: dict = GPT2, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(GPT2Config(**config, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln_" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.05)
    return hf


def hooked(hf: GPT2LMHeadModel, process: bool = False) -> HookedTransformer:
    """TransformerLens's model of ``hf``: its weights as they are, or processed as ``from_pretrained`` does."""
    c = hf.config
    cfg = HookedTransformerConfig(n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, n_heads=c.n_head,
                                  d_head=c.n_embd // c.n_head, d_mlp=c.n_inner, d_vocab=c.vocab_size, act_fn="gelu_new",
                                  normalization_type="LN", eps=1e-5, device="cpu",
                                  original_architecture="GPT2LMHeadModel", default_prepend_bos=False)  # fmt: skip
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg),
        fold_ln=process,
        center_writing_weights=process,
        center_unembed=process,
        fold_value_biases=process,
    )
    return model.eval()


def record(model: HookedTransformer, tokens: torch.Tensor) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    out: dict[str, torch.Tensor] = {}
    labels: dict[str, list[str]] = {}
    logits, cache = model.run_with_cache(tokens)
    out["logits"], out["loss_per_token"] = logits, model.loss_fn(logits, tokens, per_token=True)
    out["stop_at_layer_1"] = model(tokens, stop_at_layer=1)
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_in", "W_out", "b_in", "b_out", "b_U"):
        out[f"weight_{name}"] = getattr(model, name)
    out["OV_AB_1_2"], out["QK_AB_0_3"] = model.OV[1, 2].AB, model.QK[0, 3].AB
    out["OV_S"], out["QK_S"], out["OV_norm"] = model.OV.S, model.QK.S, model.OV.norm()
    out["OV_eigenvalues_real"] = model.OV.eigenvalues.real
    out["OV_eigenvalues_abs"] = model.OV.eigenvalues.abs()
    out["residual_directions"] = model.tokens_to_residual_directions(tokens[0, :3])
    calls = {
        "decompose_resid": lambda: cache.decompose_resid(return_labels=True),
        "decompose_resid_l1_mlp_ln": lambda: cache.decompose_resid(1, mlp_input=True, apply_ln=True, pos_slice=-1,
                                                                   return_labels=True),
        "accumulated_resid": lambda: cache.accumulated_resid(incl_mid=True, return_labels=True),
        "accumulated_resid_ln": lambda: cache.accumulated_resid(apply_ln=True, pos_slice=-1, return_labels=True),
        "accumulated_resid_l1_mlp": lambda: cache.accumulated_resid(1, mlp_input=True, apply_ln=True,
                                                                    return_labels=True),
        "stack_head_results": lambda: cache.stack_head_results(return_labels=True),
        "stack_head_results_ln_rem": lambda: cache.stack_head_results(-1, True, True, -1, True),
        "stack_head_results_l1": lambda: cache.stack_head_results(1, return_labels=True),
        "full_resid": lambda: cache.get_full_resid_decomposition(expand_neurons=False, return_labels=True),
        "full_resid_neurons_ln": lambda: cache.get_full_resid_decomposition(apply_ln=True, pos_slice=-1,
                                                                            return_labels=True),
    }  # fmt: skip
    for name, call in calls.items():
        out[name], labels[name] = call()
    stack = cache.stack_head_results(pos_slice=-1)
    out["apply_ln_to_stack"] = cache.apply_ln_to_stack(stack, pos_slice=-1)
    out["logit_attrs"] = cache.logit_attrs(stack, tokens[:, -1], pos_slice=-1)
    out["logit_attrs_diff"] = cache.logit_attrs(stack, ANSWER, WRONG, pos_slice=-1)
    out["cache_attn_1"], out["cache_result_0"] = cache["attn", 1], cache["result", 0]
    out["cache_resid_post_neg1"] = cache["resid_post", -1]
    _, single = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    out["single_pattern_0"] = single["pattern", 0]
    return {k: v.detach().numpy() for k, v in out.items()}, labels


def record_patching(model: HookedTransformer, clean: torch.Tensor, corrupted: torch.Tensor) -> dict[str, np.ndarray]:
    _, clean_cache = model.run_with_cache(clean)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, -1, ANSWER] - logits[:, -1, WRONG]).mean()

    names = ["get_act_patch_resid_pre", "get_act_patch_resid_mid", "get_act_patch_attn_out", "get_act_patch_mlp_out",
             "get_act_patch_attn_head_out_all_pos", "get_act_patch_attn_head_out_by_pos",
             "get_act_patch_attn_head_k_all_pos", "get_act_patch_attn_head_pattern_all_pos",
             "get_act_patch_attn_head_pattern_by_pos", "get_act_patch_attn_head_all_pos_every",
             "get_act_patch_block_every"]  # fmt: skip
    return {f"patch_{n}": getattr(patching, n)(model, corrupted, clean_cache, metric).numpy() for n in names}


def record_gradients_and_evals(model: HookedTransformer, tokens: torch.Tensor) -> dict[str, np.ndarray]:
    """Every hook's gradient of the loss (backward hooks), and IOI on short prompts with MiniGPT's tokenizer."""
    model.zero_grad()
    loss, cache = model.run_with_cache(tokens, incl_bwd=True, return_type="loss")
    out = {"bwd_loss": loss.detach().numpy()}
    out |= {f"grad/{k[: -len('_grad')]}": v.numpy() for k, v in cache.items() if k.endswith("_grad")}
    sys.path.insert(0, str(ROOT))
    from model.network.tokenizer import Tokenizer  # plain Python: MiniGPT's 64-symbol character tokenizer

    for symmetric in (False, True):
        data = evals.IOIDataset(Tokenizer(), num_samples=6, symmetric=symmetric, **IOI)
        result = evals.ioi_eval(model, dataset=data, batch_size=4)
        out[f"ioi_{symmetric}"] = np.array([result["Logit Difference"], result["Accuracy"]])
    return out


def record_utils(model: HookedTransformer, tokens: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
    """TransformerLens's small ``utils`` helpers, ``run_with_cache(pos_slice=...)``, ``all_head_labels`` and the
    hook names of ``hook_dict``."""
    logits, x = model(tokens), torch.linspace(-4, 4, 17)
    out = {"utils_composition_scores": tl_utils.composition_scores(model.OV[0], model.QK[1].T),
           "utils_lm_accuracy": tl_utils.lm_accuracy(logits, tokens),
           "utils_lm_accuracy_per_token": tl_utils.lm_accuracy(logits, tokens, per_token=True).float(),
           "utils_lm_cross_entropy_loss": tl_utils.lm_cross_entropy_loss(logits, tokens, per_token=True),
           "utils_get_corner": tl_utils.get_corner(model.W_Q, 2), "utils_gelu_new": tl_utils.gelu_new(x),
           "utils_solu": tl_utils.solu(x.view(1, 17)), "fm_get_corner": model.OV[1, 2].get_corner(3),
           **{f"all_composition_scores_{mode}": model.all_composition_scores(mode) for mode in "QKV"}}  # fmt: skip
    for tag, pos_slice in POS_SLICES.items():
        _, cache = model.run_with_cache(tokens, pos_slice=pos_slice)
        for name in POS_SLICED:
            out[f"pos_slice_{tag}/{name}"] = cache[name]
    return out, {"all_head_labels": model.all_head_labels(), "hook_dict": list(model.hook_dict)}


def record_optional_inputs(model: HookedTransformer, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """With ``set_use_attn_in``, ``set_use_split_qkv_input`` and ``set_use_hook_mlp_in``: the per-head inputs and
    ``hook_mlp_in`` cached; and the logits when a hook edits, in place as ARENA's hooks do, one head's key input
    (split inputs on), one head's attention input (``use_attn_in`` alone: with both flags TransformerLens feeds the
    split inputs from ``resid_pre``, not from ``hook_attn_in``), or the MLP input."""
    flags = ("set_use_attn_in", "set_use_split_qkv_input", "set_use_hook_mlp_in")
    for flag in flags:
        getattr(model, flag)(True)
    _, cache = model.run_with_cache(tokens)
    out = {f"optional/{name}": cache[name] for name in OPTIONAL_INPUTS}

    def zero_head_1(x, hook):
        x[:, :, 1] = 0.0

    def halve(x, hook):
        x *= 0.5

    for name, fn, flag in (("blocks.1.hook_k_input", zero_head_1, "set_use_split_qkv_input"),
                           ("blocks.0.hook_attn_in", zero_head_1, "set_use_attn_in"),
                           ("blocks.0.hook_mlp_in", halve, "set_use_hook_mlp_in")):  # fmt: skip
        for other in flags:
            getattr(model, other)(other == flag)
        out[f"optional_edit/{name}"] = model.run_with_hooks(tokens, fwd_hooks=[(name, fn)])
    grads_at = {
        "set_use_split_qkv_input": ("blocks.0.hook_q_input", "blocks.1.hook_k_input", "blocks.1.hook_v_input"),
        "set_use_attn_in": ("blocks.0.hook_attn_in",),
        "set_use_hook_mlp_in": ("blocks.1.hook_mlp_in",),
    }
    for flag, names in grads_at.items():
        for other in flags:
            getattr(model, other)(other == flag)
        model.zero_grad()
        _, cache = model.run_with_cache(tokens, names_filter=list(names), incl_bwd=True, return_type="loss")
        out |= {f"optional_grad/{name}": cache[name + "_grad"] for name in names}
    for flag in flags:
        getattr(model, flag)(False)
    return out


def record_processing(tokens: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """``from_pretrained``'s weight processing (fold_ln, center_writing_weights, center_unembed, fold_value_biases)
    on a seeded GPT-2 whose LayerNorms have random gains and biases (``hf3/<key>``): the processed weights, logits
    and an ``apply_ln_to_stack`` logit attribution."""
    hf = seeded_gpt2(seed=3)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln_" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.2)
    model = hooked(hf, process=True)
    out = {f"processed/{n}": getattr(model, n) for n in PROCESSED}
    logits, cache = model.run_with_cache(tokens)
    out["processed/logits"] = logits
    stack = cache.apply_ln_to_stack(cache.decompose_resid(layer=-1, pos_slice=-1), layer=-1, pos_slice=-1)
    out["processed/logit_attrs"] = cache.logit_attrs(stack, tokens=tokens[:, -1], pos_slice=-1)
    weights = {f"hf3/{k}": v.detach().numpy() for k, v in hf.state_dict().items() if not k.endswith(".attn.bias")}
    return out, weights


def record_induction_loss() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``evals.induction_loss`` after ``torch.manual_seed(INDUCTION_SEED)`` on a seeded GPT-2 of 20,100 tokens, its
    weights rounded to half precision first (the npz keeps them so: exactly what TransformerLens ran)."""
    hf = seeded_gpt2(INDUCTION_GPT2, seed=2)
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(p.half().float())
    model = hooked(hf)
    torch.manual_seed(INDUCTION_SEED)
    loss = evals.induction_loss(model, device="cpu", **INDUCTION_ARGS)
    weights = {f"hf2/{k}": v.detach().numpy() for k, v in hf.state_dict().items() if not k.endswith(".attn.bias")}
    return {"induction_loss": loss.numpy()}, weights


def main() -> None:
    torch.set_num_threads(1)
    hf = seeded_gpt2()
    model = hooked(hf)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, 64, (2, 10), generator=gen)  # ids 0-2 are MiniGPT's specials: not drawn
    corrupted = tokens.clone()
    corrupted[:, 3] = torch.randint(3, 64, (2,), generator=gen)
    outputs, labels = record(model, tokens)
    outputs |= record_patching(model, tokens, corrupted)
    outputs |= record_gradients_and_evals(model, tokens)
    helpers, names = record_utils(model, tokens)
    outputs |= {k: v.detach().numpy() for k, v in helpers.items()}
    outputs |= {k: v.detach().numpy() for k, v in record_optional_inputs(model, tokens).items()}
    processed, processed_weights = record_processing(tokens)
    outputs |= {k: v.detach().numpy() for k, v in processed.items()}
    induction, induction_weights = record_induction_loss()
    outputs |= induction
    arrays = {f"tl/{k}": v for k, v in outputs.items()}
    arrays |= {f"hf/{k}": v.detach().numpy() for k, v in hf.state_dict().items() if not k.endswith(".attn.bias")}
    arrays |= processed_weights
    arrays |= {k: v.astype(np.float16) for k, v in induction_weights.items()}  # half precision: 20,100 x 8 is large
    meta = {"gpt2_config": GPT2, "labels": labels, "answer": ANSWER, "wrong": WRONG, "induction_gpt2": INDUCTION_GPT2,
            "induction_seed": INDUCTION_SEED, "induction_args": INDUCTION_ARGS, "ioi": IOI, **names,
            "transformer_lens": transformer_lens.__version__ if hasattr(transformer_lens, "__version__") else "2.x",
            "torch": torch.__version__, "made_by": "tests/data/make_transformerlens_reference.py"}  # fmt: skip
    np.savez_compressed(OUT, tokens=tokens.numpy(), corrupted=corrupted.numpy(), meta=np.array(json.dumps(meta)),
                        **arrays)  # fmt: skip
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
