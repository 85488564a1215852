# Source of notebooks/01_quickstart.ipynb (cells separated by "# %%"); rebuild with `python notebooks/build.py`.

# %% [markdown]
# # 01 · Quickstart: load, cache, hook names, the residual stream
#
# MiniGPT Lens is a small GPT (64 character tokens, 2 layers, 4 heads of 16 dimensions) whose every
# internal step is a named hook point. This notebook loads the shipped `minigpt-text` checkpoint
# (trained on Python's own help pages, `pydoc_data.topics`), runs it with a cache, lists the hook
# names and their shapes, decomposes the residual stream into what each sublayer wrote, plots
# attention patterns, and samples a continuation.
#
# Everything here is a call into the library (`model`, `interp`, `dashboards.plots`); no network,
# no GPU needed.

# %%
import pandas as pd
import plotly.io as pio
import torch

from dashboards.plots import attention_heatmaps, parameter_bar, write_norms_heatmap
from interp import accumulated_resid, attention_pattern_frame, residual_stack, write_norms
from model import MiniGPT

pio.renderers.default = "plotly_mimetype"  # figures travel inside the notebook as JSON (no plotly.js copy)

# %% [markdown]
# ## Load a shipped checkpoint
#
# `MiniGPT.from_pretrained` takes a shipped name (`"minigpt-text"`, `"induction-2l"`) or a path to a
# `.safetensors` file. The JSON beside the weights holds the config, the tokenizer and how the
# model was trained.

# %%
model = MiniGPT.from_pretrained("minigpt-text")
print(model.cfg)
print("parameters:", f"{model.cfg.n_params:,}")
print("trained with:", model.provenance["command"])
print("steps:", model.provenance["steps"], "| validation loss (nats/char):", round(model.provenance["val_loss"], 3))

# %%
inventory = model.parameter_inventory()
assert inventory["count"].sum() == model.cfg.n_params
parameter_bar(inventory).show()

# %% [markdown]
# ## Run with a cache
#
# `to_tokens` puts `<bos>` in front of the text. `run_with_cache` returns the logits and an
# `ActivationCache`: a read-only mapping from hook name to activation, which also understands the
# TransformerLens shorthand `cache["pattern", 1]`.

# %%
prompt = "the class of an object is"
tokens = model.to_tokens(prompt)
logits, cache = model.run_with_cache(tokens)
print("tokens", tuple(tokens.shape), "-> logits", tuple(logits.shape))
print(cache)
print('cache["pattern", 1] is', tuple(cache["pattern", 1].shape), "[batch, head, q_pos, k_pos]")
next_id = logits[0, -1].argmax().item()
print("most likely next character after", repr(prompt), "is", repr(model.to_str_tokens([next_id])[0]))

# %% [markdown]
# ## Hook names and shapes
#
# `model.hook_shapes(batch, pos)` gives every hook's activation shape without running the model;
# the table checks it against what the cache recorded. `attn.hook_result` (each head's write,
# `[batch, pos, head, d_model]`) is recorded only when asked for by name, because it is the
# largest activation.

# %%
batch, n_pos = tokens.shape
shapes = model.hook_shapes(batch, n_pos)
hooks = pd.DataFrame(
    {
        "hook": list(shapes),
        "shape": [str(s) for s in shapes.values()],
        "recorded": [str(tuple(cache[n].shape)) if n in cache else "only when named" for n in shapes],
    }
)
assert all(tuple(cache[n].shape) == s for n, s in shapes.items() if n in cache)
print(len(model.hook_names), "hook points")
hooks

# %% [markdown]
# ## The residual stream, decomposed per sublayer
#
# Every sublayer *adds* its output to the residual stream, so the final residual (the input of the
# final LayerNorm) is exactly the sum of the writes: the token embedding, the position embedding,
# each attention output and each MLP output. `residual_stack` returns those writes stacked, with a
# label frame; we check the invariant numerically.

