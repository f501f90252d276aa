"""Leaderboard: every run on one dataset split, ours and imported, with charts and intervals."""

from __future__ import annotations

import streamlit as st

from dashboard import cached, sidebar
from segcore import runs
from segcore.app import figures, folders, leaderboard
from segcore.errors import SegcoreError, os_error_sentence
from segcore.runs import health as run_health

st.title("Leaderboard")
found = sidebar.found()
chosen = sidebar.selected() or found
evaluations = leaderboard.evaluation_names(chosen)
if not evaluations:
    st.info("None of the selected runs has been evaluated yet.")
else:
    if st.session_state.get("evaluation_wanted") in evaluations:  # set by the Evaluate button below
        st.session_state["evaluation"] = st.session_state.pop("evaluation_wanted")
    evaluation = st.selectbox("Dataset and split", evaluations, key="evaluation")
    for note in run_health.left_out(chosen, runs.eval_part(evaluation)):
        st.warning(note)
    table = cached.leaderboard(chosen, evaluation)
    families = sorted(table["family"].unique())
    # one filter per split: another split's families must not hide this one's (a kept value would)
    shown_families = st.multiselect("Model families", families, default=families, key=f"families_{evaluation}")
    table = table[table["family"].isin(shown_families)]
    st.dataframe(
        table.drop(columns=["eval", "path"]), hide_index=True, width="stretch",
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in leaderboard.ACCURACY_COLUMNS} | {
            "latency p50 (ms)": st.column_config.NumberColumn(format="%.1f"),
            "params": st.column_config.NumberColumn(format="compact"),
            "FLOPs": st.column_config.NumberColumn(format="compact")})
    st.caption("Click a column header to sort. AP is COCO's (IoU 0.50:0.95); mIoU and pixel accuracy come from one "
               "confusion matrix over the split; instance models are painted into semantic maps and semantic models "
               "give instances by connected components, so every model gets every score.")

    tabs = st.tabs(["Scores", "Speed against accuracy", "Per class", "Breakdowns", "Precision-recall",
                    "Calibration", "Attention focus"])
    metrics = {row.run: cached.metrics(row.eval) for row in table.itertuples()}
    with tabs[0]:
        shown = st.multiselect("Metrics", [*leaderboard.ACCURACY_COLUMNS, *leaderboard.PER_IMAGE_COLUMNS],
                               key="bar_metrics", default=["mask AP", "box AP", "mIoU", "boundary AP",
                                                           *leaderboard.PER_IMAGE_COLUMNS])
        intervals = {row.run: cached.intervals(row.eval) for row in table.itertuples()}
        if st.toggle("Intervals for AP too (a bootstrap of COCO's matches: seconds per run)", key="ap_intervals"):
            for row in table.itertuples():
                intervals[row.run] |= cached.ap_intervals(row.eval)
        st.plotly_chart(figures.metric_bars(table, shown, intervals), width="stretch")
        st.caption("Error bars are 95% bootstrap intervals over images (1000 resamples): of the per-image means, "
                   "and of mask and box AP when asked for; mIoU from the split's confusion matrix is drawn as it is. "
                   "Whether two runs differ for real: the Compare page's paired intervals.")
    with tabs[1]:
        accuracy = st.selectbox("Accuracy", leaderboard.ACCURACY_COLUMNS, key="pareto_accuracy")
        st.plotly_chart(figures.speed_accuracy(table, accuracy), width="stretch")
        st.caption("Latency: median milliseconds per image at batch 1 after warm-up, pre- and postprocessing "
                   "included, on each run's own evaluation device. Red points are on the Pareto front.")
    with tabs[2]:
        kind = st.radio("Scores", ["mask AP", "box AP", "semantic IoU"], horizontal=True, key="per_class_kind")
        st.plotly_chart(figures.per_class_heatmap(leaderboard.per_class(metrics, kind), f"{kind} per class"),
                        width="stretch")
    with tabs[3]:
        group = st.radio("By", list(leaderboard.BREAKDOWNS), horizontal=True, key="breakdown_by",
                         format_func=lambda g: g.replace("_", " "))
        columns = st.columns(2)
        title = "AP by object size" if group == "area" else f"AP by {group.replace('_', ' ')}"
        columns[0].plotly_chart(figures.breakdown_bars(leaderboard.ap_breakdown(metrics, group), title, "AP"),
                                width="stretch")
        columns[1].plotly_chart(figures.breakdown_bars(leaderboard.mean_iou_breakdown(metrics, group),
                                                       f"Mean instance IoU by {group.replace('_', ' ')}",
                                                       "mean IoU (missed = 0)"), width="stretch")
        st.caption(f"Occlusion: {leaderboard.occlusion_sources(metrics)}.")
    with tabs[4]:
        kind = st.radio("IoU type", ["segm", "bbox"], horizontal=True, key="pr_kind")
        which = st.radio("IoU threshold", ["precision", "precision50", "precision75"], horizontal=True, key="pr_which",
                         format_func={"precision": "0.50:0.95", "precision50": "0.50", "precision75": "0.75"}.get)
        curves = leaderboard.curves_of({row.run: cached.curves(row.eval) for row in table.itertuples()}, kind)
        st.plotly_chart(figures.pr_curves(curves, which), width="stretch")
    with tabs[5]:
        st.plotly_chart(figures.calibration_plot(leaderboard.calibrations(metrics)), width="stretch")
        st.caption("Each point is a score bin: its mean score against the mean mask IoU its predictions actually "
                   "reached (0 for a false positive). Below the diagonal the model is over-confident.")
    with tabs[6]:
        focused = leaderboard.attention_sections(metrics)
        if not focused:
            st.info("None of these runs has a mask branch with spatial attention (or its evaluation predates the "
                    "attention focus): evaluate an attention model to see where its attention looks.")
        else:
            st.dataframe(leaderboard.attention_table(focused), hide_index=True, width="stretch")
            per_instance = {row.run: cached.per_instance(row.eval) for row in table.itertuples() if row.run in focused}
            st.plotly_chart(figures.attention_focus(per_instance), width="stretch")
            st.caption("Attention focus of a matched detection: the share of its attention map's mass inside the "
                       "ground-truth mask, over the share of its box the mask covers (both at the attention map's "
                       "14×14). 1 is attention spread evenly; above 1 the attention is drawn to the object. The "
                       "rank correlation says whether a more focused attention goes with a better mask.")

