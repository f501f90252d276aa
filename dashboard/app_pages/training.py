"""Training curves of the selected runs: validation metrics against iterations and wall-clock minutes (the
selected checkpoint marked), the loss and each of its terms, learning rate and throughput."""

from __future__ import annotations

import streamlit as st

from dashboard import cached, sidebar
from segcore import runs
from segcore.app import figures
from segcore.runs import health as run_health

st.title("Training")
histories, validations, selected_at = {}, {}, {}
display = runs.display_names(sidebar.found())
selected = sidebar.selected()
# a run.json that cannot be read is named once, not once for each of its files
for note in dict.fromkeys(n for name in (runs.HISTORY, runs.VALIDATION) for n in run_health.left_out(selected, name)):
    st.warning(note)
for manifest in selected:
    label = display[manifest["path"]]
    if not run_health.damage_in(manifest, runs.HISTORY):
        history = cached.history(manifest["path"])
        if not history.empty:
            histories[label] = history
    if not run_health.damage_in(manifest, runs.VALIDATION):
        validation = cached.validation(manifest["path"])
        if not validation.empty:
            validations[label] = validation
            selected_at[label] = runs.selected_iteration(manifest)
if not histories and not validations:
    st.info("None of the selected runs has a training history (imported results have none). Pick trained runs in "
            "the sidebar.")
    st.stop()

if validations:
    st.subheader("Validation")
    st.caption("Each validation scores the run on its validation images (the count is in validation.csv); the star "
               "marks the validation whose weights are the run's checkpoint.pt.")
    metric = st.radio("Metric", list(figures.VALIDATION_METRICS), horizontal=True, key="training_val_metric")
    columns = st.columns(2)
    for column, axis in zip(columns, figures.VALIDATION_AXES):
        column.plotly_chart(figures.validation_curves(validations, metric, axis, selected_at), width="stretch")

if histories:
    st.subheader("Losses and throughput")
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
