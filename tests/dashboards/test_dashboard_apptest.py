"""The dashboard, page by page, through streamlit.testing.v1.AppTest: widgets changed, no exception, right elements."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import APP, errors, figure_array, open_page
from hf_folders import gpt2_folder
from streamlit.testing.v1 import AppTest

from dashboards import plots, state
from model import MiniGPT, ModelConfig

LOCKED = ModelConfig()  # minigpt-text is the locked config
pytestmark = pytest.mark.usefixtures("restore_torch_threads")


def charts(at: AppTest) -> list[dict]:
    """The plotly figures on the page, as the JSON the browser receives."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    return [fig["layout"].get("title", {}).get("text", "") for fig in charts(at)]


def assert_clean(at: AppTest, n_charts: int) -> None:
    """No exception element and at least ``n_charts`` plots."""
    assert not at.exception, f"the page raised: {at.exception[0].message if at.exception else ''}"
    found = len(at.get("plotly_chart"))
    assert found >= n_charts, f"expected at least {n_charts} plots, found {found}; did an analysis fail? {errors(at)}"


def set_prompt(at: AppTest, text: str) -> AppTest:
    return at.text_area(key="prompt").input(text).run()


def test_prediction_page_controls_change_the_distribution():
    """Model page opens on minigpt-text; temperature 0 is greedy, top-k=3 keeps three tokens; generation runs."""
    at = open_page()
    assert_clean(at, 2)
    assert at.sidebar.selectbox(key="checkpoint_choice").value == "minigpt-text", "the app must open on minigpt-text"
    assert at.text_area(key="prompt").value == state.DEFAULT_PROMPT
    at.slider(key="pred_temperature").set_value(0.0).run()
    sampled = charts(at)[1]["data"][2]["y"]
    assert sampled[0] == 1.0 and sum(sampled[1:]) == 0.0, f"temperature 0 must be greedy, got {sampled[:4]}"
    at.slider(key="pred_temperature").set_value(1.0).run()
    at.number_input(key="pred_top_k").set_value(3).run()
    sampled = charts(at)[1]["data"][2]["y"]
    assert sum(p > 0 for p in sampled) == 3, f"top-k=3 must leave 3 tokens with mass, got {sampled[:5]}"
    assert abs(sum(sampled) - 1) < 1e-5, "the sampling distribution must still sum to 1 after top-k"
    at.button(key="gen_button").click().run()
    assert_clean(at, 2)
    text = at.code[0].value
    assert text.startswith(state.DEFAULT_PROMPT) and len(text) > len(state.DEFAULT_PROMPT), f"no continuation: {text!r}"


def test_attention_page_compares_one_head_across_blocks():
    """Attention page: the head-h-in-every-block view follows the picker; no blocks is explained; scores per head."""
    at = open_page("attention")
    assert_clean(at, 3)
    at.selectbox(key="attn_compare_head").set_value(2).run()
    compare = charts(at)[0]
    assert compare["layout"]["title"]["text"].startswith("Head 2"), "the comparison must follow the head picker"
    assert len(compare["data"]) == LOCKED.n_layers, "one heatmap per block for the chosen head"
    assert "query" in compare["data"][0]["hovertemplate"] and "key" in compare["data"][0]["hovertemplate"]
    at.multiselect(key="attn_grid_layers").set_value([]).run()
    assert any("Choose at least one block" in i.value for i in at.info), "an empty block choice must be explained"
    assert len(at.dataframe[0].value) == LOCKED.n_layers * LOCKED.n_heads, "the head-score table needs one row per head"


