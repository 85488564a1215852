"""dashboards.plots: every figure is valid plotly, shows the numbers it was given, and needs no Streamlit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from conftest import figure_array, make_model, validated

from dashboards import plots
from interp import (
    attention_pattern_frame,
    composition_scores,
    direct_logit_attribution,
    head_scores,
    logit_lens,
    write_norms,
)

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "abcab cab"


@pytest.fixture(scope="module")
def run():
    """A tiny seeded model, its tokens, cache and token symbols."""
    model = make_model()
    tokens = model.to_tokens(PROMPT)
    _, cache = model.run_with_cache(tokens)
    return model, tokens, cache, [model.tokenizer.symbols[i] for i in tokens[0].tolist()]


def test_plots_module_does_not_import_streamlit():
    """plots.py builds figures without Streamlit, so notebooks and tests can use it."""
    code = "import sys, dashboards.plots; assert 'streamlit' not in sys.modules, 'plots.py pulled in streamlit'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_token_chips_name_position_and_token_with_blanks_visible():
    """One chip label per token: its position, then the token as inline code (no Markdown to misread), blanks shown."""
    labels = plots.token_chip_labels(["<bos>", " ", "\n", "*"])
    assert labels == ["0 `<bos>`", "1 `␣`", "2 `⏎`", "3 `*`"], labels


@pytest.mark.parametrize("selected", [None, 0, 3])
def test_every_chart_over_positions_outlines_the_selected_one(run, selected):
    """With ``selected``, each chart over positions outlines that column (attention: that query row, in every
    cell); without it, no outline."""
    model, tokens, cache, symbols = run
    n = len(symbols)
    grid = pd.DataFrame([(a, 0, p, 0.1) for a in range(2) for p in range(n)], columns=["layer", "head", "pos", "v"])
    patterns = pd.concat(
        attention_pattern_frame(model, tokens, cache, layer=layer, head=0).assign(layer=layer, head=0)
        for layer in range(model.cfg.n_layers)
    )
    acts = pd.DataFrame({"pos": list(range(n)), "activation": [1.0] * n})
    columns = [
        plots.write_norms_heatmap(write_norms(model, tokens, cache), symbols, selected=selected),
        plots.logit_lens_heatmap(logit_lens(model, tokens, cache), symbols, selected=selected),
        plots.position_heatmap(grid, "v", symbols, title="t", selected=selected),
        plots.prompt_activation_bar(acts, symbols, 0, selected),
    ]
    for fig in columns:
        shapes = validated(fig).layout.shapes
        assert len(shapes) == (selected is not None), f"{fig.layout.title.text}: {len(shapes)} outlines"
        if selected is not None:
            assert (shapes[0].x0, shapes[0].x1, shapes[0].yref) == (selected - 0.5, selected + 0.5, "y domain")
    rows = validated(plots.attention_heatmaps(patterns, symbols, row="head", selected=selected)).layout.shapes
    assert len(rows) == (0 if selected is None else model.cfg.n_layers), "one outlined query row per cell"
    if selected is not None:
        ids = ["" if c == 0 else str(c + 1) for c in range(model.cfg.n_layers)]  # plotly's axis ids: x, x2, ...
        assert {(s.y0, s.yref, s.xref) for s in rows} == {(selected - 0.5, "y", f"x{i} domain") for i in ids}, (
            "each cell outlines the selected query row on the row's shared query axis"
        )


def test_attention_heatmaps_put_each_head_in_its_cell(run):
    """Each (layer, head) heatmap holds exactly that head's pattern, masked (NaN) above the diagonal."""
    model, tokens, cache, symbols = run
    frame = pd.concat(
        attention_pattern_frame(model, tokens, cache, layer=layer, head=head).assign(layer=layer, head=head)
        for layer in range(model.cfg.n_layers)
        for head in range(model.cfg.n_heads)
    )
    fig = validated(plots.attention_heatmaps(frame, symbols))
    assert len(fig.data) == model.cfg.n_layers * model.cfg.n_heads
    by_axis = {(t.xaxis, t.yaxis): np.asarray(t.z, dtype=float) for t in fig.data}
    z = by_axis[("x6", "y5")]  # row 2 (layer 1), column 2 (head 1) of a 2 x 4 grid; a row shares its query axis
    expected = cache["pattern", 1][0, 1].numpy()
    lower = np.tril_indices(len(symbols))
    np.testing.assert_allclose(z[lower], expected[lower], atol=1e-6, err_msg="heatmap cell shows the wrong head")
    assert np.isnan(z[np.triu_indices(len(symbols), 1)]).all(), "the causal mask must be blank, not 0"
    assert len(set(fig.data[0].x)) == len(symbols), "axis labels must be unique even for repeated tokens"
    assert all(w in fig.data[0].hovertemplate for w in ("query", "key", "weight"))
    labelled = {t.xaxis for t in fig.data if fig.layout[t.xaxis.replace("x", "xaxis")].showticklabels is not False}
    assert labelled == {t.xaxis for t in fig.data if t.yaxis == "y5"}, "key labels under the last row only"
    row = validated(plots.attention_heatmaps(frame[frame["head"] == 0], symbols, row="head"))
    assert len(row.data) == model.cfg.n_layers and {t.yaxis for t in row.data} == {"y"}, "head 0 side by side"


