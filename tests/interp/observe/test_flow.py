"""Information flow (interp.observe.flow): the parts of every update sum to the state above; the routes find the
previous-token and induction reads where the training recipe (induction-2l) and the weights (planted_induction)
put them; the causal check agrees with an independent hooked forward and tells the planted distractors apart."""

import pandas as pd
import pytest
import torch

from interp.discover.planted import planted_induction
from interp.intervene.flow import patch_flow_edge
from interp.observe.flow import (
    COLUMNS,
    _updates,
    edge_logit_effects,
    flow_edge,
    flow_routes,
    flow_stages,
    information_flow,
    state_readout,
)
from interp.observe.flow_reading import flow_into, strongest_effects, top_guess
from interp.observe.lens import logit_lens
from model import MiniGPT, ModelConfig
from model.training.data import repeated_pair_batch

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def induction():
    return MiniGPT.from_pretrained("induction-2l").eval()


@pytest.fixture(scope="module")
def text():
    return MiniGPT.from_pretrained("minigpt-text").eval()


@pytest.mark.parametrize("which", ["minigpt-text", "induction-2l", "random-ln", "random-no-bias"])
def test_parts_sum_to_the_state_above(which):
    model = {
        "random-ln": lambda: MiniGPT(ModelConfig(), seed=0),
        "random-no-bias": lambda: MiniGPT(ModelConfig(bias=False), seed=1),
    }.get(which, lambda: MiniGPT.from_pretrained(which))().eval()
    tokens = model.to_tokens("the cat sat on the mat")
    _, cache = model.run_with_cache(tokens)
    stages = flow_stages(model)
    for update in _updates(model, cache):
        bias = 0 if update.bias is None else update.bias
        rebuilt = update.carried + update.parts.sum((0, 2)) + bias
        torch.testing.assert_close(rebuilt, cache[stages[update.upstream + 1]][0], atol=1e-5, rtol=0)
    flow = information_flow(model, tokens, cache)
    assert list(flow.columns) == COLUMNS
    shares = flow.groupby(["downstream_stage", "downstream_pos"]).importance.sum()
    assert shares.le(1 + 1e-9).all() and flow.importance.ge(0).all()
    if not model.cfg.bias:  # with no b_O every part is an edge: the shares of each update are all of it
        assert shares.sub(1).abs().max() < 1e-9
    n_pos = tokens.shape[1]
    heads = n_pos * (n_pos + 1) // 2 * model.cfg.n_heads * model.cfg.n_layers
    assert (flow.component_type == "head").sum() == heads
    assert flow.loc[flow.component_type != "head", "head"].isna().all()
    assert (flow.upstream_pos <= flow.downstream_pos).all()


def test_logit_effects_of_the_last_update_sum_to_the_logits(text):
    """The final state is the last MLP's part plus the carried state, so their logit effects (the final LayerNorm's
    scale frozen) add up to the logits less what the LayerNorm's bias and b_U add."""
    tokens = text.to_tokens("the value of the attribute is")
    flow = information_flow(text, tokens)
    last = flow[flow.downstream_stage == flow.downstream_stage.max()]
    with torch.no_grad():
        logits = text(tokens)[0].double()
        offset = text.ln_final.b.double() @ text.W_U.double()
        offset = offset + (0 if text.unembed.b_U is None else text.unembed.b_U.double())
    for pos in (3, 20, tokens.shape[1] - 1):
        total = 0
        for _, edge in last[last.downstream_pos == pos].iterrows():
            effects = edge_logit_effects(text, tokens, edge).sort_values("target")
            total = total + torch.tensor(effects.logit_effect.to_numpy())
        torch.testing.assert_close(total, logits[pos] - offset, atol=1e-4, rtol=0)


@pytest.mark.parametrize("which", ["minigpt-text", "induction-2l"])
def test_a_state_reads_out_as_the_logit_lens_and_the_last_one_as_the_model(which, text, induction):
    """A node of the flow graph read out: the final state gives the model's own logits; every block's input state
    gives the logit lens's probabilities at that stage (an independent read of the same residual)."""
    model = {"minigpt-text": text, "induction-2l": induction}[which]
    tokens = model.to_tokens("the value of the attribute is")
    stages, per_block = flow_stages(model), 1 if model.cfg.attn_only else 2
    lens = logit_lens(model, tokens, k=3)
    with torch.no_grad():
        logits = model(tokens)[0].double()
    for pos in (0, 7, tokens.shape[1] - 1):
        out = state_readout(model, tokens, len(stages) - 1, pos).sort_values("target")
        torch.testing.assert_close(torch.tensor(out.logit.to_numpy()), logits[pos], atol=1e-4, rtol=0)
        for layer in range(model.cfg.n_layers):
            read = state_readout(model, tokens, layer * per_block, pos)
            row = lens[(lens.pos == pos) & (lens.stage == layer)].iloc[0]
            assert read.target_str.iloc[:1].tolist() == row.top_strs[:1]
            torch.testing.assert_close(torch.tensor(read.target_prob.iloc[:3].to_numpy()),
                                       torch.tensor(row.top_probs, dtype=torch.float64), atol=1e-5, rtol=0)  # fmt: skip
    with pytest.raises(IndexError, match="stage 9 is out of range"):
        state_readout(model, tokens, 9, 0)
    with pytest.raises(ValueError, match="follows one sequence"):
        state_readout(model, torch.cat([tokens, tokens]), 0, 0)