def test_residual_page_shows_writes_and_lens():
    """Residual page: one chart, two panels on one shared position axis (one hover reads both): a component x
    position heatmap of write norms (not stacked) above the logit lens, which has one row per layer boundary."""
    at = open_page("residual")
    assert_clean(at, 1)
    at.slider(key="lens_k").set_value(3).run()
    (chart,) = charts(at)
    writes, lens = chart["data"]
    assert [t["type"] for t in chart["data"]] == ["heatmap", "heatmap"], "norms do not add: a heatmap, not stacked bars"
    assert (writes["xaxis"], writes["yaxis"], lens["xaxis"], lens["yaxis"]) == ("x", "y", "x", "y2"), "axes not shared"
    assert chart["layout"]["hovermode"] == "x" and chart["layout"]["hoversubplots"] == "axis", "hover not linked"
    names = chart["layout"]["yaxis"]["ticktext"]
    assert {"embed", "pos_embed", "L0H0", "L1.mlp"} <= set(names), f"components missing from the heatmap rows: {names}"
    assert figure_array(writes["z"]).shape == (len(names), len(state.DEFAULT_PROMPT) + 1), "component x position"
    assert len(chart["layout"]["yaxis2"]["ticktext"]) == 3, "the locked config has 3 layer boundaries for the lens"
    assert lens["customdata"][0][-1][1].split("top: ")[1].count(",") == 2, "the hover must list the top-3 guesses"


def test_dla_page_total_matches_the_logit_difference():
    """DLA page: with target and contrast, the title's total equals logit[target] - logit[contrast] of the model."""
    at = open_page("logit_attribution")
    assert_clean(at, 2)
    at.text_input(key="dla_target").input("e").run()
    at.text_input(key="dla_contrast").input("a").run()
    assert_clean(at, 2)
    total = float(re.search(r"= (-?[0-9.]+)", titles(at)[0]).group(1))
    model = MiniGPT.from_pretrained("minigpt-text")
    with torch.no_grad():
        logits = model(model.to_tokens(state.DEFAULT_PROMPT))[0, -1]
    e, a = model.tokenizer.encode("ea")
    assert abs(total - (logits[e] - logits[a]).item()) < 2e-3, "the DLA bars must sum to the logit difference"
    assert at.get("download_button"), "the CSV download button is missing"
    at.text_input(key="dla_target").input("ab").run()
    assert not at.exception and any("one character" in e for e in errors(at)), (
        "a 2-character target needs a clear error"
    )


def test_ablation_page_ablates_sweeps_and_patches():
    """Ablation page: ablating a head changes the loss, a bad neuron shows an error, sweep and patching still draw."""
    at = open_page("ablation")
    assert_clean(at, 3)
    at.multiselect(key="abl_heads").set_value(["L0H1"]).run()
    at.selectbox(key="abl_method").set_value("mean").run()
    assert_clean(at, 3)
    assert any("mean-ablate head L0H1" in m.value for m in at.markdown), "the ablation must say what it did"
    clean, ablated = (float(m.value) for m in at.metric)
    assert clean != ablated, "ablating L0H1 left the loss unchanged: were the hooks applied?"
    at.text_input(key="abl_neurons").input("7.3").run()
    assert not at.exception and any("out of range" in e for e in errors(at)), "a neuron in layer 7 needs a clear error"
    assert len(at.get("plotly_chart")) >= 2, "the sweep and patching sections must keep working after a bad neuron"
    at.text_input(key="abl_neurons").input("").run()
    at.selectbox(key="patch_grid").set_value("heads").run()
    assert_clean(at, 3)
    assert titles(at)[-1].startswith("Patching heads"), "the patching grid must follow the picker"
    at.text_input(key="patch_corrupted").input("too short").run()
    assert any("patching needs the same length" in e for e in errors(at)), "prompts of different lengths need an error"


def test_qk_ov_page_shows_the_chosen_head():
    """QK / OV page: composition heatmap with Q/K/V panels; the OV view follows layer, head and kind."""
    at = open_page("qk_ov")
    assert_clean(at, 2)
    assert len(charts(at)[0]["data"]) == 3, "one composition panel per kind (Q, K, V)"
    at.selectbox(key="qk_ov_layer").set_value(1).run()
    at.selectbox(key="qk_ov_head").set_value(2).run()
    at.radio(key="qk_ov_choice").set_value("OV").run()
    assert_clean(at, 2)
    assert titles(at)[1].startswith("Full OV matrix of L1H2")
    ov = charts(at)[1]
    assert figure_array(ov["data"][0]["z"]).shape == (61, 61), "without the specials the OV circuit is 61 x 61"
    assert ov["layout"]["yaxis"]["scaleanchor"] == "x", "circuit cells must be square"
    z = figure_array(ov["data"][0]["z"])
    assert ov["data"][0]["zmax"] == pytest.approx(max(abs(np.percentile(z, 1)), abs(np.percentile(z, 99))), rel=1e-4)
    at.checkbox(key="qk_ov_specials").check().run()
    assert figure_array(charts(at)[1]["data"][0]["z"]).shape == (64, 64), "with the specials: d_vocab x d_vocab"


