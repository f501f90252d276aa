"""The recipe study's machinery (docs/recipe_study.py): each candidate trains once, a finished one is skipped, and
the candidates are tabulated against the default."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import TINY_OPTIONS

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "recipe_study.py"


@pytest.fixture
def study(monkeypatch):
    spec = importlib.util.spec_from_file_location("recipe_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "LENGTHS", {"unet": (4, 2)})
    monkeypatch.setattr(module, "CANDIDATES", {"unet": {"default": {**TINY_OPTIONS["unet"], "batch_size": 2},
                                                        "adamw lr 3e-3": {**TINY_OPTIONS["unet"], "batch_size": 2,
                                                                          "lr": 3e-3}}})
    monkeypatch.setattr(module, "JUDGED_BY", {"unet": "val_mIoU"})
    return module


def test_each_candidate_trains_once_and_is_tabulated_against_the_default(study, shapes, tmp_path, capsys):
    for name in ("default", "adamw lr 3e-3"):
        study.train_candidate(tmp_path, "unet", name, str(shapes))
    changed = study.run_dir(tmp_path, "unet", "adamw lr 3e-3")
    manifest = json.loads((changed / "run.json").read_text())
    assert manifest["status"] == "finished" and manifest["training"]["lr"] == 3e-3
    assert manifest["training"]["max_iters"] == 4 and manifest["training"]["val_every"] == 2
    study.train_candidate(tmp_path, "unet", "default", str(shapes))
    assert "finished already" in capsys.readouterr().out

    found = study.curves(tmp_path)
    assert list(found["unet"]) == ["default", "adamw lr 3e-3"]
    rows = study.table_rows(found)
    assert len(rows) == 4 and "| unet | adamw lr 3e-3 | " in rows[3]
    last = found["unet"]["adamw lr 3e-3"]["val_mIoU"].iloc[-1] - found["unet"]["default"]["val_mIoU"].iloc[-1]
    assert rows[3].rstrip(" |").endswith(f"{last:+.3f}")
    assert len(study.figure(found).data) == 2


def test_diagnose_says_where_the_mask_ap_is_lost(study, tiny_run, shapes, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("evals", "comparisons"))
    study.diagnose(run, str(shapes), "val")
    printed = capsys.readouterr().out
    for words in ("mask AP", "by size: small", "mask AP by occlusion", "error types (all)",
                  "error types (score >= 0.5)"):
        assert words in printed, words