# Runs with a checkpoint can be evaluated from here, those not evaluated on the chosen split first.
current = st.session_state.get("evaluation")
trained = [r for r in chosen if run_health.usable_model(r)]
pending = [r for r in trained if current not in runs.eval_folders(r["path"])]
if trained:
    with st.expander(f"Evaluate a run ({len(pending)} of {len(trained)} not evaluated on {current or 'any split'})",
                     expanded=not evaluations):
        names = runs.display_names([*pending, *(r for r in trained if r not in pending)])
        run_dir = st.selectbox("Run", list(names), format_func=names.get, key="evaluate_run")
        manifest = next(r for r in trained if r["path"] == run_dir)
        data = st.text_input("Dataset folder", value=next(iter(folders.dataset_paths([manifest])), "data/shapes"),
                             key=f"evaluate_data_{run_dir}")
        split = st.text_input("Split", value="val", key="evaluate_split")
        if st.button("Evaluate", key="evaluate_button"):
            bar = st.progress(0.0, text="Evaluating…")
            try:
                from segcore.evaluation.evaluate import evaluate_run

                # a visitor evaluates on the run's own dataset or one inside the dashboard's folder, nowhere else
                folders.split_folder(data, split, [manifest], remedy="pick the run's own dataset or one under the "
                                     "dashboard's folder, or evaluate with segcore eval.")
                folder = evaluate_run(run_dir, data, split, progress=False,
                                      on_image=lambda done, total: bar.progress(done / total,
                                                                                text=f"{done}/{total} images"),
                                      on_stage=lambda stage: bar.progress(1.0, text=f"Scoring: {stage}…"))
            except SegcoreError as error:
                st.error(str(error))
            except OSError as error:  # a full disk, a folder the dashboard may not write
                st.error(os_error_sentence(error))
            else:
                st.session_state["evaluation_wanted"] = folder.name  # the new evaluation's leaderboard next
                st.rerun()