def test_head_heatmap_is_centred_at_zero():
    """A diverging layer x head map is symmetric around 0 and keeps the values in place."""
    df = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "delta": [0.5, -2.0, 1.0, 0.0]})
    fig = validated(plots.head_heatmap(df, "delta", title="t"))
    trace = fig.data[0]
    assert trace.zmid == 0 and trace.zmin == -2.0 and trace.zmax == 2.0, "colours must be centred at 0"
    assert np.asarray(trace.z).tolist() == [[0.5, -2.0], [1.0, 0.0]]
    assert list(trace.text[0]) == ["0.50", "-2.00"], "numbers belong in the cells"


def test_next_token_figure_orders_by_logit(run):
    """Logits, softmax and sampling bars share the same tokens, highest logit first."""
    logits = torch.tensor([1.0, 3.0, 2.0, -1.0])
    dist = pd.DataFrame(
        {
            "target_str": ["a", "b", " ", "d"],
            "logit": logits,
            "target_prob": logits.softmax(-1),
            "sample_prob": [0, 1.0, 0, 0],
        }
    )
    fig = validated(plots.next_token_figure(dist, top_n=3))
    assert list(fig.data[0].x) == ["b", "␣", "a"], "bars must be sorted by logit, blanks visible"
    assert fig.data[1].y == pytest.approx(logits.softmax(-1)[[1, 2, 0]].tolist())


def test_write_norms_heatmap_is_component_by_position(run):
    """One row per component, one column per position; each cell is that write's norm."""
    model, tokens, cache, symbols = run
    norms = write_norms(model, tokens, cache)
    fig = validated(plots.write_norms_heatmap(norms, symbols))
    z = np.asarray(fig.data[0].z, dtype=float)
    assert list(fig.data[0].y) == list(dict.fromkeys(norms["component"])) and z.shape == (
        len(fig.data[0].y),
        len(symbols),
    )
    row = norms[(norms.component == "L0H0") & (norms.pos == 2)].iloc[0]
    assert z[list(fig.data[0].y).index("L0H0"), 2] == pytest.approx(row.norm), "cell is not that component's norm"


def test_head_scores_colourbar_clears_the_entropy_panel(run):
    """The score colourbar sits right of the entropy panel, and a one-head model still gets a full-height figure."""
    model, tokens, cache, _ = run
    fig = validated(plots.head_scores_heatmap(head_scores(model, tokens, cache).head(1)))
    assert fig.data[0].colorbar.x >= fig.layout.xaxis2.domain[1], "the colourbar covers the entropy panel"
    assert fig.layout.height >= 300, "a one-head figure squeezes the colourbar into a stub"


def test_logit_lens_heatmap_shows_target_prob_and_top_k(run):
    """Stage x position colours are the target probabilities; hover lists the top-k guesses."""
    model, tokens, cache, symbols = run
    lens = logit_lens(model, tokens, cache, k=4)
    fig = validated(plots.logit_lens_heatmap(lens, symbols))
    z = np.asarray(fig.data[0].z, dtype=float)
    assert z.shape == (model.cfg.n_layers + 1, len(symbols))
    row = lens[(lens.stage == 1) & (lens.pos == 2)].iloc[0]
    assert z[1, 2] == pytest.approx(row.target_prob)
    assert fig.data[0].customdata[1][2].split("top: ")[1].count(",") == 3, "hover must list k=4 guesses"


