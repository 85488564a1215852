"""Page "Model card": how the checkpoint was trained, its loss curve, and its final evaluation with what it means."""

import math

import streamlit as st

from dashboards import analyses, plots, state

sel = state.selection()
model, made = sel.model, sel.model.provenance
st.title("Model card")
README_SECTIONS = ["Shipped models", "The dashboard", "Training dynamics"]

if not made:
    st.info(f"{sel.label!r} records no training (no provenance in its JSON): nothing to show but its config.")
else:
    if made.get("command"):
        st.markdown(f"**Trained by** `{made['command']}`")
    facts = [f"{made[k]:,} steps" if k == "steps" else str(made[k]) for k in ("steps", "date", "data") if made.get(k)]
    if isinstance(made.get("seconds"), int | float):
        facts.append(f"{made['seconds'] / 60:.0f} minutes")
    st.caption(" · ".join(facts))
    history = analyses.model.history(sel.ref)
    evals = analyses.model.final_eval(sel.ref)
    unit = str(made.get("loss_unit", "nats")).split(" (")[0]  # "nats per token (per character for text)"
    if len(history):
        record = dict(zip(evals["field"], evals["value"], strict=True))
        references = {"uniform guess (ln d_vocab)": math.log(model.cfg.d_vocab)}
        if "bigram_val_nats_per_char" in record:
            references["bigram model"] = float(record["bigram_val_nats_per_char"])
        st.plotly_chart(plots.training_history_figure(history, unit=unit, references=references), key="card_loss")
    else:
        st.info("This checkpoint records no training history, so there is no loss curve.")
    st.subheader("Final evaluation")
    if len(evals):
        st.dataframe(
            evals,
            hide_index=True,
            key="card_eval",
            column_config={"meaning": st.column_config.TextColumn(width="large")},
        )
    else:
        st.info("This checkpoint records no final evaluation.")
    for sample in (made.get("final_eval") or {}).get("samples", []):
        st.code(sample["text"], language=None, wrap_lines=True)
    if made.get("notes"):
        st.subheader("Notes")
        st.markdown(made["notes"])

st.subheader("In the README")
for title in README_SECTIONS:
    text = analyses.model.readme_section(title)
    if text is not None:
        with st.expander(f"README.md § {title}"):
            st.markdown(text)
