"""The leaderboard's rows, its Pareto front, its intervals and the charts drawn from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from hypothesis import given
from hypothesis import strategies as st

from segcore import runs
from segcore.app import figures
from segcore.app.browse import filter_images
from segcore.app.leaderboard import (
    ap_intervals,
    evaluation_names,
    leaderboard,
    pareto_front,
    per_image_intervals,
)

points = st.lists(st.tuples(st.floats(0, 100), st.floats(0, 1)), min_size=1, max_size=20)


@given(points)
def test_the_pareto_front_is_exactly_the_undominated_points(pairs):
    cost, value = np.array(pairs).T
    front = pareto_front(cost, value)
    for i in range(len(pairs)):
        dominated = any(cost[j] <= cost[i] and value[j] >= value[i] and (cost[j] < cost[i] or value[j] > value[i])
                        for j in range(len(pairs)))
        assert front[i] == (not dominated)
    assert front.any()


def test_nan_points_are_never_on_the_front():
    assert pareto_front([np.nan, 1.0], [1.0, 0.5]).tolist() == [False, True]


def test_one_row_per_evaluated_run_with_every_column(dashboard_runs, shapes):
    found = runs.find_runs(dashboard_runs)
    assert f"{shapes.name}-val" in evaluation_names(found)
    table = leaderboard(found, f"{shapes.name}-val")
    assert sorted(table["run"]) == ["fcn", "imported", "tiny"]  # "fresh" is not evaluated on val
    assert dict(zip(table["run"], table["family"])) == {"fcn": "fcn", "imported": "external", "tiny": "maskrcnn"}
    tiny = table.set_index("run").loc["tiny"]
    metrics = runs.read_metrics(Path(tiny["eval"]))
    assert tiny["mask AP"] == metrics["segm"]["AP"] and tiny["mIoU"] == metrics["semantic"]["mIoU"]
    assert tiny["latency p50 (ms)"] == metrics["speed"]["total_ms_p50"] and tiny["params"] > 0
    assert np.isnan(table.set_index("run").loc["imported", "latency p50 (ms)"])  # nothing was timed


def test_intervals_contain_their_means(dashboard_runs, shapes):
    folder = dashboard_runs / "maskrcnn" / "evals" / f"{shapes.name}-val"
    for interval in per_image_intervals(folder).values():
        assert interval["n_images"] == 0 or interval["low"] <= interval["mean"] <= interval["high"]
    aps = ap_intervals(folder, resamples=50)
    metrics = runs.read_metrics(folder)
    assert aps["mask AP"]["mean"] == metrics["segm"]["AP"] and aps["box AP"]["mean"] == metrics["bbox"]["AP"]


def test_filters_keep_images_with_a_matching_instance(dashboard_runs, shapes):
    folder = dashboard_runs / "maskrcnn" / "evals" / f"{shapes.name}-val"
    per_image, per_instance = runs.read_per_image(folder), runs.read_per_instance(folder)
    assert len(filter_images(per_image, per_instance)) == len(per_image)
    missed = filter_images(per_image, per_instance, error_types=["missed"], area_buckets=["small", "medium", "large"])
    expected = set(per_instance.loc[per_instance["error_type"] == "missed", "image_id"])
    assert set(missed["image_id"]) == expected
    assert filter_images(per_image, per_instance, occlusion=(2.0, 3.0)).empty


def test_every_chart_is_a_plotly_figure_with_data(dashboard_runs, shapes):
    found = runs.find_runs(dashboard_runs)
    table = leaderboard(found, f"{shapes.name}-val")
    metrics = {row.run: runs.read_metrics(row.eval) for row in table.itertuples()}
    curves = {row.run: runs.read_curves(row.eval) for row in table.itertuples()}
    charts = [
        figures.metric_bars(table, ["mask AP", "per-image mIoU"], {r.run: per_image_intervals(r.eval)
                                                                   for r in table.itertuples()}),
        figures.speed_accuracy(table),
        figures.per_class_heatmap({r: m["segm"]["per_class"] for r, m in metrics.items() if "segm" in m}),
        figures.breakdown_bars({r: m["breakdowns"]["occlusion"] for r, m in metrics.items()}, "AP by occlusion"),
        figures.pr_curves({r: c["segm"] for r, c in curves.items()}),
        figures.calibration_plot({r: m["calibration"] for r, m in metrics.items()}),
        figures.training_curves({"tiny": runs.read_history(dashboard_runs / "maskrcnn")}, "loss", log_y=True),
        figures.attention_heatmap(np.random.default_rng(0).random((14, 14))),
    ]
    for chart in charts:
        assert isinstance(chart, go.Figure) and chart.data
        json.loads(chart.to_json())  # serialisable, as Streamlit sends it
