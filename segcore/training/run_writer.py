"""The run directory as a training writes it: run.json, history.csv, validation.csv, the heartbeat, the
best and last checkpoints, and the final status; on rank 0 only.

A kill (``kill -9``, a lost machine) loses at most the epoch under way: each save replaces checkpoint.pt,
last.pt and run.json atomically, and ``--resume`` continues from last.pt, dropping history.csv's rows past
it. run.json names the process training the run (host, pid, heartbeat; see :mod:`segcore.liveness`), so that
a run left saying "running" by a kill is told apart from a live one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from segcore import liveness, runs
from segcore.data import CocoSegmentation, checksum
from segcore.runs import checkpoints
from segcore.training.config import TrainConfig


def new_manifest(config: TrainConfig, *, model_name: str, model_kind: str, options: Any, train_set: CocoSegmentation,
                 val_set: CocoSegmentation | None, validating: bool, precision: str, device: torch.device,
                 world_size: int) -> dict[str, Any]:
    """The run.json of a run about to take its first step (:class:`segcore.runs.schemas.RunManifest`)."""
    data = Path(config.data).resolve()
    return {
        "name": config.run_name, "kind": "trained", "model": model_name, "model_kind": model_kind,
        "options": dataclasses.asdict(options), "class_names": train_set.class_names,
        "category_ids": train_set.category_ids,
        "dataset": {"path": str(data), "name": data.name, "checksum": checksum(config.data),
                    "train_split": config.train_split, "val_split": config.val_split if validating else None,
                    "train_images": len(train_set), "val_images": len(val_set) if val_set else 0,
                    # what --skip-invalid left out: split -> reason -> count
                    "skipped": {d.split: dict(d.skipped) for d in (train_set, val_set) if d is not None}
                    if config.skip_invalid else None},
        "training": {k: v for k, v in dataclasses.asdict(config).items() if k != "model_options"},
        "precision": precision, "seed": config.seed, "git_commit": runs.git_commit(),
        "versions": runs.library_versions(), "created": runs.now(), "wall_time_s": 0.0, "device": str(device),
        "world_size": world_size, "epochs_done": 0, "iterations_done": 0, "best": None,
    }


class RunWriter:
    """Owns a training's run directory (rank 0's): everything it writes goes through here.

    Args:
        run_dir: the run directory, created if missing.
        manifest: run.json's content: :func:`new_manifest`'s for a new run, the run's own when resumed.
        identity: what every checkpoint records about the model (model_name, options, class_names,
            category_ids; :func:`segcore.runs.checkpoints.checkpoint`).
        selection: the validation score that picks checkpoint.pt (e.g. "mask_AP").
        state: the resumed last.pt, None for a run's first sitting.
        precision: this sitting's precision (a resume may move machine).
    """

    def __init__(self, run_dir: Path, manifest: dict[str, Any], *, identity: dict[str, Any], selection: str,
                 state: dict | None, precision: str) -> None:
        self.run_dir, self.manifest, self.identity, self.selection = run_dir, manifest, identity, selection
        resumed_at = state["iteration"] if state is not None else None
        if state is not None:
            manifest.setdefault("resumed", []).append({"at_iteration": resumed_at, "time": runs.now()})
            # last.pt is saved before run.json: a kill between the two leaves run.json a save behind
            manifest.update(epochs_done=state["epoch"], iterations_done=resumed_at)
            if "wall_time_s" in state:
                manifest["wall_time_s"] = state["wall_time_s"]
        manifest["status"] = "running"
        manifest["precision"] = precision
        # who trains the run, so that a reader can tell a live run from a killed one (which says "running")
        manifest["trainer"] = liveness.holder()
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_run(run_dir, manifest)
        self.history = runs.CsvLog(run_dir / runs.HISTORY, keep_until_iteration=resumed_at)
        self.validation = runs.CsvLog(run_dir / runs.VALIDATION, keep_until_iteration=resumed_at)
        self._wall_time, self._started = manifest["wall_time_s"], time.perf_counter()
        self._last_written = time.monotonic()

    def elapsed_s(self) -> float:
        """Seconds this run has trained and validated, over all its sittings."""
        return self._wall_time + time.perf_counter() - self._started

    def log(self, row: dict[str, Any]) -> None:
        """One row of history.csv; run.json is rewritten when the heartbeat is due."""
        self.history.append(row)
        if time.monotonic() - self._last_written > liveness.HEARTBEAT_S:
            self.heartbeat()

    def log_validation(self, row: dict[str, Any]) -> None:
        """One row of validation.csv."""
        self.validation.append(row)

    def heartbeat(self) -> None:
        """Rewrite run.json with a fresh heartbeat: the run's trainer is alive."""
        liveness.beat(self.manifest["trainer"])
        runs.write_run(self.run_dir, self.manifest)
        self._last_written = time.monotonic()

    def save(self, model: torch.nn.Module, *, epoch: int, iteration: int, scores: dict | None, best: float,
             best_too: bool, training_state: dict[str, Any]) -> float:
        """last.pt, checkpoint.pt too where ``best_too`` (the scores improved, or the run has no validation),
        then run.json.

        Args:
            epoch: the epochs completed (for resuming).
            best: the best selection score so far; ``training_state`` is what last.pt adds for a resume
                (optimizer, scheduler, scaler, optimizer_name, train_only).

        Returns:
            the best selection score, this one if it is.
        """
        payload = dict(**self.identity, epoch=epoch, iteration=iteration)
        if best_too:
            best = scores[self.selection] if scores is not None else best
            checkpoints.save_atomic(checkpoints.checkpoint(model, **payload, metrics=scores),
                                    self.run_dir / runs.CHECKPOINT)
            self.manifest["best"] = {"metric": f"val_{self.selection}" if scores else None,
                                     "value": best if scores else None, "epoch": epoch, "iteration": iteration}
        checkpoints.save_atomic(
            checkpoints.checkpoint(model, **payload, **training_state, best=best, best_metric=self.selection,
                                   wall_time_s=round(self.elapsed_s(), 1)),
            self.run_dir / runs.LAST)
        self.manifest.update(epochs_done=epoch, iterations_done=iteration, wall_time_s=round(self.elapsed_s(), 1))
        self.heartbeat()
        return best

    def finish(self, status: str) -> None:
        """The run's final status: "finished", "interrupted" (Ctrl-C) or "failed"."""
        self.manifest["status"] = status
        self.heartbeat()