def test_discovery_page_scores_thresholds_and_judges_the_circuit():
    """Circuit discovery page: edges scored on the sidebar's prompt, the slider changes what is drawn and its
    faithfulness; on the planted induction model the known circuit is found and its faithfulness is 1."""
    at = open_page("discovery")
    assert_clean(at, 1)
    shown_before = at.metric[0].value
    at.slider(key="disc_share").set_value(0.5).run()
    assert_clean(at, 1)
    assert at.metric[0].value != shown_before, "the threshold slider must change the edges shown"
    at.selectbox(key="disc_method").set_value("eap").run()
    assert_clean(at, 1)
    at.selectbox(key="disc_source").set_value("planted-induction").run()
    at.selectbox(key="disc_method").set_value("exact").run()
    at.slider(key="disc_share").set_value(0.1).run()
    assert_clean(at, 1)
    shown, faithful = at.metric[0].value, float(at.metric[1].value)
    print(f"planted induction, exact, 10% of the largest: {shown} edges, faithfulness {faithful:.3f}")
    assert shown.startswith("5 of") and faithful > 0.99
    names = [trace.get("name") for trace in charts(at)[0]["data"]]
    assert "known, not shown" not in names, "every known edge is drawn"
    at.selectbox(key="disc_source").set_value("the sidebar's model and prompt").run()
    at.text_input(key="disc_corrupted").input("x").run()
    assert any("patching needs the same length" in e for e in errors(at)), "prompts of different lengths need an error"


def test_flow_page_draws_the_routes_and_checks_an_edge_causally():
    """Information flow on induction-2l's showcase (the second copy): the routes to the explained prediction are
    drawn, the threshold changes them, and the causal check of the induction head's read shows the exact change
    that interp.patch_flow_edge computes alone, beside attribution's prediction."""
    from interp import information_flow, patch_flow_edge

    at = open_page()
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    at.switch_page("views/flow.py").run()
    assert_clean(at, 3)
    graph = charts(at)[0]
    assert "L1H0" in [trace.get("name") for trace in graph["data"]], "the induction head's reads are drawn"
    n_edges = len(at.selectbox(key="flow_edge").options)
    at.slider(key="flow_threshold").set_value(0.01).run()
    assert_clean(at, 3)
    assert len(at.selectbox(key="flow_edge").options) > n_edges, "a lower threshold keeps more edges"
    sel = at.session_state["selection"]
    pos = sel.position
    flow = information_flow(sel.model, torch.tensor([sel.token_ids]))
    read = flow[(flow.component == "L1H0") & (flow.downstream_pos == pos)].nlargest(1, "importance")
    key = ("L1H0", int(read.upstream_pos.item()), pos)
    at.selectbox(key="flow_edge").set_value(key).run()
    source = key[1]  # by default the letter the induction head reads is corrupted (position 0 is <bos>)
    corrupted = sel.prompt[: source - 1] + state.corrupt_at(sel.prompt[source - 1], 0) + sel.prompt[source:]
    caption = f"Clean: `{sel.prompt}` · corrupted: `{corrupted}`"
    assert corrupted != sel.prompt and any(c.value == caption for c in at.caption), "the default corrupts the read"
    at.button(key="flow_patch").click().run()
    assert_clean(at, 3)
    shown = {m.label: float(m.value) for m in at.metric}
    expected = patch_flow_edge(sel.model, torch.tensor([sel.token_ids]), corrupted, read, position=pos)
    print(f"\ninduction-2l flow page: L1H0 read {key[1]} -> {pos}: exact change {expected.change:+.3f}, "
          f"attribution predicted {expected.predicted_change:+.3f}")  # fmt: skip
    assert shown["Exact change when patched"] == pytest.approx(expected.change, abs=1e-3)
    assert shown["Attribution's prediction"] == pytest.approx(expected.predicted_change, abs=1e-3)
    assert expected.change < -1, "the read letter carries the prediction"
    assert any(c.value.startswith("Direct logit attribution of this part") for c in at.caption), "the edge's DLA"


