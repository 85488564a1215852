# Source of notebooks/02_induction_heads.ipynb (cells separated by "# %%"); rebuild with `python notebooks/build.py`.

# %% [markdown]
# # 02 · Induction heads in `induction-2l`
#
# `induction-2l` is a 2-layer, attention-only transformer (one head per layer, no LayerNorm,
# untied unembedding) trained on sequences in which a random segment appears twice. The only way
# to predict the second copy is *induction*: find the earlier occurrence of the current token and
# copy the token that followed it. That takes two heads working together:
#
# - a **previous-token head** in layer 0 writes "the token before me was *a*" into each position;
# - an **induction head** in layer 1 uses that, through **K-composition**, to attend from the
#   current token *a* to the position just after the earlier *a*, and copies what is there.
#
# This notebook finds both heads from their attention scores, looks at their patterns on
# `BOS + r + r`, ablates them and watches the loss on the second copy, and checks that the
# weights compose more than random matrices of the same shapes would.

# %%
import pandas as pd
import plotly.express as px
import plotly.io as pio
import torch

from dashboards.plots import attention_heatmaps, composition_heatmap, head_scores_heatmap
from interp import HeadAblation, ablate
from interp import attention_pattern_frame, composition_scores, copying_scores, head_scores
from interp import LossAt
from interp import head_sweep
from model import MiniGPT
from model.training.data import repeated_pair_batch

pio.renderers.default = "plotly_mimetype"

# %%
model = MiniGPT.from_pretrained("induction-2l")
print(model.cfg)
print("trained with:", model.provenance["command"], "|", model.provenance["steps"], "steps")

# %% [markdown]
# ## The test input: `BOS + r + r`
#
# `repeated_pair_batch` draws `r`, 15 random non-special tokens, and repeats it: positions 1-15
# are the first copy, 16-30 the second. Nothing predicts the first copy (the best possible loss is
# ln 61 ≈ 4.11 nats), and nothing predicts the first token of the second copy either; every later
# token of the second copy is predictable by induction. `LossAt(range(17, 31))` is the loss on
# those tokens.

# %%
SEG = 15
tokens = repeated_pair_batch(256, seg_len=SEG, generator=torch.Generator().manual_seed(0))
first_copy, second_copy = LossAt(range(1, SEG + 1)), LossAt(range(SEG + 2, 2 * SEG + 1))
logits = model(tokens)
print("tokens", tuple(tokens.shape))
print(f"loss on the first copy:  {first_copy(logits, tokens).item():.3f} nats (ln 61 = 4.111)")
print(f"loss on the second copy: {second_copy(logits, tokens).item():.3f} nats")

# %% [markdown]
# ## Head scores: which head does what
#
# `head_scores` measures, for every head, the mean attention to the previous token, the current
# token, the first token (BOS), earlier copies of the current token, and the induction target (the
# token after an earlier copy), plus the entropy of its pattern; `head_class` names the head by the first
# score past its threshold.

# %%
scores = head_scores(model, tokens)
scores

# %%
head_scores_heatmap(scores).show()

# %% [markdown]
# The induction head also scores high on `first_token`: on the first copy there is nothing to copy,
# so it parks its attention on `<bos>` (an attention sink), and the scores average over both copies.

# %%
prev_head = scores.loc[scores.previous_token.idxmax()]
induction_head = scores.loc[scores.induction.idxmax()]
print(f"previous-token head: {prev_head.component} (score {prev_head.previous_token:.2f})")
print(f"induction head:      {induction_head.component} (score {induction_head.induction:.2f})")
PREV = (int(prev_head["layer"]), int(prev_head["head"]))
INDUCTION = (int(induction_head["layer"]), int(induction_head["head"]))
assert PREV[0] == 0 and INDUCTION[0] == 1, (
    "expected the previous-token head in layer 0 and the induction head in layer 1"
)

# %% [markdown]
# ## Their attention patterns on `BOS + r + r`
#
# The previous-token head is a line just below the diagonal. The induction head, on the second copy,
# attends to the key 14 positions back (`SEG - 1`): the token *after* the earlier copy of the
# current token, a stripe parallel to the diagonal.

