"""The model owns its partial runs: every piece of the forward pass, run on its own, equals the hooked full forward.

On every test config (pre-, post- and no norm; learned, sinusoidal and rotary positions; attention-only), from every
stage of every block: the logits, the hooks that fire (exactly those after the stage, with the full forward's values),
the block halves, the attention steps and the read-out.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CONFIG_VARIANTS, make_model

from model.network.layers import STAGES

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(params=list(CONFIG_VARIANTS), ids=list(CONFIG_VARIANTS))
def run(request, tokens):
    """``(model, logits, full cache)`` of one config on the shared tokens."""
    model = make_model(**CONFIG_VARIANTS[request.param])
    logits, cache = model.run_with_cache(tokens, names_filter=lambda name: True)
    return model, logits, cache


def stages_of(model) -> list[str]:
    return [s for s in STAGES if not (model.cfg.attn_only and s in ("resid_mid", "mlp_sum"))]


def state_at(model, cache, layer: int, stage: str) -> torch.Tensor:
    """The residual state at ``stage`` of ``layer`` on the cached run."""
    b = f"blocks.{layer}."
    if stage == "attn_sum":
        return cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"]
    if stage == "mlp_sum":
        return cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"]
    return cache[b + f"hook_{stage}"]


def fired_after(model, layer: int, stage: str) -> set[str]:
    """The hooks the full forward fires after (and at) the state ``stage`` of ``layer``."""
    post = model.cfg.norm == "post"
    inputs = ("hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input")  # the optional per-head inputs
    order = ("hook_resid_pre", *inputs, "attn.", "hook_attn_out", "ln1.", "hook_resid_mid", "hook_mlp_in", "mlp.",
             "hook_mlp_out", "ln2.")  # fmt: skip
    if not post:  # pre-norm: ln1 and ln2 come before the sublayer they feed
        order = ("hook_resid_pre", *inputs, "ln1.", "attn.", "hook_attn_out", "hook_resid_mid", "hook_mlp_in", "ln2.",
                 "mlp.", "hook_mlp_out")  # fmt: skip
    starts = {"resid_pre": 0, "resid_post": len(order)}  # how many of block ``layer``'s hooks come before the stage
    starts["attn_sum"] = order.index("hook_attn_out") + 1
    starts["resid_mid"] = order.index("hook_resid_mid") if not post else order.index("ln1.") + 1
    starts["mlp_sum"] = order.index("hook_mlp_out") + 1
    before = order[: starts[stage]]
    out = set()
    for name in model.hook_names:
        if name.startswith("blocks."):
            index, rest = name.split(".", 2)[1:]
            if int(index) < layer or (int(index) == layer and rest.startswith(before)):
                continue
        elif not name.startswith("ln_final"):
            continue
        out.add(name)
    return out


def test_forward_from_every_stage_equals_the_full_forward_and_fires_the_same_hooks(run):
    """From each stage of each block the logits are the full forward's, and exactly the hooks after the stage fire,
    each with the full forward's activation."""
    model, logits, cache = run
    for layer in range(model.cfg.n_layers):
        for stage in stages_of(model):
            seen: dict[str, torch.Tensor] = {}

            def keep(act, hook, seen=seen):
                seen[hook.name] = act.clone()

            with torch.no_grad(), model.hooks([(lambda name: True, keep)]):
                out = model.forward_from(state_at(model, cache, layer, stage), layer, stage)
            torch.testing.assert_close(out, logits, **TOL, msg=f"logits from {stage} of block {layer}")
            assert set(seen) == fired_after(model, layer, stage), f"hooks fired from {stage} of block {layer}"
            for name, act in seen.items():
                torch.testing.assert_close(act, cache[name], **TOL, msg=f"{name} from {stage} of block {layer}")


def test_forward_from_at_some_rows_and_columns_is_the_slice_of_the_full_logits(run):
    """``rows`` and ``columns`` give exactly those entries of the full logits, from every stage of the last block
    and from the first block (the last block then computes only those queries)."""
    model, logits, cache = run
    rows, columns = [0, 5, 11], [3, 40]
    last = model.cfg.n_layers - 1
    for layer, stage in [(0, "resid_pre"), *((last, s) for s in stages_of(model))]:
        out = model.forward_from(state_at(model, cache, layer, stage), layer, stage, rows=rows, columns=columns)
        torch.testing.assert_close(out, logits[:, rows][..., columns], **TOL, msg=f"{stage} of block {layer}")


def test_block_halves_and_writes_equal_the_cached_states(run):
    """``attn_half`` gives resid_mid (resid_post when attention-only), ``mlp_half`` resid_post, the writes are
    ``attn_out`` and ``mlp_out``, and the MLP's steps give ``hook_pre`` and its output."""
    model, _, cache = run
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            b = f"blocks.{layer}."
            mid = b + ("hook_resid_post" if block.mlp is None else "hook_resid_mid")
            torch.testing.assert_close(block.attn_half(cache[b + "hook_resid_pre"]), cache[mid], **TOL)
            torch.testing.assert_close(block.attn_write(cache[b + "hook_resid_pre"]), cache[b + "hook_attn_out"], **TOL)
            if block.mlp is not None:
                torch.testing.assert_close(block.mlp_half(cache[mid]), cache[b + "hook_resid_post"], **TOL)
                torch.testing.assert_close(block.mlp_write(cache[mid]), cache[b + "hook_mlp_out"], **TOL)
                pre = block.mlp.pre(block.mlp_input(cache[mid]))
                torch.testing.assert_close(pre, cache[b + "mlp.hook_pre"], **TOL)
                torch.testing.assert_close(
                    block.mlp.write(cache[b + "mlp.hook_post"]), cache[b + "hook_mlp_out"], **TOL
                )