def test_flow_page_reads_out_the_selected_state():
    """A node of the flow graph: by default the explained final state, whose read-out is the model's own prediction;
    picking another node shows what that state predicts (interp.state_readout computed alone) and the parts that
    built it, most important first (the rows of interp.information_flow into it)."""
    from interp import flow_stages, information_flow, state_readout

    at = open_page()
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    at.switch_page("views/flow.py").run()
    sel = at.session_state["selection"]
    tokens, pos = torch.tensor([sel.token_ids]), sel.position
    last = len(flow_stages(sel.model)) - 1
    assert at.selectbox(key="flow_state").value == (last, pos), "the explained final state is selected first"
    with torch.no_grad():
        guess = sel.model.to_str_tokens([int(sel.model(tokens)[0, pos].argmax())])[0]
    readout = charts(at)[1]["data"][0]
    assert readout["y"][-1].strip() == guess, f"the final state predicts the model's top guess {guess!r}"
    states = at.selectbox(key="flow_state").options
    assert len(states) > 2 and all("at" in s for s in states), states
    node = (1, pos)  # induction-2l (attention-only): stage 1 is layer 1's input, where layer 0's heads wrote
    at.slider(key="flow_threshold").set_value(0.0).run()  # every state below the explained one is a node
    at.selectbox(key="flow_state").set_value(node).run()
    assert_clean(at, 4)
    expected = state_readout(sel.model, tokens, *node).head(8)
    shown = charts(at)[1]["data"][0]
    assert [t.strip() for t in shown["y"][::-1]] == [plots.display_token(t) for t in expected.target_str]
    np.testing.assert_allclose(figure_array(shown["x"])[::-1], expected.target_prob, atol=1e-6)
    flow = information_flow(sel.model, tokens)
    into = flow[(flow.downstream_stage == 1) & (flow.downstream_pos == pos)].nlargest(10, "importance")
    table = at.dataframe[0].value
    assert table.upstream_pos.tolist() == into.upstream_pos.tolist(), "the parts into the state, most important first"
    np.testing.assert_allclose(table.importance, into.importance)
    assert set(table.component) <= {"L0H0", "L0H1", "L0H2", "L0H3", "L0.resid_pre"}, set(table.component)
    at.selectbox(key="flow_state").set_value((0, pos)).run()
    assert any("nothing flows into this state" in c.value for c in at.caption), "the embeddings have no inputs"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("", "empty"), ("naïve", "'ï' at position 2"), ("x" * 40, "at most 31")],
    ids=["empty", "unknown-char", "too-long"],
)
def test_bad_prompt_shows_a_reason_and_other_pages_keep_working(prompt, expected):
    """A bad prompt gives st.error with the reason on prompt pages; the model and circuits pages still draw."""
    at = open_page("attention")
    set_prompt(at, prompt)
    assert not at.exception, "a bad prompt must never raise"
    assert any(expected in e for e in errors(at)), f"expected an error mentioning {expected!r}, got {errors(at)}"
    assert len(at.get("plotly_chart")) == 0, "no attention plot can be drawn for a bad prompt"
    at.switch_page("views/qk_ov.py").run()
    assert_clean(at, 2)
    at.switch_page("views/prediction.py").run()
    assert_clean(at, 1)  # config and parameter inventory need no prompt


def test_bad_checkpoint_path_falls_back_with_an_error(tmp_path):
    """A missing, misnamed or corrupt checkpoint path shows why and keeps the default model running."""
    garbage = tmp_path / "broken.safetensors"
    garbage.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    at = open_page("attention")
    at.sidebar.selectbox(key="checkpoint_choice").set_value("a .safetensors path").run()
    for path, reason in [
        (str(tmp_path / "missing.safetensors"), "no file"),
        (str(Path(APP)), "does not end in .safetensors"),
        (str(garbage), "Could not load"),
    ]:
        at.sidebar.text_input(key="checkpoint_path").input(path).run()
        assert not at.exception, f"loading {path} raised"
        assert any(reason in e for e in errors(at)), f"expected {reason!r} for {path}, got {errors(at)}"
        assert_clean(at, 3)


