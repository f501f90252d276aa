"""The dashboard's charts, as plotly figures built from what :mod:`segcore.runs` reads.

Each function takes plain data (tables, dicts from metrics.json and curves.json) and returns a
``plotly.graph_objects.Figure``; none reads files, so each can be tested and reused in a notebook.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from segcore.app.leaderboard import pareto_front

_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend": {"orientation": "h", "y": -0.2}}


def _figure(title: str, **layout: Any) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(title=title, **{**_LAYOUT, **layout})
    return figure


def metric_bars(table, metrics: list[str], intervals: dict[str, dict[str, dict]] | None = None) -> go.Figure:
    """Grouped bars: one group per metric, one bar per run, with a 95% interval where one is known.

    Args:
        table: leaderboard rows ("run" and the metric columns).
        metrics: leaderboard columns, or names of ``intervals`` (per-image means, drawn at their mean).
        intervals: run -> metric -> {"mean", "low", "high"} (bootstrap over images).
    """
    figure = _figure("Scores; error bars: 95% bootstrap intervals over images", barmode="group", yaxis_title="score")
    for _, row in table.iterrows():
        known = (intervals or {}).get(row["run"], {})
        values, plus, minus = [], [], []
        for metric in metrics:
            interval = known.get(metric) or {}
            value = row[metric] if metric in row.index else interval.get("mean")
            values.append(np.nan if value is None else value)
            plus.append(interval["high"] - value if interval.get("high") is not None else 0)
            minus.append(value - interval["low"] if interval.get("low") is not None else 0)
        figure.add_bar(name=row["run"], x=metrics, y=values,
                       error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus})
    return figure


def speed_accuracy(table, accuracy: str = "mask AP", cost: str = "latency p50 (ms)") -> go.Figure:
    """Accuracy against latency, one point per run, the Pareto front (no run faster and better) joined."""
    figure = _figure(f"{accuracy} against {cost}", xaxis_title=cost, yaxis_title=accuracy)
    x, y = table[cost].to_numpy(dtype=np.float64), table[accuracy].to_numpy(dtype=np.float64)
    front = pareto_front(x, y)
    figure.add_scatter(x=x, y=y, mode="markers+text", text=table["run"], textposition="top center",
                       name="runs", marker={"size": 11, "color": np.where(front, "#d62728", "#1f77b4").tolist()})
    order = np.argsort(x[front])
    figure.add_scatter(x=x[front][order], y=y[front][order], mode="lines", name="Pareto front",
                       line={"dash": "dash", "color": "#d62728"})
    return figure


def per_class_heatmap(per_class: dict[str, dict[str, float | None]], title: str = "Mask AP per class") -> go.Figure:
    """Runs down, classes across, AP in each cell (blank where a class has no ground truth)."""
    runs_ = list(per_class)
    classes = list(dict.fromkeys(c for values in per_class.values() for c in values))
    z = [[per_class[r].get(c) if per_class[r].get(c) is not None else np.nan for c in classes] for r in runs_]
    figure = _figure(title)
    figure.add_heatmap(z=z, x=classes, y=runs_, zmin=0, zmax=1, colorscale="Viridis",
                       text=[[("" if np.isnan(v) else f"{v:.2f}") for v in row] for row in z], texttemplate="%{text}")
    return figure


def breakdown_bars(values: dict[str, dict[str, float | None]], title: str, yaxis: str = "mask AP") -> go.Figure:
    """Grouped bars of one breakdown (bins across, a bar per run): AP by occlusion, say."""
    figure = _figure(title, barmode="group", yaxis_title=yaxis)
    for run, bins in values.items():
        figure.add_bar(name=run, x=list(bins), y=[np.nan if v is None else v for v in bins.values()])
    return figure


def pr_curves(curves: dict[str, dict], which: str = "precision") -> go.Figure:
    """COCO precision-recall curves (mean over classes and, for "precision", IoU 0.50:0.95), a line per run.

    Args:
        curves: run -> one IoU type's section of curves.json ({"recall", "precision", "precision50", ...}).
        which: "precision", "precision50" or "precision75".
    """
    label = {"precision": "IoU 0.50:0.95", "precision50": "IoU 0.50", "precision75": "IoU 0.75"}[which]
    figure = _figure(f"Precision-recall ({label})", xaxis_title="recall", yaxis_title="precision",
                     yaxis_range=[0, 1.02])
    for run, curve in curves.items():
        if curve:
            figure.add_scatter(x=curve["recall"], y=[np.nan if p is None else p for p in curve[which]], name=run,
                               mode="lines")
    return figure


def calibration_plot(calibrations: dict[str, dict]) -> go.Figure:
    """Mean predicted score against the mean IoU realised, per score bin: on the diagonal, a score can be
    trusted; below it, the model is over-confident."""
    figure = _figure("Score calibration", xaxis_title="mean score", yaxis_title="mean mask IoU (0 when unmatched)",
                     xaxis_range=[0, 1], yaxis_range=[0, 1])
    figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "grey"})
    for run, calibration in calibrations.items():
        bins = [b for b in (calibration or {}).get("bins", []) if b["count"]]
        ece = (calibration or {}).get("expected_calibration_error")
        name = f"{run} (ECE {ece:.3f})" if ece is not None else run
        figure.add_scatter(x=[b["mean_score"] for b in bins], y=[b["mean_iou"] for b in bins], name=name,
                           mode="lines+markers", text=[f"{b['count']} predictions" for b in bins])
    return figure


def training_curves(histories: dict[str, Any], column: str, *, log_y: bool = False) -> go.Figure:
    """One history.csv column (a loss term, lr, images_per_s) against iteration, a line per run."""
    figure = _figure(column, xaxis_title="iteration", yaxis_type="log" if log_y else "linear")
    for run, history in histories.items():
        if column in history:
            # a short history is a few points: markers keep a single logged step visible
            figure.add_scatter(x=history["iteration"], y=history[column], name=run,
                               mode="lines" if len(history) > 30 else "lines+markers")
    return figure


#: validation.csv's metric columns, by the names the dashboard shows.
VALIDATION_METRICS = {"mask AP": "val_mask_AP", "box AP": "val_box_AP", "mIoU": "val_mIoU",
                      "pixel accuracy": "val_pixel_accuracy"}
#: validation.csv's time axes, by the names the dashboard shows.
VALIDATION_AXES = {"iteration": "iteration", "wall-clock minutes": "minutes"}


def validation_curves(validations: dict[str, Any], metric: str, axis: str,
                      selected: dict[str, int | None] | None = None) -> go.Figure:
    """A validation metric (a key of :data:`VALIDATION_METRICS`) against iterations or wall-clock minutes (a
    key of :data:`VALIDATION_AXES`), a line per run; each run's selected checkpoint is a star on its line."""
    column, x = VALIDATION_METRICS[metric], VALIDATION_AXES[axis]
    figure = _figure(f"validation {metric}", xaxis_title=axis, yaxis_title=metric)
    for run, table in validations.items():
        if column not in table or x not in table:
            continue  # a run validated before this metric (or its time) was recorded
        figure.add_scatter(x=table[x], y=table[column], name=run, mode="lines+markers", legendgroup=run)
        chosen = table[table["iteration"] == (selected or {}).get(run)]
        if len(chosen):
            figure.add_scatter(x=chosen[x], y=chosen[column], name=f"{run}: checkpoint.pt", legendgroup=run,
                               mode="markers", marker={"symbol": "star", "size": 16, "line": {"width": 1}},
                               hovertemplate="checkpoint.pt<br>%{x}: %{y:.3f}<extra>" + run + "</extra>")
    return figure


