"""Training curves of the selected runs: the loss and each of its terms, learning rate and throughput."""

from __future__ import annotations

import streamlit as st

from dashboard import cached, sidebar
from segcore import figures, run_health, runs

st.title("Training")
histories = {}
display = runs.display_names(sidebar.found())
selected = sidebar.selected()
for note in run_health.left_out(selected, runs.HISTORY):
    st.warning(note)
for manifest in selected:
    if run_health.damage_in(manifest, runs.HISTORY):
        continue
    history = cached.history(manifest["path"])
    if not history.empty:
        histories[display[manifest["path"]]] = history
if not histories:
    st.info("None of the selected runs has a training history (imported results have none). Pick trained runs in "
            "the sidebar.")
    st.stop()

losses = sorted({c for h in histories.values() for c in h.columns if c.startswith("loss_")})
log_y = st.toggle("Log scale", key="training_log")
st.plotly_chart(figures.training_curves(histories, "loss", log_y=log_y), width="stretch")
terms = st.multiselect("Loss terms", losses, default=losses, key="training_terms")
columns = st.columns(2)
for i, term in enumerate(terms):
    columns[i % 2].plotly_chart(figures.training_curves(histories, term, log_y=log_y), width="stretch")
columns = st.columns(2)
columns[0].plotly_chart(figures.training_curves(histories, "lr", log_y=log_y), width="stretch")
columns[1].plotly_chart(figures.training_curves(histories, "images_per_s"), width="stretch")
