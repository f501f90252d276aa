"""What the Compare page shows of two runs: the comparison file already made (and whether it is current),
its table of paired differences, and the images where the two differ most."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from segcore import runs
from segcore.runs import health as run_health


@dataclasses.dataclass
class Existing:
    """The comparison of A and B on an evaluation that ``segcore compare`` wrote into B, if any."""

    path: Path | None
    damage: list[str]  # sentences naming what is wrong with the file; it is made again
    current: bool  # made after both evaluations, and whole


def existing(run_a: str, manifest_b: dict[str, Any], evaluation: str) -> Existing:
    """The comparison file of ``run_a`` against B (one of find_runs' manifests, with its damage)."""
    run_b = manifest_b["path"]
    stem = runs.comparison_stem(evaluation, runs.read_run(run_a)["name"])  # as segcore compare names its file
    path = runs.comparison_files(run_b).get(stem)
    if path is None:
        return Existing(None, [], False)
    damage = run_health.damage_in(manifest_b, f"{runs.COMPARISONS}/{path.name}")
    folders = [runs.eval_folders(run)[evaluation] for run in (run_a, run_b)]
    return Existing(path, damage, not damage and runs.comparison_is_current(path, *folders))


def difference_rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: A, B, B − A, the 95% interval and the p-value."""
    return [{"metric": m, "A": v.get("a"), "B": v.get("b"), "B − A": v["difference"], "95% low": v["low"],
             "95% high": v["high"], "p": v.get("p_value")} for m, v in comparison["metrics"].items()]


def resampling(comparison: dict[str, Any]) -> str:
    """How the intervals were drawn, as a phrase: "1000 resamples, seed 0"."""
    return f"{comparison['resamples']} resamples, seed {comparison['seed']}"


def most_different(comparison: dict[str, Any]) -> dict[str, list[dict]]:
    """Per-image metric -> the images on which A and B differ most (image_id, file_name, a, b, difference)."""
    return comparison["most_different"]
