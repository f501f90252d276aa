"""The Overview page's table of runs: one row per run, with its status, what it was evaluated on and its damage."""

from __future__ import annotations

from typing import Any

from segcore.app.leaderboard import family
from segcore.runs import health as run_health


def run_rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run of ``found`` (find_runs' manifests, each with its "damage")."""
    rows = []
    for manifest in found:
        evals = run_health.usable_evals(manifest)
        damage = run_health.damage_of(manifest)
        rows.append({
            "name": manifest.get("name"), "family": family(manifest),
            "status": "damaged" if damage else run_health.status(manifest),
            "iterations": manifest.get("iterations_done"), "wall time (s)": manifest.get("wall_time_s"),
            "evaluated on": ", ".join(evals) or "not evaluated", "created": manifest.get("created"),
            "path": manifest["path"], "damage": " ".join(damage.values()) or None,
        })
    return rows


def has_attention(manifest: dict[str, Any]) -> bool:
    """Whether a run's model has a mask branch with spatial attention, by its run.json."""
    options = manifest.get("options")
    return isinstance(options, dict) and options.get("attention", "none") != "none"



def run_label(manifest: dict[str, Any], name: str) -> str:
    """A run as the sidebar's picker names it: its display name, its model (or kind), and whether it is damaged."""
    damaged = " · damaged" if run_health.damage_of(manifest) else ""
    return f"{name} ({manifest.get('model') or manifest.get('kind') or '?'}){damaged}"


def needing_attention(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What the Overview points out under its table of :func:`run_rows`: the damage sentences of damaged runs,
    and the names of runs killed while training and of runs not evaluated yet."""
    return {"damaged": [r["damage"] for r in rows if r["damage"]],
            "killed": [str(r["name"]) for r in rows if r["status"] == "killed"],
            "not_evaluated": [str(r["name"]) for r in rows if r["evaluated on"] == "not evaluated"]}