def test_dla_bar_colours_by_sign(run):
    """Positive contributions are red, negative blue, one bar per component."""
    model, tokens, cache, _ = run
    df = direct_logit_attribution(model, tokens, cache, per="head")
    here = df[df.pos == 3]
    fig = validated(plots.dla_bar(here, title="t"))
    colours = dict(zip(fig.data[0].x, fig.data[0].marker.color, strict=True))
    for component, value in zip(here.component, here.contribution, strict=True):
        assert colours[component] == ("#d6604d" if value >= 0 else "#4393c3"), f"{component} has the wrong colour"


def test_distributions_compare_keeps_top_tokens_of_both():
    """The before/after chart shows the top tokens of either distribution."""
    dist = pd.DataFrame(
        {"target_str": list("abcd"), "prob_clean": [0.7, 0.2, 0.1, 0.0], "prob_ablated": [0.0, 0.1, 0.1, 0.8]}
    )
    fig = validated(plots.distributions_compare(dist, title="t", top_n=1))
    assert set(fig.data[0].x) == {"a", "d"}, "the top token before and the top token after must both appear"


def test_position_heatmap_labels_heads_and_positions(run):
    """Patching grids by (layer, head, pos) get L{l}H{h} rows and one column per position, centred at 0."""
    _, _, _, symbols = run
    rows = [(a, h, p, (a + h - p) / 10) for a in range(2) for h in range(2) for p in range(len(symbols))]
    df = pd.DataFrame(rows, columns=["layer", "head", "pos", "normalized"])
    fig = validated(plots.position_heatmap(df, "normalized", symbols, title="t"))
    assert list(fig.data[0].y) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    assert np.asarray(fig.data[0].z).shape == (4, len(symbols)) and fig.data[0].zmid == 0


def test_composition_heatmap_has_three_kinds_around_the_baseline(run):
    """Q, K and V panels; colour is score / baseline with 1 (the baseline) in the middle; cells show the score."""
    model = run[0]
    comp = composition_scores(model, n_draws=2)
    fig = validated(plots.composition_heatmap(comp))
    assert len(fig.data) == 3 and fig.layout.coloraxis.cmid == 1.0
    k = comp[comp.composition == "K"]
    assert fig.data[1].text[0][0] == f"{k.score.iloc[0]:.2f}", "the cells must show the composition score"


def test_head_scores_heatmap_labels_kinds(run):
    """Head-score rows name the head and its classification; numbers are in the cells."""
    model, tokens, cache, _ = run
    scores = head_scores(model, tokens, cache)
    fig = validated(plots.head_scores_heatmap(scores))
    assert list(fig.data[0].y) == [f"{c} · {k}" for c, k in zip(scores.component, scores.head_class, strict=True)]
    assert fig.data[0].text[0][0] == f"{scores.previous_token.iloc[0]:.2f}"


def test_qk_ov_and_parameter_figures(run):
    """The circuit map is symmetric around 0; the inventory's title total equals the summed counts."""
    model = run[0]
    matrix = pd.DataFrame([[1.0, -3.0], [0.5, 2.0]], index=["a", " "], columns=["a", " "])
    fig = validated(plots.qk_ov_heatmap(matrix, title="t", row_title="q", col_title="k"))
    bound = max(abs(np.percentile(matrix.to_numpy(), 1)), abs(np.percentile(matrix.to_numpy(), 99)))
    assert (fig.data[0].zmin, fig.data[0].zmax, fig.data[0].zmid) == (-bound, bound, 0.0), "1st/99th percentile"
    assert bound < 3.0 and fig.layout.yaxis.scaleanchor == "x", "robust limits below the extreme; square cells"
    inventory = model.parameter_inventory()
    bar = validated(plots.parameter_bar(inventory))
    assert f"{model.cfg.n_params:,} in all" in bar.layout.title.text, "the inventory total must match n_params"
    assert list(bar.data[0].y) == inventory.tensor.tolist(), "one bar per parameter tensor"
    assert list(bar.data[0].x) == inventory["count"].tolist()


