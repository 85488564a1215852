# Source of notebooks/08_features.ipynb (cells separated by "# %%"); rebuild with `python notebooks/build.py`.

# %% [markdown]
# # 08 · Features: sparse autoencoders on toy data and on `minigpt-text`
#
# A sparse autoencoder (SAE) rewrites an activation as a sparse, non-negative sum of learned directions
# (its *features*). We first train one on synthetic activations whose features are known by construction
# (the toy models of superposition of Elhage et al. 2022) and check that it finds them; then we train a small
# one on `minigpt-text`'s residual stream, open a few features of the shipped SAE, and steer one.
# From the shell: `minigpt sae train --hook blocks.1.hook_resid_post --d-sae 512 --k 16 --out my-sae`.

# %%
import plotly.io as pio
import torch

from dashboards.plots import activation_histogram_figure, logit_effects_figure
from interp import (
    SAE,
    activation_histogram,
    feature_intervention,
    feature_labels,
    feature_logit_effects,
    generate_steered,
    planted_feature_recovery,
    sae_metrics,
    toy_features,
    top_activations,
    train_sae,
)
from model import MiniGPT
from model.training.data import builtin_corpus, text_batch, text_eval_batches

pio.renderers.default = "plotly_mimetype"
torch.set_num_threads(1)

# %% [markdown]
# ## Planted features
#
# 32 features in 16 dimensions, each active with probability 0.05: more features than dimensions, so they sit
# in superposition. A TopK SAE with 64 latents and k = 2 should recover every planted direction: for each one,
# the best cosine with a learned decoder direction.

# %%
toy = toy_features(n_features=32, d=16, p=0.05, n=20_000, seed=0)
toy_sae = train_sae(toy.activations, 64, architecture="topk", k=2, steps=500, batch_size=256, seed=0, progress=False)
recovery = planted_feature_recovery(toy_sae, toy.directions)
print(f"mean max cosine {recovery.cosine.mean():.4f}, worst {recovery.cosine.min():.4f}")
recovery.head()

# %% [markdown]
# ## A small SAE on minigpt-text
#
# The same call takes `(model, hook_name, tokens)`: the model runs on random windows of the training text and
# streams its activations. A short run; the shipped SAEs trained for 3000 steps.

# %%
model = MiniGPT.from_pretrained("minigpt-text").eval()
data = builtin_corpus(model.tokenizer)
windows = text_batch(data.train, 2048, model.cfg.n_ctx, torch.Generator().manual_seed(0))
small = train_sae((model, "blocks.1.hook_resid_post", windows), 128, k=8, steps=150, batch_size=512, seed=0,
                  progress=False)  # fmt: skip
val = torch.cat(text_eval_batches(data.val, model.cfg.n_ctx, max_windows=128))
sae_metrics(model, val, sae=small).T

# %% [markdown]
# ## Features of the shipped SAE
#
# `minigpt-text-resid-post-1` (512 features, L0 16) loads by name. The labels are derived automatically from
# each feature's top-activating contexts; `«c»` marks the character the feature fires on.

# %%
sae = SAE.from_pretrained("minigpt-text-resid-post-1")
print(sae.provenance["command"])
_, cache = model.run_with_cache(val, names_filter=[sae.cfg.hook_name], return_type=None)
labels = feature_labels(model, val, cache, sae=sae, features=list(range(16)))
labels

# %%
specific = labels[labels.label.str.startswith("on '")]  # a feature that fires on one character
feature = int((specific if len(specific) else labels).feature.iloc[0])
print(feature, labels.set_index("feature").label[feature])
top_activations(model, val, cache, sae=sae, feature=feature, k=8)[["activation", "context"]]

# %%
activation_histogram_figure(activation_histogram(model, val, cache, sae=sae, feature=feature),
                            title=f"Feature {feature}: activations where it fires")  # fmt: skip

# %%
logit_effects_figure(feature_logit_effects(model, sae, feature, k=8), title=f"Feature {feature}: logit effects")

# %% [markdown]
# ## Steering
#
# Adding the feature's decoder direction to the residual stream shifts the next-token distribution toward the
# characters its logit effect promotes; the continuation is sampled with the same seed with and without it.

# %%
prompt = "the value of the "
effect = feature_intervention(model, model.to_tokens(prompt), sae=sae, feature=feature, mode="steer", value=8.0)
print(effect.sort_values("prob_intervened", ascending=False).head(5)[["target_str", "prob_clean", "prob_intervened"]])
plain = generate_steered(model, prompt, sae=sae, feature=feature, value=0.0, max_new_tokens=30, temperature=0.8, seed=0)
steered = generate_steered(
    model, prompt, sae=sae, feature=feature, value=8.0, max_new_tokens=30, temperature=0.8, seed=0
)
print(repr(plain))
print(repr(steered))
