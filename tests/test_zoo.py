"""The demo zoo: a miniature build end to end, and the shipped zoo's evaluations reproducing."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from segcore import runs, zoo
from segcore.cli import main
from segcore.data.synth import generate
from segcore.errors import CheckpointError
from segcore.evaluation.evaluate import evaluate_run
from segcore.predictor import load_model
from segcore.zoo_build import build
from tests.conftest import TINY_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "zoo"


BUILT = ["maskrcnn", "mask-plain-seed0", "mask-attention-seed0", "mask-attention-seed1", "fcn"]


@pytest.fixture(scope="module", autouse=True)
def tiny_zoo():
    """The zoo's models at the tests' small sizes (images of 128 px, narrow heads), for this module."""
    with pytest.MonkeyPatch.context() as patch:
        for name, spec in list(zoo.ZOO.items()):
            tiny = {**TINY_OPTIONS.get(spec.model, {}), **spec.options}
            if spec.model == "fcn":
                tiny["output_stride"] = 16  # the coarsest stride a ResNet cut after stage 3 has
            patch.setitem(zoo.ZOO, name, dataclasses.replace(spec, options=tiny))
        yield


@pytest.fixture(scope="module")
def staging(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("staging")


@pytest.fixture(scope="module")
def small_zoo(shapes, staging, tmp_path_factory) -> Path:
    """The detector, three mask-branch variants on it (two seeds of one) and FCN, one iteration each on the
    tiny dataset; the detector comes in because its variants need it."""
    out = tmp_path_factory.mktemp("zoo") / "zoo"
    return build(out, shapes, staging=staging, only=BUILT[1:], iterations=1, progress=False)


def test_a_built_zoo_holds_compact_runs_evaluations_and_comparisons(small_zoo, shapes, staging):
    detector = torch.load(small_zoo / "maskrcnn" / runs.CHECKPOINT, weights_only=True)
    for name in BUILT:
        run = small_zoo / name
        assert not (run / runs.LAST).exists()  # no optimizer state shipped
        stored = torch.load(run / runs.CHECKPOINT, weights_only=True)
        state = stored["state_dict"]
        assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
        # the convolutions and linear layers in int8, each with its per-channel scales
        assert stored["int8_scales"] and all(state[k].dtype == torch.int8 and len(scale) == state[k].shape[0]
                                             for k, scale in stored["int8_scales"].items())
        loaded = load_model(run)
        assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
        # the detector on val and test, every other model on test alone (the zoo's size budget)
        splits = ("val", "test") if run.name == zoo.DETECTOR else ("test",)
        assert set(runs.eval_folders(run)) == {f"{shapes.name}-{s}" for s in splits}
        assert (run / runs.CHECKPOINT).stat().st_size < 10e6
    # a variant ships its mask branch alone, and loads whole: the frozen detector's weights are the detector's
    variant = torch.load(small_zoo / "mask-attention-seed0" / runs.CHECKPOINT, weights_only=True)
    assert variant["base_weights"]["path"] == "../maskrcnn/checkpoint.pt"
    assert variant["state_dict"] and all(k.startswith("roi_heads.mask_") for k in variant["state_dict"])
    whole = load_model(small_zoo / "mask-attention-seed0").model.state_dict()
    backbone = "backbone.body.conv1.weight"
    scale = detector["int8_scales"][backbone].reshape(-1, 1, 1, 1)
    assert torch.equal(whole[backbone], detector["state_dict"][backbone].float() * scale)
    assert (small_zoo / "mask-attention-seed0" / runs.CHECKPOINT).stat().st_size < 0.2 * (
        small_zoo / "maskrcnn" / runs.CHECKPOINT).stat().st_size
    compared = {stem for stem in runs.comparison_files(small_zoo / "mask-attention-seed0")}
    assert compared == {f"{shapes.name}-test-vs-mask-plain-seed0"}
    assert set(runs.comparison_files(small_zoo / "maskrcnn")) == {f"{shapes.name}-test-vs-fcn"}
    manifest = zoo.describe(small_zoo)
    assert {"command", "seeds", "schedules", "git_commit", "dataset", "wall_time_s", "machine",
            "models"} <= set(manifest)
    assert list(manifest["models"]) == BUILT
    assert manifest["dataset"]["checksum"] and manifest["dataset"]["content_sha256"]
    entry = manifest["models"]["mask-attention-seed1"]
    assert entry["training"]["max_iters"] == 1 and entry["seed"] == 1 and entry["variant"] == "mask-attention"
    assert entry["device"] == "cpu" and entry["train_s"] > 0 and entry["detector"] == "maskrcnn"
    assert entry["command"].startswith("python -m segcore train --model maskrcnn ")
    assert "--train-only mask_head" in entry["command"] and "--attention spatial" in entry["command"]
    assert f"--weights {small_zoo / 'maskrcnn' / runs.CHECKPOINT}" in entry["command"]
    # the files name the zoo's own folder, never the staging folder it was built in
    text = (small_zoo / "maskrcnn" / "evals" / f"{shapes.name}-test" / "metrics.json").read_text()
    assert str(small_zoo) in text and str(staging) not in text
    assert runs.read_run(small_zoo / "mask-plain-seed0")["training"]["weights"] == str(
        small_zoo / "maskrcnn" / runs.CHECKPOINT)
    assert runs.dataset_source(small_zoo / "maskrcnn" / "evals" / f"{shapes.name}-test").images == shapes / "test"
    assert not [p for p in small_zoo.iterdir() if p.name.startswith(".")]


def test_a_second_sitting_trains_nothing_again_and_a_changed_recipe_is_refused(small_zoo, shapes, staging, capsys):
    # a run.json written before an option existed (the target run's lacks scale_jitter) was trained as its
    # default says: it is kept, not trained again
    manifest = runs.read_run(staging / "maskrcnn")
    del manifest["training"]["scale_jitter"], manifest["options"]["mask_positives_per_image"]
    runs.write_json(staging / "maskrcnn" / runs.RUN_FILE, manifest)
    before = {n: (staging / n / runs.CHECKPOINT).stat().st_mtime_ns for n in BUILT}
    build(small_zoo, shapes, staging=staging, only=["mask-plain-seed0"], iterations=1, progress=False)
    assert {n: (staging / n / runs.CHECKPOINT).stat().st_mtime_ns for n in BUILT} == before
    # a partial sitting keeps the models landed before it
    assert list(zoo.describe(small_zoo)["models"]) == BUILT
    assert main(["zoo", "build", "--out", str(small_zoo), "--data", str(shapes), "--staging", str(staging),
                 "--only", "fcn", "--iterations", "2", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert f"the staged run {staging / 'fcn'} was trained with max_iters=1, not the zoo's 2" in error


def test_a_zoo_is_built_only_into_a_zoo_or_an_empty_folder(shapes, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["zoo", "build", "--out", str(tmp_path / "mine"), "--data", str(shapes), "--staging",
                 str(tmp_path / "staging"), "--only", "fcn", "--iterations", "1", "--no-progress"]) == 2
    assert "holds other files and no zoo.json" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_a_variant_without_its_detector_is_one_sentence(small_zoo, tmp_path):
    lonely = tmp_path / "mask-plain-seed0"
    shutil.copytree(small_zoo / "mask-plain-seed0", lonely)
    with pytest.raises(CheckpointError, match="needs the checkpoint it was trained on"):
        load_model(lonely)
    copied = tmp_path / "zoo"
    shutil.copytree(small_zoo, copied)
    detector = torch.load(copied / "maskrcnn" / runs.CHECKPOINT, weights_only=True)
    detector["state_dict"]["backbone.body.conv1.weight"] //= 2
    torch.save(detector, copied / "maskrcnn" / runs.CHECKPOINT)
    with pytest.raises(CheckpointError, match="is not the checkpoint .* was trained on"):
        load_model(copied / "mask-plain-seed0")


def test_the_tables_come_from_the_shipped_files(small_zoo):
    table = zoo.table(small_zoo).splitlines()
    assert table[0].startswith("| model | mask AP") and len(table) == 2 + len(BUILT)
    assert zoo.comparisons_table(small_zoo).count("\n") == 2 + 2


def test_the_data_check_finds_a_changed_dataset(small_zoo, shapes, tmp_path, capsys):
    assert zoo.check_data(small_zoo, shapes) is None
    assert main(["zoo", "check", "--zoo", str(small_zoo), "--data", str(shapes)]) == 0
    changed = tmp_path / "shapes"
    shutil.copytree(shapes, changed)
    next((changed / "val").iterdir()).write_bytes(b"changed")
    assert main(["zoo", "check", "--zoo", str(small_zoo), "--data", str(changed)]) == 2
    assert "differs from the dataset the zoo" in capsys.readouterr().err


def test_an_unknown_zoo_model_is_one_sentence(tmp_path, capsys):
    assert main(["zoo", "build", "--only", "resnet", "--out", str(tmp_path / "zoo"), "--data", str(tmp_path)]) == 2
    assert "the zoo has no model resnet" in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()


def check_reproduces(zoo_dir: Path, data: Path, name: str, tmp_path: Path) -> None:
    """Evaluating a zoo checkpoint again (in a copy of the zoo's checkpoints, so that a variant finds its
    detector) gives the zoo's numbers within 0.005."""
    copied = tmp_path / "zoo"
    shutil.copytree(zoo_dir, copied, ignore=shutil.ignore_patterns("evals", "comparisons"))
    again = json.loads((evaluate_run(copied / name, data, "test", progress=False, speed_images=5)
                        / "metrics.json").read_text())
    shipped = runs.read_metrics(zoo_dir / name / "evals" / f"{data.name}-test")
    for section, key in [("segm", "AP"), ("segm", "AP50"), ("bbox", "AP"), ("semantic", "mIoU"), ("boundary", "AP")]:
        assert again[section][key] == pytest.approx(shipped[section][key], abs=0.005), (section, key)


