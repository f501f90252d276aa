"""The dashboard's caches around segcore's readers.

Tables go through st.cache_data keyed on the files' modification times (runs.stamp), so a new evaluation
shows up without a restart; models, ground truths and prediction lists, large and read-only, go through
st.cache_resource.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from segcore import runs
from segcore.app import leaderboard as board
from segcore.runs import health as run_health

#: What each reader reads: the file, in a run directory or an eval folder, whose modification time keys it.
_READERS = {"history": (runs.read_history, runs.HISTORY), "validation": (runs.read_validation, runs.VALIDATION),
            "per_image": (runs.read_per_image, runs.PER_IMAGE),
            "per_instance": (runs.read_per_instance, runs.PER_INSTANCE),
            "metrics": (runs.read_metrics, runs.METRICS),
            "curves": (runs.read_curves, runs.CURVES)}


@st.cache_data(show_spinner=False, max_entries=256)
def _read(kind: str, folder: str, stamp: tuple):
    return _READERS[kind][0](folder)


def _cached(kind: str, folder: str):
    return _read(kind, str(folder), runs.stamp(Path(folder) / _READERS[kind][1]))


def history(run_dir: str):
    """history.csv of a run."""
    return _cached("history", run_dir)


def validation(run_dir: str):
    """validation.csv of a run."""
    return _cached("validation", run_dir)


def per_image(eval_folder: str):
    """per_image.csv of an eval folder."""
    return _cached("per_image", eval_folder)


def per_instance(eval_folder: str):
    """per_instance.csv of an eval folder."""
    return _cached("per_instance", eval_folder)


def metrics(eval_folder: str) -> dict:
    """metrics.json of an eval folder."""
    return _cached("metrics", eval_folder)


def curves(eval_folder: str) -> dict:
    """curves.json of an eval folder."""
    return _cached("curves", eval_folder)


@st.cache_data(show_spinner=False, max_entries=1024)
def _damage(run_dir: str, files: tuple, stamps: tuple) -> dict[str, str]:
    return run_health.check_run(run_dir)


def damage(run_dir: str) -> dict[str, str]:
    """The damaged files of a run (run_health.check_run), checked again when any of its files changes."""
    files = run_health.run_files(run_dir)
    return _damage(str(run_dir), tuple(map(str, files)), runs.stamp(*files))


@st.cache_data(show_spinner=False, max_entries=256)
def _intervals(eval_folder: str, stamp: tuple) -> dict:
    return board.per_image_intervals(eval_folder)


def intervals(eval_folder: str) -> dict:
    """Bootstrap intervals of the per-image means of an eval folder."""
    return _intervals(eval_folder, runs.stamp(Path(eval_folder) / runs.PER_IMAGE))


@st.cache_data(show_spinner=False, max_entries=32)
def _leaderboard(found: list[dict], evaluation: str, stamps: tuple):
    return board.leaderboard(found, evaluation)


def leaderboard(found: list[dict], evaluation: str):
    """The leaderboard of ``found`` on ``evaluation``, recomputed when any run's metrics.json changes."""
    files = [Path(r["path"]) / runs.EVALS / evaluation / runs.METRICS for r in found]
    return _leaderboard(found, evaluation, runs.stamp(*files))


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _model(path: str, stamp: tuple):
    import torch

    from segcore.predictor import load_model

    return load_model(path, device="cuda" if torch.cuda.is_available() else "cpu")


def model(run_dir: str):
    """A run's model, loaded once per checkpoint file version."""
    return _model(run_dir, runs.stamp(Path(run_dir) / runs.CHECKPOINT))


@st.cache_resource(show_spinner="Reading the ground truth…", max_entries=8)
def _ground_truth(path: str, stamp: tuple, _source):
    from segcore.evaluation.scoring import ground_truth_of

    return ground_truth_of(_source)


def ground_truth(source: runs.DatasetSource):
    """The ground truth an eval folder was scored against (runs.dataset_source) as a pycocotools COCO."""
    return _ground_truth(str(source), runs.stamp(source.annotations), source)


@st.cache_resource(show_spinner="Reading the predictions…", max_entries=8)
def _predictions(eval_folder: str, stamp: tuple, _coco_gt, gt_key: tuple) -> list[dict]:

    return runs.read_eval_predictions(eval_folder, _coco_gt)


def predictions(eval_folder: str) -> list[dict]:
    """predictions.json of an eval folder, checked against its ground truth (shared, not copied: do not modify)."""
    source = runs.dataset_source(eval_folder)
    return _predictions(eval_folder, runs.stamp(Path(eval_folder) / runs.PREDICTIONS), ground_truth(source),
                        (str(source.annotations), runs.stamp(source.annotations), source.skip_invalid))


@st.cache_resource(show_spinner="Segmenting…", max_entries=64)
def _segment(run_dir: str, stamp: tuple, digest: str, _image):
    from segcore.app import live

    return live.segment(model(run_dir), _image)


def segment(run_dir: str, image):
    """A run's model on a (3, H, W) uint8 image, once per image: moving a slider does not run it again.
    The result keeps the time the model took when it did run."""
    import hashlib

    digest = hashlib.blake2b(image.numpy().tobytes(), digest_size=16).hexdigest() + str(tuple(image.shape))
    return _segment(run_dir, runs.stamp(Path(run_dir) / runs.CHECKPOINT), digest, image)


@st.cache_data(show_spinner="Bootstrapping AP over images…", max_entries=256)
def _ap_intervals(eval_folder: str, stamp: tuple) -> dict:
    return board.ap_intervals(eval_folder)


def ap_intervals(eval_folder: str) -> dict:
    """Bootstrap intervals of an eval folder's mask and box AP (seconds each: computed when asked for)."""
    files = (Path(eval_folder) / name for name in (runs.PREDICTIONS, runs.METRICS))
    return _ap_intervals(eval_folder, runs.stamp(*files))