def test_induction_checkpoint_heads_are_classified():
    """induction-2l on a repeated segment: the table finds a previous-token head (L0) and an induction head (L1)."""
    at = open_page("attention")
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    set_prompt(at, "qzxjvkwpbmgfhty" * 2)
    assert_clean(at, 2)  # one head per block: no repeated "every head" grid
    table = at.dataframe[0].value
    kinds = dict(zip(zip(table["layer"], table["head"], strict=True), table["head_class"], strict=True))
    assert "previous_token" in {k for (layer, _), k in kinds.items() if layer == 0}, (
        f"no L0 previous-token head: {kinds}"
    )
    assert "induction" in {k for (layer, _), k in kinds.items() if layer == 1}, f"no L1 induction head: {kinds}"


PAGES = ["prediction", "attention", "residual", "logit_attribution", "ablation", "qk_ov", "discovery", "flow"]


@pytest.mark.parametrize("kind", ["induction-2l", "random", "post-norm", "gpt2-folder"])
def test_every_page_works_on_other_models(kind, tmp_path):
    """Each page renders without an exception on an attention-only, an untrained, a post-norm model and a Hugging
    Face GPT-2 folder with its BPE tokenizer (opened by path, its prompt read as BPE tokens).

    Post-norm models have no exact DLA: that page must say so with st.error instead of raising.
    """
    at = open_page()
    if kind == "gpt2-folder":
        folder = gpt2_folder(tmp_path / "gpt2")
        at.sidebar.selectbox(key="checkpoint_choice").set_value("a .safetensors path").run()
        at.sidebar.text_input(key="checkpoint_path").input(str(folder)).run()
        set_prompt(at, "The list of names is sorted.")
        assert not errors(at), errors(at)
        chips = at.sidebar.pills(key="token_chips")
        assert any(o.endswith("`␣of`") for o in chips.options), f"the token strip shows BPE tokens: {chips.options}"
    elif kind == "post-norm":
        path = tmp_path / "post.safetensors"
        MiniGPT(LOCKED.replace(norm="post"), seed=0).save_pretrained(str(path))
        at.sidebar.selectbox(key="checkpoint_choice").set_value("a .safetensors path").run()
        at.sidebar.text_input(key="checkpoint_path").input(str(path)).run()
    else:
        at.sidebar.selectbox(key="checkpoint_choice").set_value(kind if kind != "random" else state.RANDOM_LABEL).run()
    assert not errors(at), f"loading {kind} failed: {errors(at)}"
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        if kind == "post-norm" and page in ("logit_attribution", "discovery", "flow"):
            assert not at.exception and any("norm='post'" in e for e in errors(at)), f"post-norm {page} must be refused"
        else:
            assert_clean(at, 1)


def test_check_prompt_reasons():
    """check_prompt returns <bos> + ids, and names the problem for empty, unknown and too-long prompts."""
    model = state.random_model(0)
    assert state.check_prompt(model, "ab") == (model.tokenizer.bos_id, *model.tokenizer.encode("ab"))
    for prompt, reason in [("", "empty"), ("€", "'€' at position 0"), ("a" * 32, "at most 31")]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            state.check_prompt(model, prompt)


def test_features_page_shows_a_card_lists_active_features_and_steers():
    """Features page: a shipped SAE's feature card (contexts, histogram, logit effects), a character of the prompt
    picked lists its active features, and the steering slider changes the next-token distribution."""
    at = open_page("features")
    assert_clean(at, 3)
    assert at.subheader[0].value.startswith("Feature ")
    at.selectbox(key="feat_sae").set_value("minigpt-text-resid-post-1").run()
    at.number_input(key="feat_id").set_value(3).run()
    assert_clean(at, 3)
    assert at.subheader[0].value.startswith("Feature 3:")
    before = [fig for fig in charts(at) if "steered" in fig["layout"].get("title", {}).get("text", "")]
    at.slider(key="feat_steer").set_value(6.0).run()
    assert_clean(at, 3)
    after = [fig for fig in charts(at) if "steered" in fig["layout"].get("title", {}).get("text", "")]
    assert before and after and before[0] != after[0], "the steering slider must change the next-token chart"
    at.pills(key="feat_pos").set_value(2).run()
    assert_clean(at, 3)
    assert at.sidebar.pills(key="token_chips").value == 2, "a character clicked on the page is selected everywhere"
    assert "features are active at position 2 ('h')" in " ".join(c.value for c in at.caption), (
        "the chip clicked is not the position listed: are two chips labelled alike (the prompt has three 'h')?"
    )
    assert len(at.dataframe) >= 1, "the active features of the picked character are listed"


