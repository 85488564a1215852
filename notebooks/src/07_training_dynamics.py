# Source of notebooks/07_training_dynamics.ipynb (cells separated by "# %%"); rebuild with `python notebooks/build.py`.

# %% [markdown]
# # 07 · Training dynamics: watch the induction head of `induction-2l` form
#
# Olsson et al. (2022) found that induction heads form in a **phase change**: in a narrow window of training the
# in-context loss drops and the induction score jumps, at the same time. `induction-2l` is shipped with its whole
# training run: snapshots log-spaced over the first 1000 steps, then every 250 steps up to 20 000, each a checkpoint
# with the same validated JSON. Here we measure every snapshot with the analyses of the earlier notebooks, find the
# window where the loss on the repeated half drops fastest, and check what else changes in it.

# %%
import time

import pandas as pd
import plotly.io as pio
import torch

from dashboards.plots import attention_heatmaps, loss_curve_figure, metric_line_figure, step_heatmap
from interp import attention_pattern_frame, crossing, find_phase_changes, training_dynamics
from interp.reports.induction import probe_tokens
from model import MiniGPT, Run

pio.renderers.default = "plotly_mimetype"
torch.set_num_threads(1)

# %% [markdown]
# ## The run
#
# `Run.load` lists the saved steps; `MiniGPT.from_pretrained(name, step=...)` loads any of them (an unknown step is
# an error naming the nearest saved ones).

# %%
run = Run.load("induction-2l")
print(len(run.steps), "saved steps:", run.steps[:8], "...", run.steps[-3:])
try:
    MiniGPT.from_pretrained("induction-2l", step=3100)
except ValueError as err:
    print(err)

# %% [markdown]
# ## Every metric at every step
#
# The probe is `[BOS, r, r]` with `r` 15 random tokens. `training_dynamics` returns one tidy frame: the loss on
# each copy and the in-context learning score (second-copy loss minus first-copy loss), every head score of every
# head, the composition scores of every head pair, each head's DLA and the weight norms.

# %%
start = time.perf_counter()
frame = training_dynamics(run, probe=probe_tokens(64), progress=False)
per = (time.perf_counter() - start) / len(run.steps)
print(f"{len(frame)} rows, {per:.2f} s per snapshot")
frame.head()

# %%
loss_curve_figure(frame, step=3000).show()

# %% [markdown]
# ## The phase change
#
# `find_phase_changes` takes the window where the second-copy loss falls fastest (full width at half maximum of
# its rate, over intervals of at least 1% of the run) and lists every series that moves a large share of its
# range inside it.

# %%
changes = find_phase_changes(frame, "second_copy_loss")
window = (int(changes.start_step[0]), int(changes.end_step[0]))
print(
    "window:",
    window,
    "· induction score of L1H0 crosses 0.5 between steps",
    crossing(frame, "induction", 0.5, component="L1H0"),
)
changes.head(10)

# %%
metric_line_figure(frame, "induction", window, step=window[1]).show()
metric_line_figure(frame, "previous_token", window, step=window[1]).show()
metric_line_figure(frame, "icl_score", window, step=window[1]).show()

# %% [markdown]
# ## Attention before and after
#
# The induction head (layer 1) attends to the token after the earlier copy of the current token once the
# phase change is through: the off-diagonal stripe 15 positions back.

# %%
tokens = probe_tokens(1)
for step in (window[0], window[1]):
    model = MiniGPT.from_pretrained("induction-2l", step=step)
    patterns = [
        attention_pattern_frame(model, tokens, layer=layer, head=0).assign(layer=layer, head=0) for layer in range(2)
    ]
    attention_heatmaps(pd.concat(patterns), model.to_str_tokens(tokens[0].tolist()), title=f"step {step}").show()

# %%
step_heatmap(
    frame, window[1], ["Q_composition", "K_composition", "V_composition"], title=f"Composition at step {window[1]}"
).show()
metric_line_figure(frame, "K_composition", window, step=window[1]).show()
