# Source of notebooks/03_dla_and_export.ipynb (cells separated by "# %%"); rebuild with `python notebooks/build.py`.

# %% [markdown]
# # 03 · Direct logit attribution, logit difference, logit lens, CSV export
#
# With the final LayerNorm's scale frozen at its cached value, the map from the final residual
# stream to the logits is linear. Since the residual stream is a sum of writes (notebook 01), each
# logit splits exactly into one contribution per component: the embeddings, every head, every MLP
# (or every neuron), plus the LayerNorm and unembedding biases. That is **direct logit
# attribution** (DLA). It says which components push the prediction *directly*; what they do
# through later layers is for ablation and patching.

# %%
import tempfile
from pathlib import Path

import pandas as pd
import plotly.io as pio
import torch

from dashboards.plots import dla_bar, logit_lens_heatmap
from interp import direct_logit_attribution, logit_difference, logit_lens
from interp import contributions_to_csv, read_contributions_csv
from model import MiniGPT

pio.renderers.default = "plotly_mimetype"

# %%
model = MiniGPT.from_pretrained("minigpt-text")
prompts = ["a class definition creates a ne", "the return value of the functio"]  # equal lengths make one batch
tokens = model.to_tokens(prompts)
logits, cache = model.run_with_cache(tokens)
symbols = model.tokenizer.symbols
for b, prompt in enumerate(prompts):
    probs = logits[b, -1].softmax(-1)
    values, ids = probs.topk(3)
    guesses = ", ".join(f"{symbols[i]!r} {p:.2f}" for p, i in zip(values.tolist(), ids.tolist(), strict=True))
    print(f"{prompt!r} -> {guesses}")

# %% [markdown]
# ## DLA per head
#
# `direct_logit_attribution(model, tokens, cache, target=None, per="head")` attributes, at every
# position, the logit of the actual next token (and, at the last position, the model's own top
# prediction). The contributions at each position sum to the logit: we check it for every
# position of both prompts.

# %%
dla = direct_logit_attribution(model, tokens, cache, per="head")
sums = dla.groupby(["batch", "pos"]).agg(target=("target", "first"), total=("contribution", "sum")).reset_index()
b, p, t = (torch.tensor(sums[column].to_numpy()) for column in ("batch", "pos", "target"))
error = (torch.tensor(sums.total.to_numpy()) - logits[b, p, t].double()).abs().max().item()
print(f"{len(dla)} rows; max |sum of contributions - logit| = {error:.1e}")
assert error < 1e-4

# %%
last = tokens.shape[1] - 1
at_last = dla[(dla.batch == 0) & (dla.pos == last)]
target = at_last.target_str.iloc[0]
dla_bar(at_last, title=f"Direct contributions to the logit of {target!r} after {prompts[0]!r}").show()

# %%
at_last.sort_values("contribution", key=abs, ascending=False).head(8)[["component", "component_type", "contribution"]]

# %% [markdown]
# Coarser and finer views sum to the same logit: `per="layer"` (one row per block), and
# `per="neuron"` (every MLP neuron on its own).

# %%
by_layer = direct_logit_attribution(model, tokens, cache, per="layer")
neurons = direct_logit_attribution(model, tokens, cache, per="neuron")
for name, frame in (("layer", by_layer), ("head", dla), ("neuron", neurons)):
    value = frame[(frame.batch == 0) & (frame.pos == last)].contribution.sum()
    print(f"per={name:<7} {len(frame):>6} rows, logit of {target!r} at the last position = {value:.4f}")
top_neurons = neurons[(neurons.batch == 0) & (neurons.pos == last) & (neurons.component_type == "neuron")]
top_neurons.nlargest(5, "contribution")[["component", "layer", "neuron", "contribution"]]

# %% [markdown]
# ## Logit difference
#
# Why does the model prefer its top guess over the runner-up? With a `contrast` token, DLA
# attributes `logit[target] - logit[contrast]`, which removes everything the two logits share.

# %%
top2 = logits[0, -1].topk(2).indices.tolist()
answer, runner_up = symbols[top2[0]], symbols[top2[1]]
diff = logit_difference(model, tokens, cache, target=answer, contrast=runner_up)[0, -1].item()
contrast = direct_logit_attribution(model, tokens, cache, target=answer, contrast=runner_up, per="head")
contrast_last = contrast[(contrast.batch == 0) & (contrast.pos == last)]
print(f"logit[{answer!r}] - logit[{runner_up!r}] after {prompts[0]!r}: {diff:.4f}")
print(f"sum of the contributions: {contrast_last.contribution.sum():.4f}")
assert abs(contrast_last.contribution.sum() - diff) < 1e-4
dla_bar(contrast_last, title=f"Direct contributions to logit[{answer!r}] - logit[{runner_up!r}]").show()

# %% [markdown]
# ## Logit lens
#
# Read the residual stream out early: after the embeddings, after block 0, after block 1 (the
# model's output), each through the final LayerNorm and the unembedding. Colour is the probability
# of the actual next character; the text in each cell is the top guess (hover for the top 5).
# The unembedding is tied to the embedding, so straight after the embeddings the stream mostly
# "predicts" the current character itself; the blocks are what move it on to the next one.

# %%
lens = logit_lens(model, tokens, cache, k=5)
for b in range(len(prompts)):
    logit_lens_heatmap(lens[lens.batch == b], model.to_str_tokens(tokens[b])).show()

# %%
lens.groupby("stage", sort=False).target_prob.mean().rename("mean p(next character)").to_frame()

# %% [markdown]
# ## Export the contributions to CSV
#
# `contributions_to_csv` writes a DLA frame through a temporary file and an atomic rename, with
# the documented column schema (`interp.common.export.SCHEMA`); `read_contributions_csv` reads it back
# with the same dtypes. (The CLI does the same: `minigpt export --model minigpt-text --prompt "..."
# --out contributions.csv`.)

# %%
out_dir = Path(tempfile.mkdtemp())
path = contributions_to_csv(dla, out_dir / "contributions.csv")
back = read_contributions_csv(path)
print(f"{path.name}: {path.stat().st_size:,} bytes, {len(back)} rows, columns {list(back.columns)}")
pd.testing.assert_frame_equal(back, dla[back.columns], check_exact=False, rtol=1e-12)
back.head()
