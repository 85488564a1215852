"""interp.compat: TransformerLens's utils and patching functions, checked against the loop TransformerLens runs
(one full hooked forward per cell) on the shipped induction model and on a tiny model with MLPs."""

from __future__ import annotations

import time

import pytest
import torch
from conftest import make_model

from interp.compat import patching, utils

TL_CASES = [  # function, activation, setter, axes
    ("get_act_patch_resid_pre", "resid_pre", patching.layer_pos_patch_setter, ("layer", "pos")),
    ("get_act_patch_resid_mid", "resid_mid", patching.layer_pos_patch_setter, ("layer", "pos")),
    ("get_act_patch_attn_out", "attn_out", patching.layer_pos_patch_setter, ("layer", "pos")),
    ("get_act_patch_mlp_out", "mlp_out", patching.layer_pos_patch_setter, ("layer", "pos")),
    ("get_act_patch_attn_head_out_all_pos", "z", patching.layer_head_vector_patch_setter, ("layer", "head")),
    ("get_act_patch_attn_head_q_all_pos", "q", patching.layer_head_vector_patch_setter, ("layer", "head")),
    ("get_act_patch_attn_head_k_all_pos", "k", patching.layer_head_vector_patch_setter, ("layer", "head")),
    ("get_act_patch_attn_head_v_all_pos", "v", patching.layer_head_vector_patch_setter, ("layer", "head")),
    ("get_act_patch_attn_head_pattern_all_pos", "pattern", patching.layer_head_pattern_patch_setter,
     ("layer", "head_index")),
    ("get_act_patch_attn_head_out_by_pos", "z", patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head")),
    ("get_act_patch_attn_head_q_by_pos", "q", patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head")),
    ("get_act_patch_attn_head_k_by_pos", "k", patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head")),
    ("get_act_patch_attn_head_v_by_pos", "v", patching.layer_pos_head_vector_patch_setter, ("layer", "pos", "head")),
    ("get_act_patch_attn_head_pattern_by_pos", "pattern", patching.layer_head_pos_pattern_patch_setter,
     ("layer", "head_index", "dest_pos")),
    ("get_act_patch_attn_head_pattern_dest_src_pos", "pattern", patching.layer_head_dest_src_pos_pattern_patch_setter,
     ("layer", "head_index", "dest_pos", "src_pos")),
]  # fmt: skip


def tl_loop(model, corrupted, clean_cache, metric, setter, name, axes):
    """TransformerLens's generic_activation_patch, written out: one hooked forward of the whole model per cell."""
    sizes = {"layer": model.cfg.n_layers, "pos": corrupted.shape[1], "dest_pos": corrupted.shape[1],
             "src_pos": corrupted.shape[1], "head": model.cfg.n_heads, "head_index": model.cfg.n_heads}  # fmt: skip
    frame = patching.make_df_from_ranges([sizes[a] for a in axes], axes)
    out = torch.zeros([sizes[a] for a in axes])
    for index in frame.values.tolist():
        hook_name = utils.get_act_name(name, index[0])
        clean = clean_cache[hook_name]
        hook = lambda act, hook, index=index, clean=clean: setter(act, index, clean)  # noqa: E731
        with torch.no_grad():
            out[tuple(index)] = float(metric(model.run_with_hooks(corrupted, fwd_hooks=[(hook_name, hook)])))
    return out


@pytest.fixture(scope="module")
def mlp_setup():
    model = make_model(seed=4).eval()
    clean = torch.randint(3, 64, (2, 6), generator=torch.Generator().manual_seed(1))
    corrupted = clean.clone()
    corrupted[:, 2] = (corrupted[:, 2] + 7) % 61 + 3
    _, cache = model.run_with_cache(clean)
    answer = int(clean[0, -1])
    return model, corrupted, cache, lambda logits: logits[:, -2].log_softmax(-1)[:, answer].mean()


@pytest.mark.parametrize("fn, name, setter, axes", TL_CASES, ids=[c[0] for c in TL_CASES])
def test_patching_equals_the_transformer_lens_loop(mlp_setup, fn, name, setter, axes):
    model, corrupted, cache, metric = mlp_setup
    t0 = time.perf_counter()
    ours = getattr(patching, fn)(model, corrupted, cache, metric)
    t1 = time.perf_counter()
    loop = tl_loop(model, corrupted, cache, metric, setter, name, axes)
    t2 = time.perf_counter()
    err = (ours - loop).abs().max().item()
    print(f"{fn}: shape {tuple(ours.shape)}, max |ours - loop| {err:.2e}, ours {t1 - t0:.3f}s, loop {t2 - t1:.3f}s")
    assert ours.shape == loop.shape, f"{fn} shape {tuple(ours.shape)} != {tuple(loop.shape)}"
    assert err < 1e-5, f"{fn} differs from one-forward-per-cell patching by {err}"
    assert loop.std() > 0, "the corruption must change the metric somewhere, or the test proves nothing"


def test_every_variants_stack_in_transformer_lens_order(mlp_setup):
    model, corrupted, cache, metric = mlp_setup
    block = patching.get_act_patch_block_every(model, corrupted, cache, metric)
    heads = patching.get_act_patch_attn_head_all_pos_every(model, corrupted, cache, metric)
    by_pos = patching.get_act_patch_attn_head_by_pos_every(model, corrupted, cache, metric)
    assert block.shape == (3, 2, 6) and heads.shape == (5, 2, 4) and by_pos.shape == (5, 2, 6, 4), "shapes"
    assert torch.equal(block[1], patching.get_act_patch_attn_out(model, corrupted, cache, metric)), "block[1]"
    assert torch.equal(heads[4], patching.get_act_patch_attn_head_pattern_all_pos(model, corrupted, cache, metric))
    pattern = patching.get_act_patch_attn_head_pattern_by_pos(model, corrupted, cache, metric)
    assert torch.equal(by_pos[4], pattern.permute(0, 2, 1)), "the pattern comes [layer, pos, head] in by_pos_every"


def test_generic_with_index_df_is_flat_and_matches(mlp_setup):
    model, corrupted, cache, metric = mlp_setup
    full = patching.get_act_patch_resid_pre(model, corrupted, cache, metric)
    frame = patching.make_df_from_ranges([2, 6], ["layer", "pos"]).iloc[[7, 0, 3]]
    flat, back = patching.generic_activation_patch(model, corrupted, cache, metric, patching.layer_pos_patch_setter,
                                                   "resid_pre", index_df=frame, return_index_df=True)  # fmt: skip
    assert flat.shape == (3,) and back is frame, "index_df gives a flat result in its row order"
    assert torch.allclose(flat, full[[1, 0, 0], [1, 0, 3]]), "the flat result must equal the grid's cells"


def test_patching_on_the_induction_model_finds_the_induction_path(induction_model):
    """Patching the clean repeat back into a corrupted first copy: the induction head's output restores most."""
    model = induction_model
    clean = model.to_tokens("qwertyuiopqwertyuiop")
    corrupted = model.to_tokens("asdfghjklzqwertyuiop")
    _, cache = model.run_with_cache(clean)
    targets = clean[0, 12:]

    def metric(logits):
        return logits[0, 11:-1].log_softmax(-1).gather(-1, targets[:, None]).mean()

    heads = patching.get_act_patch_attn_head_out_all_pos(model, corrupted, cache, metric)
    loop = tl_loop(model, corrupted, cache, metric, patching.layer_head_vector_patch_setter, "z", ("layer", "head"))
    best = divmod(int(heads.argmax()), model.cfg.n_heads)
    print(
        f"head patching [layer, head]:\n{heads}\nbest head L{best[0]}H{best[1]}, max |ours - loop| "
        f"{(heads - loop).abs().max():.2e}"
    )
    assert (heads - loop).abs().max() < 1e-5, "batched patching must equal the loop"
    assert best[0] == 1, "the head that restores the repeat must be a layer-1 (induction) head"


def test_get_act_name_matches_transformer_lens_spellings():
    cases = {("attn", 3, None): "blocks.3.attn.hook_pattern", ("scale", 4, "ln1"): "blocks.4.ln1.hook_scale",
             ("normalized", 2, "ln2"): "blocks.2.ln2.hook_normalized", ("post", 1, None): "blocks.1.mlp.hook_post",
             ("result", 0, None): "blocks.0.attn.hook_result", ("z", 0, "a"): "blocks.0.attn.hook_z",
             ("resid_pre", 1, None): "blocks.1.hook_resid_pre", ("k6", None, None): "blocks.6.attn.hook_k",
             ("scale4ln1", None, None): "blocks.4.ln1.hook_scale", ("pre5", None, None): "blocks.5.mlp.hook_pre",
             ("embed", None, None): "hook_embed", ("scale", None, None): "ln_final.hook_scale",
             ("attn_out", 0, "b"): "blocks.0.hook_attn_out"}  # fmt: skip
    for args, want in cases.items():
        assert utils.get_act_name(*args) == want, f"get_act_name{args} = {utils.get_act_name(*args)}, want {want}"
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        utils.get_act_name(3)


def test_test_prompt_prints_and_returns_ranks(induction_model, capsys):
    ranks = utils.test_prompt("qwertyqwert", "y", induction_model, prepend_space_to_answer=False)
    out = capsys.readouterr().out
    print(out)
    assert ranks == [("y", 0)], f"the induction model must rank the repeated 'y' first, got {ranks}"
    assert "Ranks of the answer tokens: [('y', 0)]" in out and "Top 0th token" in out, "test_prompt must print"
