"""Compare two runs: paired differences with confidence intervals, and the images where they differ most."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cached, sidebar, widgets
from segcore import runs, zoo
from segcore.app import browse, comparison, figures, leaderboard
from segcore.errors import SegcoreError
from segcore.runs import health as run_health

st.title("Compare two runs")
chosen = sidebar.selected() or sidebar.found()
# Only the splits on which two selected runs were evaluated can be compared.
evaluations = [e for e in leaderboard.evaluation_names(chosen)
               if sum(e in run_health.usable_evals(r) for r in chosen) >= 2]
if not evaluations:
    for note in run_health.left_out(chosen, runs.eval_part()):
        st.warning(note)
    st.info("Select at least two runs evaluated on the same dataset split in the sidebar.")
    st.stop()
evaluation = st.selectbox("Dataset and split", evaluations, key="compare_evaluation")
for note in run_health.left_out(chosen, runs.eval_part(evaluation)):
    st.warning(note)
display = runs.display_names(sidebar.found())
candidates = {r["path"]: display[r["path"]] for r in chosen if evaluation in run_health.usable_evals(r)}
columns = st.columns(2)
paths = list(candidates)
# open on a comparison already made, where there is one (the demo zoo ships five)
default_a, default_b = (runs.compared_pairs([r for r in chosen if r["path"] in candidates], evaluation)
                        or [(paths[0], paths[1])])[0]
run_a = columns[0].selectbox("Run A", paths, index=paths.index(default_a), format_func=candidates.get, key="compare_a")
run_b = columns[1].selectbox("Run B", paths, index=paths.index(default_b), format_func=candidates.get, key="compare_b")
if run_a == run_b:
    st.info("Pick two different runs.")
    st.stop()

folder_a, folder_b = (runs.eval_folders(p)[evaluation] for p in (run_a, run_b))
source = runs.dataset_source(folder_b)
made = comparison.existing(run_a, next(r for r in chosen if r["path"] == run_b), evaluation)
if made.damage:  # made again with the button below, which replaces it
    st.warning(" ".join(made.damage))
path = made.path
if not made.current:
    st.caption("Not compared yet on this split (or the evaluations are newer than the comparison).")
    if st.button("Compare (1000 paired bootstrap resamples)", key="compare_button"):
        from segcore.evaluation.compare import compare_evaluated

        with st.spinner("Resampling images…"):
            try:
                path = compare_evaluated(run_a, run_b, evaluation, progress=False)
            except SegcoreError as error:
                st.error(str(error))
                st.stop()
    else:
        st.stop()

compared = runs.read_comparison(path)
st.plotly_chart(figures.comparison_intervals(compared), width="stretch")
st.dataframe(pd.DataFrame(comparison.difference_rows(compared)), hide_index=True, width="stretch")
st.caption(f"Paired bootstrap over the {evaluation} images, {comparison.resampling(compared)}: both runs are "
           "resampled with the same images. An interval that excludes 0 (red) is a difference unlikely to come from "
           "which images happen to be in the split.")
# two variants of a zoo: would another training seed repeat the difference? (both intervals must agree)
variant_a, variant_b = zoo.variant_of(run_a), zoo.variant_of(run_b)
if variant_a is not None and variant_b is not None and variant_a[0] == variant_b[0] and variant_a[1] != variant_b[1]:
    try:
        st.markdown(zoo.seed_sentence(variant_a[0], variant_a[1], variant_b[1], source.split))
    except (SegcoreError, KeyError, ValueError) as error:
        st.warning(f"{variant_a[0]} cannot be read for its seeds ({error}); build the zoo again with make zoo.")

st.subheader("Where they differ most")
most_different = comparison.most_different(compared)
metric = st.selectbox("Per-image metric", list(most_different), key="compare_metric")
differing = pd.DataFrame(most_different.get(metric) or [])
st.dataframe(differing, hide_index=True, width="stretch")
if not differing.empty:
    image_id = st.selectbox("Image", differing["image_id"].tolist(), key="compare_image",
                            format_func=lambda i: f"{i}: {differing.set_index('image_id').loc[i, 'file_name']}")
    threshold = st.slider("Score threshold", 0.0, 1.0, 0.5, 0.05, key="compare_threshold")
    coco_gt = cached.ground_truth(source)
    pictures = st.columns(3)
    for column, (title, folder) in zip(pictures, (("Ground truth", None), ("A: " + candidates[run_a], folder_a),
                                                  ("B: " + candidates[run_b], folder_b))):
        view = browse.image_view(coco_gt, runs.dataset_source(folder or folder_b), int(image_id),
                                 cached.predictions(str(folder or folder_b)),
                                 cached.per_instance(str(folder or folder_b)),
                                 score_threshold=threshold)
        canvas = view.image if view.image is not None else browse.blank_canvas(view.size)
        if folder is None:
            widgets.outcome_picture(column, canvas, view.gt_masks, ["ground_truth"] * len(view.gt_outcomes),
                                    view.gt_classes, caption=title)
        else:
            widgets.outcome_picture(column, canvas, view.pred_masks, view.pred_outcomes, view.pred_labels,
                                    caption=title)
    st.caption("Green: matched at IoU 0.5; red: a false positive (its TIDE error type is written on it).")
