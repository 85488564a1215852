# Source of notebooks/05_from_transformerlens.ipynb (cells separated by "# %%"); rebuild: notebooks/build.py.

# %% [markdown]
# # 05 · Coming from TransformerLens
#
# TransformerLens code, run unchanged on MiniGPT Lens: the cache, the stacked weights, `FactoredMatrix`,
# `utils.get_act_name`, `utils.test_prompt` and the patching functions, on the shipped `induction-2l`
# (2 layers, one head each, trained on repeated random segments) and `minigpt-text`. Where a line differs from
# what a TransformerLens user writes, a comment says why. `tests/test_transformerlens_reference.py` checks these
# methods against TransformerLens 2.18's own outputs at 1e-5.

# %%
import einops
import plotly.express as px
import plotly.io as pio
import torch as t

from interp.compat import patching, utils  # TransformerLens: from transformer_lens import patching, utils
from model import FactoredMatrix, MiniGPT

pio.renderers.default = "plotly_mimetype"  # figures travel inside the notebook as JSON (no plotly.js copy)
t.manual_seed(0)
model = MiniGPT.from_pretrained("induction-2l")
print(model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_model, model.cfg.d_mlp, model.cfg.normalization_type,
      model.cfg.positional_embedding_type, model.cfg.act_fn)  # fmt: skip

# %% [markdown]
# ## Repeated random tokens
#
# One change from ARENA: `t.randint(0, model.cfg.d_vocab, ...)` would also draw the three special tokens
# (`<bos>`, `<pad>`, `<unk>`), which this model never saw inside a text; `model.random_tokens` leaves them out.

# %%
seq_len, batch = 15, 4


def generate_repeated_tokens(model, seq_len, batch=1):
    prefix = (t.ones(batch, 1) * model.tokenizer.bos_token_id).long()
    rep_tokens_half = model.random_tokens(batch, seq_len, seed=1)  # ARENA: t.randint(0, model.cfg.d_vocab, ...)
    return t.cat([prefix, rep_tokens_half, rep_tokens_half], dim=-1).to(model.cfg.device)


rep_tokens = generate_repeated_tokens(model, seq_len, batch)
print(model.to_str_tokens(rep_tokens[0]))
rep_logits, rep_cache = model.run_with_cache(rep_tokens)
loss = model.loss_fn(rep_logits, rep_tokens, per_token=True)
print(f"loss on the first copy {loss[:, :seq_len].mean():.2f}, on the second {loss[:, seq_len:].mean():.2f} nats")

# %% [markdown]
# ## Attention patterns and `remove_batch_dim`
#
# `cache["pattern", l]` is `[batch, head, q, k]`. ARENA's detectors index `[head]` right away, which is only
# right after `remove_batch_dim()` (batch 1): on a batched cache `[head]` picks a *sequence*.

# %%
_, cache = model.run_with_cache(rep_tokens[:1], remove_batch_dim=True)


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


print("induction heads:", induction_attn_detector(cache))
print(cache["attn", 1].shape, utils.get_act_name("attn", 1))  # TransformerLens's alias: "attn" is the pattern
labels = [f"{i}:{s}" for i, s in enumerate(model.to_str_tokens(rep_tokens[0]))]
px.imshow(cache["pattern", 1][0], x=labels, y=labels, color_continuous_scale="Blues",
          title="L1H0 attention: the induction stripe").show()  # fmt: skip

# %% [markdown]
# ## The residual stream, decomposed
#
# `decompose_resid`, `accumulated_resid`, `stack_head_results` and `logit_attrs`, with TransformerLens's labels.

# %%
stack, labels = rep_cache.decompose_resid(return_labels=True, pos_slice=-1)
print(labels, tuple(stack.shape))
heads, head_labels = rep_cache.stack_head_results(layer=-1, return_labels=True, pos_slice=-2)
attrs = rep_cache.logit_attrs(heads, rep_tokens[:, -1], pos_slice=-2)  # each head's push on the next token
print(dict(zip(head_labels, attrs.mean(-1).tolist(), strict=True)))
acc, acc_labels = rep_cache.accumulated_resid(return_labels=True, pos_slice=-1)
print(acc_labels)

# %% [markdown]
# ## Hooks: `run_with_hooks`, `add_hook`, `reset_hooks`
#
# `run_with_hooks` hooks live for one call. `add_hook` hooks stay until `reset_hooks()`, as in TransformerLens,
# but only in the thread that added them.

# %%
induction_score_store = t.zeros((model.cfg.n_layers, model.cfg.n_heads))


def induction_score_hook(pattern, hook):
    induction_stripe = pattern.diagonal(dim1=-2, dim2=-1, offset=1 - seq_len)
    induction_score_store[hook.layer(), :] = einops.reduce(induction_stripe, "batch head pos -> head", "mean")


model.run_with_hooks(rep_tokens, return_type=None,
                     fwd_hooks=[(lambda name: name.endswith("pattern"), induction_score_hook)])  # fmt: skip
print("ARENA's stripe score per head:", induction_score_store.tolist())


def head_ablation_hook(v, hook, head_index_to_ablate=0):
    v[:, :, head_index_to_ablate, :] = 0.0
    return v


model.add_hook(utils.get_act_name("v", 1), head_ablation_hook)
ablated = model.loss_fn(model(rep_tokens), rep_tokens, per_token=True)[:, seq_len:].mean()
model.reset_hooks()
print(f"second-copy loss with L1H0's values zeroed: {ablated:.2f} nats (hooks left: {len(model.hook_list())})")

# %% [markdown]
# ## Weights: stacked, factored
#
# `model.W_V [layer, head, d_model, d_head]`, `model.OV` a `FactoredMatrix [layer, head, d_model, d_model]`.

# %%
full_OV_circuit = model.W_E @ FactoredMatrix(model.W_V[1, 0], model.W_O[1, 0]) @ model.W_U
top1 = (full_OV_circuit.AB.argmax(-1) == t.arange(model.cfg.d_vocab)).float().mean()
print(f"OV copying: top-1 accuracy {top1:.2f}; OV shape {model.OV.shape}; singular values {model.OV[1, 0].S[:3]}")

# %% [markdown]
# ## Activation patching
#
# TransformerLens's functions and shapes (`[n_layers, n_heads]` ...), run batched.

# %%
clean = rep_tokens[:1]
corrupted = clean.clone()
corrupted[0, 5] = 20 if clean[0, 5] != 20 else 21  # change one first-copy token
_, clean_cache = model.run_with_cache(clean)
answer = clean[0, 5 + seq_len + 1]  # the token after the changed one's second occurrence


def metric(logits):
    return logits[0, 5 + seq_len].log_softmax(-1)[answer]


print(patching.get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, metric))
print(patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)[:, 3:8])

# %% [markdown]
# ## `test_prompt` on the text model

# %%
text_model = MiniGPT.from_pretrained("minigpt-text")
ranks = utils.test_prompt("the value of the functio", "n", text_model, prepend_space_to_answer=False,
                          top_k=3)  # fmt: skip