def test_attention_steps_compose_to_the_hooked_activations(run):
    """``qkv``, ``rotate``, ``scores``, ``pattern``, ``mix`` and ``write`` each give the activation of their hook;
    the per-head and per-variant entry points agree with them."""
    model, _, cache = run
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            attn, b = block.attn, f"blocks.{layer}.attn."
            x = block.attn_input(cache[f"blocks.{layer}.hook_resid_pre"])
            q, k, v = attn.qkv(x)
            for name, got in zip("qkv", (q, k, v), strict=True):
                torch.testing.assert_close(got, cache[b + f"hook_{name}"], **TOL)
            if model.cfg.positional == "rotary":
                q, k = attn.rotate(q), attn.rotate(k)
            scores = attn.scores(q, k)
            torch.testing.assert_close(scores, cache[b + "hook_attn_scores"], **TOL)
            torch.testing.assert_close(attn.pattern(scores), cache[b + "hook_pattern"], **TOL)
            z = attn.mix(cache[b + "hook_pattern"], v)
            torch.testing.assert_close(z, cache[b + "hook_z"], **TOL)
            torch.testing.assert_close(attn.write(z, per_head=True), cache[b + "hook_result"], **TOL)
            torch.testing.assert_close(attn.write(z), cache[f"blocks.{layer}.hook_attn_out"], **TOL)
            per_head = x[:, :, None].expand(-1, -1, model.cfg.n_heads, -1)
            for got, want in zip(attn.qkv_split(per_head, per_head, per_head), attn.qkv(x), strict=True):
                torch.testing.assert_close(got, want, **TOL)
            heads, slots = torch.tensor([2, 0, 3]), torch.tensor([1, 2, 0])
            projected = attn.head_project(x.expand(3, *x.shape), slots, heads)
            for i in range(3):
                want = (q, k, v)[int(slots[i])] if model.cfg.positional != "rotary" else attn.qkv(x)[int(slots[i])]
                torch.testing.assert_close(projected[i], want[:, :, int(heads[i])], **TOL)
            written = attn.head_write(z.permute(2, 0, 1, 3).index_select(0, heads), heads)
            torch.testing.assert_close(written, cache[b + "hook_result"].permute(2, 0, 1, 3)[heads], **TOL)


def test_queries_at_some_rows_equal_those_rows_of_the_full_attention(run):
    """``attn(x, rows=...)`` computes those queries alone: the rows of the full output."""
    model, _, cache = run
    rows = torch.tensor([1, 7, 11])
    for layer, block in enumerate(model.blocks):
        x = cache[f"blocks.{layer}.hook_resid_pre"]
        torch.testing.assert_close(
            block.attn_write(x, rows=rows), cache[f"blocks.{layer}.hook_attn_out"][:, rows], **TOL
        )


def test_read_out_of_the_final_residual_is_the_model_output(run):
    """``read_out`` (final norm and unembedding) of the last ``resid_post`` is the logits, with any columns."""
    model, logits, cache = run
    final = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
    torch.testing.assert_close(model.read_out(final), logits, **TOL)
    torch.testing.assert_close(model.read_out(final, columns=[9, 2]), logits[..., [9, 2]], **TOL)


def test_embed_tokens_is_the_first_residual_state(run, tokens):
    """``embed_tokens`` is ``blocks.0.hook_resid_pre``."""
    model, _, cache = run
    torch.testing.assert_close(model.embed_tokens(tokens), cache["blocks.0.hook_resid_pre"], **TOL)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layer": 2}, "layer 2 is out of range"),
        ({"layer": "0"}, "layer must be an int"),
        ({"stage": "resid_middle"}, "not a stage"),
        ({"rows": [0, 99]}, "rows must be distinct positions"),
        ({"rows": [1, 1]}, "lists one twice"),
        ({"columns": [64]}, "columns must be distinct token ids"),
        ({"rows": "0"}, "rows must be a list of ints"),
    ],
)
def test_forward_from_refuses_bad_arguments_by_name(tiny_model, tokens, kwargs, match):
    """A bad layer, stage, row or column is a clear error naming it and the valid range."""
    _, cache = tiny_model.run_with_cache(tokens)
    args = {"layer": 0, "stage": "resid_pre"} | kwargs
    with pytest.raises((ValueError, TypeError, IndexError), match=match):
        tiny_model.forward_from(cache["resid_pre", 0], **args)


def test_forward_from_refuses_a_state_of_the_wrong_shape(tiny_model):
    """The state must be ``[batch, pos, d_model]`` with at most ``n_ctx`` positions."""
    with pytest.raises(ValueError, match=r"\[batch, pos, d_model=32\]"):
        tiny_model.forward_from(torch.zeros(2, 5, 31))
    with pytest.raises(ValueError, match="n_ctx=16"):
        tiny_model.forward_from(torch.zeros(1, 17, 32))


def test_attention_only_models_have_no_mlp_stages():
    """``resid_mid`` and ``mlp_sum`` are refused where there is no MLP, naming the stages there are."""
    model = make_model(attn_only=True)
    with pytest.raises(ValueError, match="resid_pre"):
        model.forward_from(torch.zeros(1, 4, 32), 0, "resid_mid")
    with pytest.raises(ValueError, match="attention-only"):
        model.blocks[0].mlp_half(torch.zeros(1, 4, 32))