def test_a_zoo_evaluation_reproduces_from_its_half_precision_checkpoint(small_zoo, shapes, tmp_path):
    check_reproduces(small_zoo, shapes, "mask-attention-seed0", tmp_path)


@pytest.mark.skipif(not (SHIPPED / zoo.ZOO_FILE).is_file(), reason="no zoo shipped in data/zoo yet")
def test_shipped_evaluations_reproduce(tmp_path):
    """The built-in data regenerates byte-identical, and a shipped Mask R-CNN (a mask-branch variant, whose
    checkpoint is completed by the detector's, where the zoo has them) evaluates to its shipped numbers again."""
    manifest = zoo.describe(SHIPPED)
    data = tmp_path / Path(manifest["dataset"]["path"]).name
    generate(data, seed=manifest["dataset"]["seed"], progress=False)
    assert zoo.check_data(SHIPPED, data) is None
    name = next((n for n, entry in manifest["models"].items() if entry.get("detector")), "maskrcnn-attention")
    check_reproduces(SHIPPED, data, name, tmp_path)


def test_the_readme_tables_are_written_between_markers(small_zoo, tmp_path):
    readme = tmp_path / "README.md"
    begin, end = zoo.README_MARKERS
    readme.write_text(f"# title\n\n{begin}\nold\n{end}\n\nafter\n")
    assert main(["zoo", "table", "--zoo", str(small_zoo), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n") and text.endswith("\n\nafter\n") and "old" not in text
    assert zoo.readme_tables(readme) == zoo.readme_text(small_zoo)


def test_the_findings_answer_the_zoo_questions_from_its_files(small_zoo, shapes):
    text = zoo.findings(small_zoo)
    metrics = {name: runs.read_metrics(small_zoo / name / "evals" / f"{shapes.name}-test") for name in BUILT}
    aps = {name: metrics[name]["segm"]["AP"] for name in BUILT if name != "fcn"}
    best = max(aps, key=aps.get)
    # one iteration of training is far from the target
    assert f"**Best Mask R-CNN:** {best}, mask AP {aps[best]:.3f} on test against the target of 0.50: not met." in text
    # only mask-attention has two seeds: it is the variant whose seed mean is judged
    assert "**Every mask-branch variant ≥ 0.40** (seed means): not met; the lowest is mask-attention, " in text
    assert "**Occlusion > 0.25:**" in text and "fcn " in text
    # the tiny test split is shorter than the timer's warm-up, so no latency was measured: no speed claim
    timed = all(metrics[name]["speed"].get("total_ms_p50") is not None for name in ("maskrcnn", "fcn"))
    assert ("**Speed, median per image" in text) == timed
    # the plain branch has one seed here, so the answer rests on the images alone, and says so
    assert "**Does spatial attention in the mask branch help?** " in text and "one training seed a side" in text
    assert "Lovász" not in text  # that model was not built, so its question is not asked
    assert zoo.provenance(small_zoo).startswith("Built by `") and " min on " in zoo.provenance(small_zoo)


def test_a_finding_over_seeds_needs_both_intervals(small_zoo, tmp_path, monkeypatch):
    """With two seeds a side the finding is the seeds' sentence, verdict included."""
    grouped = tmp_path / "zoo"
    shutil.copytree(small_zoo, grouped)
    manifest = zoo.describe(grouped)
    manifest["models"]["maskrcnn"].update(variant="mask-plain", seed=1)  # a second "seed" of the plain branch
    runs.write_json(grouped / zoo.ZOO_FILE, manifest)
    text = zoo.findings(grouped)
    line = next(line for line in text.splitlines() if "Does spatial attention in the mask branch help?" in line)
    assert "mask AP, mask-attention − mask-plain over training seeds: " in line and "(Welch 95%, 2 and 2 seeds)" in line


def test_the_attention_finding_reads_the_focus_and_its_intervals(small_zoo, tmp_path, shapes):
    grouped = tmp_path / "zoo"
    shutil.copytree(small_zoo, grouped)
    folder = grouped / "mask-attention-seed0" / "evals" / f"{shapes.name}-test"
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["attention"] = {"focus_mean": 1.8, "focus_median": 1.7, "instances": 40, "focus_iou_spearman": 0.3,
                            "focus_interval": [1.5, 2.1], "focus_iou_spearman_interval": [0.1, 0.5],
                            "interval_images": 20}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    text = zoo.findings(grouped)
    assert ("**Does mask-attention's attention look at the object?** mask-attention-seed0: mean focus 1.80 "
            "[1.50, 2.10] (above 1) over 40 matched detections") in text
    assert ("Spearman's ρ of focus with mask IoU +0.30 [+0.10, +0.50]; a more focused attention goes with a better "
            "mask.") in text


@pytest.mark.skipif(not (SHIPPED / zoo.ZOO_FILE).is_file(), reason="no zoo shipped in data/zoo yet")
def test_the_readme_shows_the_shipped_zoo():
    assert zoo.readme_tables(ROOT / "README.md") == zoo.readme_text(SHIPPED)


def test_variants_group_the_seeds(small_zoo, shapes):
    manifest = zoo.describe(small_zoo)
    assert zoo.variants(manifest) == {"maskrcnn": ["maskrcnn"], "mask-plain": ["mask-plain-seed0"],
                                      "mask-attention": ["mask-attention-seed0", "mask-attention-seed1"],
                                      "fcn": ["fcn"]}
    table = zoo.variants_table(small_zoo).splitlines()
    assert table[0].startswith("| variant | seeds | mask AP") and len(table) == 2 + 4
    scores = zoo.variant_scores(small_zoo)["mask-attention"]["mask AP"]
    aps = [runs.read_metrics(small_zoo / n / "evals" / f"{shapes.name}-test")["segm"]["AP"]
           for n in ("mask-attention-seed0", "mask-attention-seed1")]
    assert scores["n"] == 2 and scores["mean"] == pytest.approx(sum(aps) / 2)
    assert scores["min"] == min(aps) and scores["max"] == max(aps)
    # the Overview shows the seeds' table for a zoo that has seeds
    assert "| mask-attention | 2 |" in zoo.seeded_variants_table(small_zoo)


def test_a_variant_comparison_needs_both_intervals_to_call_a_winner(small_zoo):
    result = zoo.variant_comparison(small_zoo, "mask-plain", "mask-attention")
    shipped = runs.read_comparison(runs.comparison_files(small_zoo / "mask-attention-seed0")[
        f"{Path(zoo.describe(small_zoo)['dataset']['path']).name}-test-vs-mask-plain-seed0"])["metrics"]["mask_AP"]
    assert result["images"] == shipped
    # one seed of the plain branch: no interval over seeds, so no verdict whatever the images say
    assert result["seeds"]["n_a"] == 1 and result["seeds"]["n_b"] == 2 and result["seeds"]["low"] is None
    assert result["verdict"] is None


@pytest.mark.parametrize("seeds, images, verdict", [
    ((0.01, 0.03), (0.005, 0.02), "B"),
    ((-0.03, -0.01), (-0.02, -0.001), "A"),
    ((-0.01, 0.03), (0.005, 0.02), None),   # the seeds do not repeat it
    ((0.01, 0.03), (-0.005, 0.02), None),   # the images do not show it
    ((0.01, 0.03), (-0.02, -0.01), None),   # they disagree
])
def test_a_winner_needs_both_intervals_on_its_side(seeds, images, verdict):
    as_result = lambda low, high: {"difference": (low + high) / 2, "low": low, "high": high}  # noqa: E731
    assert zoo.agreed_verdict(as_result(*seeds), as_result(*images)) == verdict
    assert zoo.agreed_verdict({"difference": 0.1, "low": None, "high": None}, as_result(*images)) is None


def test_a_zoo_model_knows_its_variant_and_one_seed_a_side_gives_no_verdict(small_zoo, tmp_path):
    assert zoo.variant_of(small_zoo / "mask-attention-seed1") == (small_zoo, "mask-attention")
    assert zoo.variant_of(tmp_path) is None
    sentence = zoo.seed_sentence(small_zoo, "mask-plain", "mask-attention", "test")
    assert sentence.startswith("mask AP, mask-attention − mask-plain over training seeds: ")
    assert "no verdict" in sentence


def test_the_pages_open_the_first_seed_of_each_variant(small_zoo, tmp_path, monkeypatch):
    assert zoo.opens_first(small_zoo / "mask-attention-seed0")
    assert not zoo.opens_first(small_zoo / "mask-attention-seed1")
    assert zoo.opens_first(small_zoo / "fcn") and zoo.opens_first(tmp_path)
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEGCORE_RUNS", str(small_zoo))
    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120).run()
    assert not app.exception
    picked = {Path(p).name for p in app.sidebar.multiselect[0].value}
    assert picked == set(BUILT) - {"mask-attention-seed1"}