def test_features_page_explains_when_no_sae_fits_the_model():
    at = open_page("features")
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    at.switch_page("views/features.py").run()
    assert not at.exception
    assert any("No shipped sparse autoencoder" in i.value for i in at.info)


def test_switching_model_switches_to_its_default_prompt_unless_typed():
    """induction-2l opens on its repeated segment with the position on the second copy; a typed prompt stays."""
    at = open_page("attention")
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    prompt = at.text_area(key="prompt").value
    half = len(prompt) // 2
    assert prompt == state.repeated_segment(15, seed=0) and prompt[:half] == prompt[half:], f"not a repeat: {prompt!r}"
    assert_clean(at, 2)
    table = at.dataframe[0].value.set_index("component")
    assert table.loc["L1H0", "head_class"] == "induction", f"L1H0 on the default prompt: {table.loc['L1H0'].to_dict()}"
    at.switch_page("views/prediction.py").run()
    picked = at.selectbox(key="pred_pos")
    assert picked.value == 23 and picked.format_func(23).endswith("(showcase)"), picked.format_func(picked.value)
    assert 16 <= state.SHOWCASES["induction-2l"].position <= 30, "the showcase position must be on the second copy"
    at.sidebar.selectbox(key="checkpoint_choice").set_value("minigpt-text").run()
    assert at.text_area(key="prompt").value == state.DEFAULT_PROMPT, "back to the text model: its own prompt"
    set_prompt(at, "my own words")
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    assert at.text_area(key="prompt").value == "my own words", "a typed prompt must survive a model switch"


def test_prompt_without_repeats_says_induction_is_undefined():
    """On a prompt with no repeated token the head table says so, and no head is classed first_token."""
    at = open_page("attention")
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    set_prompt(at, "the jumpy")
    assert_clean(at, 2)
    assert any("No repeated tokens: induction score undefined" in w.value for w in at.warning), [
        w.value for w in at.warning
    ]
    table = at.dataframe[0].value.set_index("component")
    assert table.loc["L1H0", "head_class"] == "undefined", table["head_class"].to_dict()


def test_bad_prompt_error_shows_once_and_the_title_stays():
    """A bad prompt: one error (in the sidebar), the page keeps its title and points there; no Python advice."""
    at = open_page("attention")
    set_prompt(at, "naïve")
    assert [e.value for e in at.sidebar.error] == errors(at) and len(errors(at)) == 1, errors(at)
    assert "unknown=" not in errors(at)[0] and "Replace unknown characters" in errors(at)[0], errors(at)[0]
    assert [t.value for t in at.title] == ["Attention"], "the page title must stay above the message"
    assert any("fix the prompt in the sidebar" in i.value for i in at.info), [i.value for i in at.info]
    at.sidebar.checkbox(key="prompt_replace_unknown").check().run()
    assert_clean(at, 3)
    assert not errors(at) and len(at.session_state["selection"].token_ids) == 6, "ï must be read as <unk>"


def test_a_tab_in_the_prompt_is_named():
    """A tab gets a sidebar warning saying it is read as a space."""
    at = open_page("attention")
    set_prompt(at, "a\tb")
    assert_clean(at, 3)
    assert any("a tab (at position 1)" in w.value for w in at.sidebar.warning), [w.value for w in at.sidebar.warning]