def attention_focus(per_instance: dict[str, Any]) -> go.Figure:
    """Attention focus against mask IoU, one point per matched detection and a least-squares trend line per
    run (``per_instance``: run -> per_instance.csv table with ``iou`` and ``attention_focus``)."""
    figure = _figure("Attention focus against mask IoU (matched detections)", xaxis_title="mask IoU",
                     yaxis_title="attention focus (1 = no focus)")
    figure.add_hline(y=1.0, line={"color": "grey", "dash": "dot"})
    for run, table in per_instance.items():
        if not {"iou", "attention_focus"} <= set(table.columns):  # an evaluation without instances
            continue
        points = table[["iou", "attention_focus"]].dropna()
        figure.add_scatter(x=points["iou"], y=points["attention_focus"], name=run, mode="markers", legendgroup=run,
                           marker={"size": 5, "opacity": 0.5})
        if len(points) >= 2 and points["iou"].nunique() > 1:
            slope, intercept = np.polyfit(points["iou"], points["attention_focus"], 1)
            x = np.array([points["iou"].min(), points["iou"].max()])
            figure.add_scatter(x=x, y=slope * x + intercept, name=f"{run}: trend", mode="lines", legendgroup=run)
    return figure


def comparison_intervals(comparison: dict[str, Any]) -> go.Figure:
    """Each metric's difference B − A as a point with its 95% paired bootstrap interval; an interval that
    does not cross 0 is drawn red (the difference is unlikely to be chance)."""
    metrics = comparison["metrics"]
    names = list(metrics)
    diff = [metrics[m]["difference"] for m in names]
    figure = _figure(f"{comparison['b']['name']} − {comparison['a']['name']} (95% paired bootstrap)",
                     xaxis_title="difference, B − A")
    figure.add_vline(x=0, line={"color": "grey", "dash": "dot"})
    significant = [not (metrics[m]["low"] <= 0 <= metrics[m]["high"]) for m in names]
    figure.add_scatter(
        x=diff, y=names, mode="markers", name="difference",
        marker={"size": 12, "color": ["#d62728" if s else "#1f77b4" for s in significant]},
        error_x={"type": "data", "symmetric": False, "array": [metrics[m]["high"] - d for m, d in zip(names, diff)],
                 "arrayminus": [d - metrics[m]["low"] for m, d in zip(names, diff)]})
    return figure


def attention_heatmap(attention_roi: np.ndarray, title: str = "Raw attention map") -> go.Figure:
    """One instance's spatial attention at the mask branch's RoI resolution (h, w), cell by cell."""
    h, w = attention_roi.shape
    figure = _figure(f"{title} ({h}×{w})", height=320, yaxis={"autorange": "reversed", "scaleanchor": "x"})
    figure.add_heatmap(z=np.asarray(attention_roi), zmin=0, zmax=1, colorscale="Magma")
    return figure
