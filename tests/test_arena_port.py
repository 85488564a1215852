"""ARENA's "Intro to Mech Interp" induction-head cells, written as a TransformerLens user writes them, on induction-2l.

The code below is ARENA's (chapter 1.2, sections 2-4) with ``t = torch`` and TransformerLens's names; the two
changes are the ones README "Coming from TransformerLens" asks for: random tokens come from ``model.random_tokens``
(``t.randint(0, model.cfg.d_vocab, ...)`` would draw the three special tokens) and nothing else. The answers are
known: induction-2l (2 layers, 1 head each) was trained on repeated random segments, so its layer-1 head is the
induction head, ablating it (or the layer-0 previous-token head it composes with) ruins the second copy, and its
OV circuit copies.
"""

from __future__ import annotations

import functools

import einops
import pytest
import torch as t

from interp.compat import utils
from model import FactoredMatrix, MiniGPT


@pytest.fixture(scope="module")
def model():
    return MiniGPT.from_pretrained("induction-2l").eval()


def generate_repeated_tokens(model, seq_len, batch=1):
    prefix = (t.ones(batch, 1) * model.tokenizer.bos_token_id).long()
    rep_tokens_half = model.random_tokens(batch, seq_len, seed=0)  # ARENA: t.randint(0, model.cfg.d_vocab, ...)
    return t.cat([prefix, rep_tokens_half, rep_tokens_half], dim=-1).to(model.cfg.device)


def get_log_probs(logits, tokens):
    logprobs = logits.log_softmax(dim=-1)
    return logprobs[:, :-1].gather(dim=-1, index=tokens[:, 1:].unsqueeze(-1)).squeeze(-1)


def test_induction_cells(model):
    seq_len = (model.cfg.n_ctx - 1) // 2
    rep_tokens = generate_repeated_tokens(model, seq_len)
    rep_logits, rep_cache = model.run_with_cache(rep_tokens)
    rep_cache.remove_batch_dim()
    log_probs = get_log_probs(rep_logits, rep_tokens).squeeze()
    first, second = -log_probs[:seq_len].mean().item(), -log_probs[seq_len:].mean().item()
    print(f"loss on first copy {first:.3f}, on second copy {second:.3f} nats")
    assert second < 0.5 * first, "the second copy must be predicted much better than the first"

    def induction_attn_detector(cache):
        attn_heads = []
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                attention_pattern = cache["pattern", layer][head]
                seq_len = (attention_pattern.shape[-1] - 1) // 2
                score = attention_pattern.diagonal(-seq_len + 1).mean()
                if score > 0.4:
                    attn_heads.append(f"{layer}.{head}")
        return attn_heads

    def prev_attn_detector(cache):
        heads = []
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                if cache["pattern", layer][head].diagonal(-1).mean() > 0.4:
                    heads.append(f"{layer}.{head}")
        return heads

    induction, previous = induction_attn_detector(rep_cache), prev_attn_detector(rep_cache)
    print(f"induction heads: {induction}, previous-token heads: {previous}")
    assert induction == ["1.0"] and previous == ["0.0"], "L1H0 is the induction head, L0H0 the previous-token head"

    induction_score_store = t.zeros((model.cfg.n_layers, model.cfg.n_heads), device=model.cfg.device)

    def induction_score_hook(pattern, hook):
        induction_stripe = pattern.diagonal(dim1=-2, dim2=-1, offset=1 - seq_len)
        induction_score = einops.reduce(induction_stripe, "batch head_index position -> head_index", "mean")
        induction_score_store[hook.layer(), :] = induction_score

    rep_tokens_10 = generate_repeated_tokens(model, seq_len, batch=10)
    model.run_with_hooks(
        rep_tokens_10, return_type=None, fwd_hooks=[(lambda name: name.endswith("pattern"), induction_score_hook)]
    )
    print(f"ARENA induction (stripe) scores:\n{induction_score_store}")
    assert induction_score_store[1, 0] > 0.5 > induction_score_store[0, 0], "the stripe score must pick L1H0"
    _, cache_10 = model.run_with_cache(rep_tokens_10)
    ours = utils.arena_induction_scores(cache_10, seq_len)
    print(f"utils.arena_induction_scores: {ours.flatten().tolist()}")
    assert t.allclose(ours, induction_score_store, atol=1e-6), "arena_induction_scores must be ARENA's stripe score"