def test_model_card_shows_the_loss_curve_evaluation_notes_and_readme():
    """Model card: the history's loss curve, final_eval with meanings (second-copy loss: the copy is predicted),
    the notes, the command and the README sections; a model without provenance says so."""
    at = open_page("model_card")
    assert_clean(at, 1)
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    assert_clean(at, 1)
    made = MiniGPT.from_pretrained("induction-2l").provenance
    curve = charts(at)[0]
    steps = [row["step"] for row in made["history"]]
    assert figure_array(curve["data"][0]["x"]).tolist() == steps, "not the shipped history"
    table = at.dataframe[0].value.set_index("field")
    assert (
        "0.28 nats" in table.loc["second_copy_loss", "meaning"]
        and "the copy is predicted" in (table.loc["second_copy_loss", "meaning"])
    ), table.loc["second_copy_loss", "meaning"]
    assert "L1H0 is an induction head" in table.loc["induction_score", "meaning"], table.loc["induction_score"]
    text = " ".join(m.value for m in at.markdown)
    assert made["command"] in text and made["notes"][:60] in text, "the command and the notes must be shown"
    assert "README.md § Shipped models" in [e.label for e in at.expander], [e.label for e in at.expander]
    at.sidebar.selectbox(key="checkpoint_choice").set_value(state.RANDOM_LABEL).run()
    assert not at.exception and any("records no training" in i.value for i in at.info), [i.value for i in at.info]


def test_generated_text_survives_other_widgets():
    """The generated continuation stays on the page when another widget reruns it."""
    at = open_page()
    at.button(key="gen_button").click().run()
    text = at.code[0].value
    at.slider(key="pred_temperature").set_value(0.5).run()
    assert at.code and at.code[0].value == text, "the generated text vanished after another widget changed"


def test_config_table_shows_only_fields_that_apply():
    """No d_ff / act on an attention-only model, no ln_eps without LayerNorm, no rotary_base unless rotary."""
    at = open_page()
    fields = set(at.dataframe[0].value["field"])
    assert {"d_ff", "ln_eps", "act"} <= fields and "rotary_base" not in fields, fields
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    fields = set(at.dataframe[0].value["field"])
    assert not fields & {"d_ff", "act", "ln_eps", "rotary_base"} and {"d_model", "norm"} <= fields, fields