def _second_copy_reads(model: MiniGPT, seg: int, n: int, heads: tuple[int, int] | None) -> tuple[float, float]:
    """On BOS + r + r: how often the strongest layer-1 head edge into each second-copy position is an induction read
    (from a key whose previous token is the current one: the token after the earlier copy), and how often the
    strongest layer-0 one comes from the previous position; ``heads`` (layer 0's, layer 1's) limits each layer
    to one head."""
    batch = repeated_pair_batch(n, seg, torch.Generator().manual_seed(0))
    hits, total = {0: 0, 1: 0}, 0  # layer -> positions where its strongest edge is the expected read
    for row in batch:
        flow = information_flow(model, row[None])
        edges = flow[flow.component_type == "head"]
        for pos in range(seg + 2, 2 * seg + 1):  # the second copy, after its first token
            into = edges[edges.downstream_pos == pos]
            # an induction read: a key whose previous token is the current one (several, where a token repeats)
            reads = {p for p in range(1, pos + 1) if row[p - 1] == row[pos]}
            for layer, want in ((1, reads), (0, {pos - 1})):
                chosen = into[(into.layer == layer) & (True if heads is None else into["head"] == heads[layer])]
                hits[layer] += int(chosen.nlargest(1, "importance").upstream_pos.item() in want)
            total += 1
    return hits[1] / total, hits[0] / total


def test_routes_find_the_induction_and_previous_token_reads(induction):
    """Known by the training recipe: induction-2l's layer 0 reads the previous token, its layer 1 the token after the
    earlier copy."""
    induction_rate, previous_rate = _second_copy_reads(induction, 15, 8, heads=None)
    print(f"\ninduction-2l: the strongest layer-1 head edge is the induction read at {induction_rate:.3f} of the "
          f"second-copy positions, the strongest layer-0 one the previous token at {previous_rate:.3f}")  # fmt: skip
    assert induction_rate >= 0.9 and previous_rate >= 0.9


def test_planted_heads_read_where_their_weights_say_and_a_distractor_outweighs_them():
    """Known by construction: L0H0 reads the previous position, L1H0 the token after the earlier copy. The distractor
    L1H1 writes a large vector into a subspace nothing reads, so by importance (a norm-based share) it outranks the
    induction read: importance is not causation, which is what the causal check is for (next tests)."""
    model = planted_induction()
    induction_rate, previous_rate = _second_copy_reads(model, 15, 4, heads=(0, 0))
    flow = information_flow(model, repeated_pair_batch(1, 15, torch.Generator().manual_seed(0)))
    top = flow[(flow.component_type == "head") & (flow.layer == 1) & (flow.downstream_pos == 25)].nlargest(
        1, "importance"
    )
    print(f"\nplanted: L1H0's strongest edge is the induction read at {induction_rate:.3f} of the second-copy "
          f"positions, L0H0's the previous token at {previous_rate:.3f}; the strongest layer-1 edge into position 25 "
          f"is L1H{int(top['head'].item())}'s")  # fmt: skip
    assert induction_rate == 1 and previous_rate == 1
    assert int(top["head"].item()) == 1


def test_routes_lead_to_the_chosen_position(induction):
    tokens = repeated_pair_batch(1, 15, torch.Generator().manual_seed(3))
    flow = information_flow(induction, tokens)
    routes = flow_routes(flow, position=25, threshold=0.2)
    last = len(flow_stages(induction)) - 1
    assert set(routes[routes.downstream_stage == last].downstream_pos) == {25}
    for stage in range(1, last):  # every kept edge feeds a state that a kept edge above reads
        feeds = set(routes[routes.downstream_stage == stage].downstream_pos)
        assert feeds <= set(routes[routes.upstream_stage == stage].upstream_pos)
    reads = routes[(routes.component_type == "head") & (routes.layer == 1)]
    assert 25 - 15 + 1 in set(reads.upstream_pos)  # the induction read of the second copy
    assert len(flow_routes(flow, position=25, threshold=1.0)) <= len(routes) <= len(flow_routes(flow, 25, 0.0))


def _hooked_patch(model, clean, corrupted, edge, position, target_id) -> float:
    """The same patch by a hook on the model's own forward: the stage's state at the edge's target position moves
    by the edge's part on the corrupted run minus its part on the clean run."""
    checked = flow_edge(model, edge, clean.shape[1])
    names = [n for n in model.hook_names if n.endswith(("hook_pattern", "hook_v", "mlp_out", "resid_pre", "resid_mid"))]
    _, c1 = model.run_with_cache(clean, names_filter=names)
    _, c2 = model.run_with_cache(corrupted, names_filter=names)
    change = checked.part(model, c2) - checked.part(model, c1)
    hook = flow_stages(model)[checked.stage_above(model)]

    def move(act, hook):
        act = act.clone()
        act[0, checked.downstream_pos] += change
        return act

    with torch.no_grad():
        logits = model.run_with_hooks(clean, fwd_hooks=[(hook, move)])
    return float(logits[0, position].double().log_softmax(-1)[target_id])