def test_training_history_figure_draws_train_val_and_references():
    """The loss curve: training loss as a line, validation loss only where recorded, one dashed line per reference."""
    from dashboards.plots import training_history_figure

    history = pd.DataFrame(
        {"step": [50, 100, 150], "train_loss": [4.0, 3.0, 2.0], "val_loss": [np.nan, 3.1, np.nan], "lr": [1e-3] * 3}
    )
    fig = training_history_figure(history, unit="nats", references={"uniform": 4.16, "bigram": 2.28})
    fig.to_dict()
    go.Figure(fig)  # validates
    train, val, lr = fig.data
    assert list(train.y) == [4.0, 3.0, 2.0] and list(val.x) == [100] and lr.yaxis == "y2", "curves mixed up"
    assert [s["y0"] for s in fig.layout.shapes] == [4.16, 2.28], "one dashed line per reference"


def test_flow_graph_figure_draws_routes_with_clickable_edges():
    """The flow graph of induction-2l's routes: one line group per head / kind, every edge's midpoint carries its
    row label (what a click returns), and the explained final state is marked."""
    from interp import flow_routes, flow_stages, information_flow
    from model import MiniGPT

    model = MiniGPT.from_pretrained("induction-2l")
    tokens = model.to_tokens("qwertyuiop qwertyuiop")
    routes = flow_routes(information_flow(model, tokens), position=14, threshold=0.05)
    labels = model.to_str_tokens(tokens[0].tolist())
    fig = validated(plots.flow_graph_figure(routes, labels, flow_stages(model), position=14))
    names = {t.name for t in fig.data}
    assert {"L0H0", "L1H0", "residual", "edges", "states"} <= names
    marks = next(t for t in fig.data if t.name == "edges")
    assert sorted(marks.customdata) == sorted(routes.index)
    states = next(t for t in fig.data if t.name == "states")
    red = [(x, y) for x, y, c in zip(states.x, states.y, states.marker.color, strict=True) if c != "#eef3f8"]
    assert red == [(14, len(flow_stages(model)) - 1)]
    row = pd.DataFrame({"k_pos": [0, 1], "k_str": ["<bos>", "a"], "weight": [0.25, 0.75]})
    assert list(validated(plots.attention_row_figure(row, title="t")).data[0].y) == [0.25, 0.75]
    with pytest.raises(TypeError, match="flow_routes"):
        plots.flow_graph_figure(pd.DataFrame({"x": [1]}), labels, flow_stages(model))


@pytest.mark.parametrize("selected", [None, 2])
def test_stacked_residual_panels_share_their_positions(run, selected):
    """The residual page's two panels share one x axis (so one hover reads both), sit one above the other in order,
    keep their outline of the selected position on their own y axis, and keep each heatmap row's label in the hover
    after the rows move onto the shared [0, 1] axis."""
    model, tokens, cache, symbols = run
    norms = plots.write_norms_heatmap(write_norms(model, tokens, cache), symbols, selected=selected)
    lens = plots.logit_lens_heatmap(logit_lens(model, tokens, cache), symbols, selected=selected)
    fig = validated(plots.stack_over_positions([norms, lens], "t"))
    assert {t.xaxis for t in fig.data} == {"x"} and fig.layout.hovermode == "x", "one x axis, hover along it"
    assert [t.yaxis for t in fig.data] == ["y"] * len(norms.data) + ["y2"] * len(lens.data), "panels mixed up"
    upper, lower = fig.layout.yaxis.domain, fig.layout.yaxis2.domain
    assert lower[1] < upper[0] and upper[1] <= 1 and lower[0] >= 0, f"panels overlap: {upper} {lower}"
    assert fig.layout.xaxis.ticktext == lens.layout.xaxis.ticktext and list(fig.data[0].x) == list(norms.data[0].x)
    assert [s.yref for s in fig.layout.shapes] == ([] if selected is None else ["y domain", "y2 domain"])
    for source, stacked in ((norms.data[0], fig.data[0]), (lens.data[0], fig.data[len(norms.data)])):
        rows = list(source.y)
        assert [c[0][0] for c in stacked.customdata] == rows, "each row keeps its label for the hover"
        np.testing.assert_array_equal(figure_array(stacked.z), figure_array(source.z))
        axis = fig.layout[f"yaxis{'' if stacked.yaxis == 'y' else stacked.yaxis[1:]}"]
        assert list(axis.ticktext) == rows and np.allclose(axis.tickvals, stacked.y), "row ticks moved with the rows"
        assert "%{customdata[0]}" in stacked.hovertemplate and "%{y}" not in stacked.hovertemplate