# %%
stack, labels = residual_stack(model, tokens, cache, per_head=False)
final = cache["resid_post", model.cfg.n_layers - 1]
error = (stack.sum(0) - final).abs().max().item()
print(list(labels.component))
print(f"max |sum of writes - final residual| = {error:.2e}")
assert error < 1e-5, "the writes should sum to the final residual"

for layer in range(model.cfg.n_layers - 1):
    step = cache["resid_pre", layer] + cache["attn_out", layer] + cache["mlp_out", layer]
    gap = (step - cache["resid_pre", layer + 1]).abs().max().item()
    print(f"resid_pre[{layer + 1}] - (resid_pre[{layer}] + attn_out[{layer}] + mlp_out[{layer}]): {gap:.2e}")
    assert gap < 1e-5

# %% [markdown]
# Split per head: with `hook_result` recorded, each head's write plus the attention output bias
# adds up to `hook_attn_out`, and the per-head stack still sums to the final residual.

# %%
_, cache_heads = model.run_with_cache(tokens, names_filter=lambda name: True)  # every hook, hook_result too
head_stack, head_labels = residual_stack(model, tokens, cache_heads, per_head=True)
print(list(head_labels.component))
for layer, block in enumerate(model.blocks):
    heads_plus_bias = cache_heads["result", layer].sum(2) + block.attn.b_O
    gap = (heads_plus_bias - cache_heads["attn_out", layer]).abs().max().item()
    print(f"layer {layer}: max |sum of heads + b_O - attn_out| = {gap:.2e}")
    assert gap < 1e-5
assert torch.allclose(head_stack.sum(0), final, atol=1e-5)

# %% [markdown]
# How much each component writes at each position (the L2 norm of the write), one row per
# component. Norms do not add up (the writes point in different directions), so they are drawn
# side by side, never stacked:

# %%
token_strs = model.to_str_tokens(tokens[0])
norms = write_norms(model, tokens, cache)
write_norms_heatmap(norms[norms.batch == 0], token_strs).show()

# %% [markdown]
# The residual stream at each layer boundary (`accumulated_resid`), and its norm growing as the
# layers add to it:

# %%
stages, stage_labels = accumulated_resid(model, tokens, cache)
pd.DataFrame({"stage": stage_labels, "mean norm": stages[:, 0].norm(dim=-1).mean(-1).tolist()})

# %% [markdown]
# ## Attention patterns
#
# `attention_pattern_frame` turns one head's pattern into a long frame (`q_pos, k_pos, q_str, k_str,
# weight`); `dashboards.plots.attention_heatmaps` draws one heatmap per head (hover for the tokens).

# %%
patterns = pd.concat(
    [
        attention_pattern_frame(model, tokens, cache, layer=layer, head=head).assign(layer=layer, head=head)
        for layer in range(model.cfg.n_layers)
        for head in range(model.cfg.n_heads)
    ]
)
attention_heatmaps(patterns, token_strs).show()

# %% [markdown]
# ## Hooks: intervene for one call
#
# A hook is `fn(activation, hook)`: it may edit the activation in place or return a replacement.
# Hooks live only for the call that names them: the next plain forward is untouched.


# %%
def zero_head_0(z, hook):
    z[:, :, 0] = 0.0  # z: [batch, pos, head, d_head]; head 0 of this layer writes nothing now


clean_loss = model(tokens, return_type="loss").item()
hooked_loss = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", zero_head_0)], return_type="loss")
after_loss = model(tokens, return_type="loss").item()
print(f"loss clean {clean_loss:.4f} | with L1H0 zeroed {hooked_loss.item():.4f} | clean again {after_loss:.4f}")
assert after_loss == clean_loss, "hooks must not outlive their call"

# %% [markdown]
# ## Generate a continuation
#
# `generate` samples with `temperature`, `top_k` and `top_p`; `temperature=0` is greedy, and a
# `seed` makes sampling reproducible.

# %%
for temperature in (0.0, 0.8):
    text = model.generate("the class ", max_new_tokens=60, temperature=temperature, seed=0)
    print(f"temperature {temperature}: {text!r}")