def test_dla_table_has_token_strings_no_batch_and_honest_wording():
    """DLA: the table has token strings beside ids, <NA> for what does not apply, no batch column; the target box
    says what empty means; the neuron split's title says it shows the top 40; no LayerNorm wording without one."""
    at = open_page("logit_attribution")
    assert "top guess" in at.text_input(key="dla_target").label, at.text_input(key="dla_target").label
    assert any("LayerNorm's scale frozen" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert "batch" not in table.columns and {"pos_str", "target_str", "contrast_str"} <= set(table.columns)
    assert table["contrast"].isna().all() and table.loc[table["component"] == "embed", "head"].isna().all()
    csv = at.get("download_button")[0].proto.url
    assert csv, "the CSV download must be there"
    at.selectbox(key="dla_per").set_value("neuron").run()
    title = titles(at)[0]
    assert "the 40 largest of" in title and "sum of all contributions" not in title, title
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    assert not any("LayerNorm" in m.value for m in at.markdown), "a model without LayerNorm has no scale to freeze"


def test_one_head_model_has_no_repeated_grid():
    """With one head per block the 'every head' grid would repeat the view above it: a caption says so instead."""
    at = open_page("attention")
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    assert_clean(at, 2)
    assert len(at.get("plotly_chart")) == 2 and any("one head per block" in c.value for c in at.caption)


POSITION_PAGES = {  # page -> key of its position picker
    "attention": "attn_pos",
    "residual": "resid_pos",
    "logit_attribution": "dla_pos",
    "ablation": "abl_pos",
    "prediction": "pred_pos",
}


def outlined(at: AppTest) -> set[float]:
    """The positions outlined on the page's charts (a column's or an attention row's centre)."""
    return {(s["x0"] + s["x1"]) / 2 if s["yref"].endswith("domain") else (s["y0"] + s["y1"]) / 2
            for fig in charts(at) for s in fig["layout"].get("shapes", [])}  # fmt: skip


def test_a_token_chip_selects_that_position_on_every_page():
    """Clicking a sidebar chip moves every page's position picker there, and every chart over positions outlines it."""
    at = open_page("attention")
    chips = at.sidebar.pills(key="token_chips")
    last = len(state.DEFAULT_PROMPT)
    assert chips.value == last and at.selectbox(key="attn_pos").value == last, "the selection starts on the last"
    assert len(chips.options) == last + 1 and chips.options[1] == "1 `t`", chips.options[:3]
    chips.set_value(5).run()
    for page, key in POSITION_PAGES.items():
        at.switch_page(f"views/{page}.py").run()
        assert_clean(at, 1)
        assert at.selectbox(key=key).value == 5, f"{page}'s picker did not follow the chip: did it read the selection?"
        assert at.sidebar.pills(key="token_chips").value == 5, f"the chip lost its selection on {page}"
        if page in ("attention", "residual"):
            assert outlined(at) == {5.0}, f"{page}'s charts must outline position 5, got {outlined(at)}"
        if page == "logit_attribution":
            assert "after position 5 (v)" in titles(at)[0], f"the DLA chart is not at the chip's position: {titles(at)}"


def test_a_pages_position_picker_is_seen_by_the_next_page():
    """A position chosen in one page's picker is the selection: the chips and the next page's picker show it."""
    at = open_page("logit_attribution")
    at.selectbox(key="dla_pos").set_value(3).run()
    assert "after position 3" in titles(at)[0], "the DLA chart must follow its own picker"
    assert at.sidebar.pills(key="token_chips").value == 3, "a page's picker must move the shared selection"
    at.switch_page("views/ablation.py").run()
    assert at.selectbox(key="abl_pos").value == 3, "the next page must show the position chosen on the last one"
    at.selectbox(key="abl_pos").set_value(8).run()
    at.switch_page("views/residual.py").run()
    assert at.selectbox(key="resid_pos").value == 8 and outlined(at) == {8.0}
    at.switch_page("views/prediction.py").run()
    assert at.selectbox(key="pred_pos").value == 8


def test_shortening_the_prompt_clamps_the_selection_and_a_new_model_resets_it():
    """A picked position survives prompt edits, clamped to a shorter prompt; unpicked, it follows the last position;
    a new model starts on its showcase position."""
    at = open_page("residual")
    set_prompt(at, "abcdef")
    assert at.selectbox(key="resid_pos").value == 6, "an unpicked selection follows the prompt's last position"
    at.sidebar.pills(key="token_chips").set_value(4).run()
    set_prompt(at, "abcdefgh")
    assert at.selectbox(key="resid_pos").value == 4, "a picked position survives a longer prompt"
    set_prompt(at, "ab")
    assert_clean(at, 1)
    assert at.selectbox(key="resid_pos").value == 2, "a picked position past a shortened prompt's end is clamped"
    assert at.sidebar.pills(key="token_chips").value == 2 and outlined(at) == {2.0}
    at.switch_page("views/ablation.py").run()
    assert at.selectbox(key="abl_pos").value == 2
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    assert at.text_area(key="prompt").value == "ab", "a typed prompt stays on a model switch"
    assert at.selectbox(key="abl_pos").value == 2, "a new model starts on the last position of a typed prompt"
    showcase = state.SHOWCASES["induction-2l"]
    set_prompt(at, showcase.prompt)
    assert at.selectbox(key="abl_pos").value == showcase.position, "the model's own prompt starts on its showcase"
    at.sidebar.pills(key="token_chips").set_value(3).run()
    at.sidebar.selectbox(key="checkpoint_choice").set_value("minigpt-text").run()
    assert at.selectbox(key="abl_pos").value == len(state.DEFAULT_PROMPT), "a new model resets a picked position"
    at.sidebar.selectbox(key="checkpoint_choice").set_value("induction-2l").run()
    assert at.selectbox(key="abl_pos").value == showcase.position, "and induction-2l starts on its showcase again"


def test_every_script_run_logs_its_server_time(tmp_path, monkeypatch):
    """With MINIGPT_DASHBOARD_TIMINGS set, each script run appends its page and seconds (the browser tests read it)."""
    log = tmp_path / "timings.jsonl"
    monkeypatch.setenv("MINIGPT_DASHBOARD_TIMINGS", str(log))
    at = open_page()
    at.switch_page("views/attention.py").run()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["page"] for line in lines] == ["Model & prediction", "Attention"], f"logged runs: {lines}"
    assert all(0 < line["seconds"] < 600 for line in lines), f"a run's time is not a duration: {lines}"