@pytest.mark.parametrize("component", ["L1H", "L1.resid_pre", "L1.mlp", "L1.resid_mid"])
def test_causal_check_matches_a_hooked_forward(component, text):
    clean, corrupted = text.to_tokens("the value of the attribute is"), text.to_tokens("a dog ran in the park, it was")
    flow = information_flow(text, clean)
    with torch.no_grad():
        logits = text(clean)[0, 20].double()
    target_id = int(logits.argmax())
    for _, edge in flow[flow.component.str.startswith(component)].nlargest(3, "importance").iterrows():
        check = patch_flow_edge(text, clean, corrupted, edge, position=20)
        reference = _hooked_patch(text, clean, corrupted, edge, 20, target_id)
        assert abs(check.metric_patched - reference) < 1e-5
        assert abs(check.metric_clean - float(logits.log_softmax(-1)[target_id])) < 1e-5
        assert patch_flow_edge(text, clean, clean, edge, position=20).change == 0  # nothing to move


def test_causal_check_on_the_planted_circuit():
    """Planted weights: the distractor heads write a subspace nothing reads, so patching any of their edges changes
    nothing, while the induction read carries the prediction."""
    model = planted_induction()
    seg = 12
    clean = repeated_pair_batch(1, seg, torch.Generator().manual_seed(0))
    corrupted = clean.clone()
    corrupted[0, 1 : seg + 1] = repeated_pair_batch(1, seg, torch.Generator().manual_seed(1))[0, 1 : seg + 1]
    pos = 2 * seg - 2
    flow = information_flow(model, clean)
    heads = flow[(flow.component_type == "head") & (flow.downstream_pos == pos)]
    distractors = heads[heads["head"] == 1].nlargest(5, "importance")
    changes = [abs(patch_flow_edge(model, clean, corrupted, e, position=pos).change) for _, e in distractors.iterrows()]
    read = heads[(heads.layer == 1) & (heads["head"] == 0) & (heads.upstream_pos == pos - seg + 1)]
    check = patch_flow_edge(model, clean, corrupted, read, position=pos)
    print(f"\nplanted induction: induction read change {check.change:+.3f} (attribution predicted "
          f"{check.predicted_change:+.3f}); largest distractor change {max(changes):.2e}")  # fmt: skip
    assert max(changes) < 1e-6
    assert check.change < -1


def test_flow_rejects_what_it_cannot_follow(induction):
    tokens = repeated_pair_batch(2, 5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="follows one sequence"):
        information_flow(induction, tokens)
    flow = information_flow(induction, tokens[:1])
    bad = flow.iloc[:1].assign(component="L0.mlp")
    with pytest.raises(ValueError, match="attention-only"):
        patch_flow_edge(induction, tokens[:1], tokens[1:], bad)
    with pytest.raises(ValueError, match="cannot go from position 3 to position 2"):
        patch_flow_edge(induction, tokens[:1], tokens[1:], flow.iloc[:1].assign(upstream_pos=3, downstream_pos=2))
    with pytest.raises(ValueError, match="same shape"):
        patch_flow_edge(induction, tokens[:1], tokens[1:, :5], flow.iloc[:1])
    with pytest.raises(TypeError, match="information_flow"):
        flow_routes(pd.DataFrame({"x": [1]}), 0)
    with pytest.raises(ValueError, match="threshold must be an importance share"):
        flow_routes(flow, 3, threshold=2)


def test_reading_a_flow_agrees_with_the_model_and_the_frame(induction):
    """top_guess is the forward's argmax; flow_into is every edge into a state, their shares summing to at most 1;
    strongest_effects holds the k largest and the k smallest logit effects."""
    tokens = induction.to_tokens("qwertyuiop qwertyuiop")
    with torch.no_grad():
        logits = induction(tokens)[0]
    for pos in (3, 14, 21):
        assert int(top_guess(induction, tokens, pos).target) == int(logits[pos].argmax()), f"top guess at {pos}"
    flow = information_flow(induction, tokens)
    for stage in range(1, len(flow_stages(induction))):
        into = flow_into(flow, stage, 14)
        expected = flow[(flow.downstream_stage == stage) & (flow.downstream_pos == 14)]
        assert len(into) == len(expected) and into.importance.is_monotonic_decreasing
        assert into.importance.sum() <= 1 + 1e-9, "the parts of one update share at most 1 (b_O takes the rest)"
    assert flow_into(flow, 0, 14).empty, "nothing flows into the embeddings"
    effects = edge_logit_effects(induction, tokens, flow_into(flow, 2, 14).iloc[:1])
    shown = strongest_effects(effects, k=3)
    values = sorted(effects.logit_effect)
    assert shown.logit_effect.tolist() == [*values[::-1][:3], *values[:3][::-1]], "the 3 largest, then the 3 smallest"