# %%
_, cache = model.run_with_cache(tokens[:1], names_filter=lambda name: name.endswith("hook_pattern"))
token_strs = model.to_str_tokens(tokens[0])
patterns = pd.concat(
    [
        attention_pattern_frame(model, tokens[:1], cache, layer=layer, head=head).assign(layer=layer, head=head)
        for layer, head in (PREV, INDUCTION)
    ]
)
attention_heatmaps(
    patterns, token_strs, row="head", title="BOS + r + r: previous-token head (left), induction head (right)"
).show()

# %%
stripe = patterns[
    (patterns.layer == INDUCTION[0]) & (patterns.q_pos > SEG + 1) & (patterns.k_pos == patterns.q_pos - SEG + 1)
]
print(f"induction head, mean attention to the token after the earlier copy: {stripe.weight.mean():.3f}")

# %% [markdown]
# ## Ablate them
#
# `ablate` runs the model with the named heads ablated (their `z`, so their write, replaced);
# `zero` sets it to 0, `mean` to its mean over a reference batch. If the two heads are the
# induction circuit, knocking out either one should send the second-copy loss up towards the
# first-copy loss, while the first copy (which nothing predicts) hardly changes.

# %%
reference = repeated_pair_batch(256, seg_len=SEG, generator=torch.Generator().manual_seed(1))
rows = []
for name, heads in [
    ("none", []),
    ("previous-token head", [PREV]),
    ("induction head", [INDUCTION]),
    ("both", [PREV, INDUCTION]),
]:
    for method in ("zero", "mean"):
        result = ablate(model, tokens, heads=heads, method=method, reference=reference)
        rows.append(
            {
                "ablated": name,
                "method": method,
                "first copy": result.metric(first_copy),
                "second copy": result.metric(second_copy),
            }
        )
ablations = pd.DataFrame(rows)
ablations.round(3)

# %%
print(ablate(model, tokens, HeadAblation(*INDUCTION, method="mean"), reference=reference))

# %% [markdown]
# Per position (mean over the batch): the clean model's loss drops as soon as the second copy
# starts; with the induction head ablated it stays up.

# %%
per_position = pd.concat(
    [
        pd.DataFrame(
            {
                "position": range(1, tokens.shape[1]),
                "loss": ablate(model, tokens, heads=heads, method="mean", reference=reference).loss_per_token.mean(0),
                "ablated": name,
            }
        )
        for name, heads in [("none", []), ("previous-token head", [PREV]), ("induction head", [INDUCTION])]
    ]
)
fig = px.line(
    per_position,
    x="position",
    y="loss",
    color="ablated",
    markers=True,
    title="Loss of predicting the token at each position of BOS + r + r (mean ablation)",
)
fig.add_vline(x=SEG + 0.5, line_dash="dot")
fig.show()

# %% [markdown]
# `head_sweep` does the same for every head at once, batched (one forward for the clean pass and
# one stacked pass per layer instead of one forward per head):

# %%
head_sweep(model, tokens, method="mean", metric=second_copy, reference=reference).round(3)

# %% [markdown]
# ## Composition scores
#
# Elhage et al. (2021) measure how much a later head reads what an earlier head writes, from the
# weights alone: `||W_OV W_QK|| / (||W_OV|| ||W_QK||)` (Q-composition), the same with `W_QK^T` (K)
# or the later head's `W_OV` (V). `baseline` is the same score for random Gaussian matrices of the
# same shapes. The induction circuit predicts that **K-composition** from the previous-token head
# into the induction head stands out above that baseline (the induction head's keys read what the
# previous-token head wrote), while Q- and V-composition need not.

# %%
composition = composition_scores(model)
composition.round(3)

# %%
composition_heatmap(composition).show()

# %%
k_comp = composition[
    (composition.composition == "K")
    & (composition.src_layer == PREV[0])
    & (composition.src_head == PREV[1])
    & (composition.dst_layer == INDUCTION[0])
    & (composition.dst_head == INDUCTION[1])
].iloc[0]
print(
    f"K-composition {prev_head.component} -> {induction_head.component}: {k_comp.score:.3f}"
    f" vs random baseline {k_comp.baseline:.3f} ({k_comp.ratio:.1f}x)"
)

# %% [markdown]
# Finally, the induction head's full OV matrix should *copy*: attending to token `t` should raise the
# logit of `t` itself. `copying_scores` is the fraction of tokens for which that is the top logit
# (chance is 1/64).

# %%
copying_scores(model).round(3)