def test_logit_attribution_cells(model):
    seq_len = (model.cfg.n_ctx - 1) // 2
    tokens = generate_repeated_tokens(model, seq_len)
    logits, cache = model.run_with_cache(tokens, remove_batch_dim=True)

    def logit_attribution(embed, l1_results, l2_results, W_U, tokens):
        W_U_correct_tokens = W_U[:, tokens[1:]]
        direct = einops.einsum(W_U_correct_tokens, embed[:-1], "emb seq, seq emb -> seq")
        l1 = einops.einsum(W_U_correct_tokens, l1_results[:-1], "emb seq, seq nhead emb -> seq nhead")
        l2 = einops.einsum(W_U_correct_tokens, l2_results[:-1], "emb seq, seq nhead emb -> seq nhead")
        return t.concat([direct.unsqueeze(-1), l1, l2], dim=-1)

    embed = cache["embed"] + cache["pos_embed"]
    attr = logit_attribution(embed, cache["result", 0], cache["result", 1], model.W_U, tokens[0])
    # the attributions plus the biases are the correct-token logits (ARENA's check, on a model without LayerNorm)
    biases = model.b_O.sum(0) @ model.W_U[:, tokens[0, 1:]] + model.b_U[tokens[0, 1:]]
    correct = logits[0, :-1].gather(-1, tokens[0, 1:, None]).squeeze(-1)
    err = (attr.sum(-1) + biases - correct).abs().max().item()
    second = attr[seq_len:].mean(0)
    print(f"mean attribution on the second copy (direct, L0H0, L1H0): {second.tolist()}, sum check {err:.2e}")
    assert err < 1e-4, "the attributions must add up to the logits"
    assert second.argmax() == 2, "on the repeat the induction head L1H0 must carry the correct logit"


def test_ablation_and_copying_cells(model):
    seq_len = (model.cfg.n_ctx - 1) // 2
    tokens = generate_repeated_tokens(model, seq_len, batch=10)

    def head_ablation_hook(v, hook, head_index_to_ablate):
        v[:, :, head_index_to_ablate, :] = 0.0
        return v

    def get_ablation_scores(model, tokens):
        ablation_scores = t.zeros((model.cfg.n_layers, model.cfg.n_heads), device=model.cfg.device)
        model.reset_hooks()
        logits = model(tokens, return_type="logits")
        seq_len = (tokens.shape[1] - 1) // 2
        loss_no_ablation = -get_log_probs(logits, tokens)[:, -(seq_len - 1) :].mean()
        for layer in range(model.cfg.n_layers):
            for head in range(model.cfg.n_heads):
                temp_hook_fn = functools.partial(head_ablation_hook, head_index_to_ablate=head)
                ablated_logits = model.run_with_hooks(
                    tokens, fwd_hooks=[(utils.get_act_name("v", layer), temp_hook_fn)]
                )
                loss = -get_log_probs(ablated_logits.log_softmax(-1), tokens)[:, -(seq_len - 1) :].mean()
                ablation_scores[layer, head] = loss - loss_no_ablation
        return ablation_scores

    with t.no_grad():
        scores = get_ablation_scores(model, tokens)
    print(f"ablation: loss increase per head\n{scores}")
    assert (scores > 1.0).all(), "ablating either head of the induction circuit must cost more than 1 nat"

    layer, head_index = 1, 0
    full_OV_circuit = model.W_E @ FactoredMatrix(model.W_V[layer, head_index], model.W_O[layer, head_index]) @ model.W_U

    def top_1_acc(full_OV_circuit, batch_size=1000):
        total = 0
        for indices in t.split(t.arange(full_OV_circuit.shape[0], device=model.cfg.device), batch_size):
            AB_slice = full_OV_circuit.A[indices] @ full_OV_circuit.B
            total += (t.argmax(AB_slice, dim=1) == indices).float().sum().item()
        return total / full_OV_circuit.shape[0]

    with t.no_grad():
        acc = top_1_acc(full_OV_circuit)
    print(f"copying: top-1 accuracy of the L1H0 OV circuit {acc:.3f}")
    assert acc > 0.8, "the induction head's OV circuit must copy"
