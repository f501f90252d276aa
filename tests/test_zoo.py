"""The demo zoo: a miniature build end to end, and the shipped zoo's evaluations reproducing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from segcore import runs, zoo
from segcore.cli import main
from segcore.data.synth import generate
from segcore.evaluate import evaluate_run
from segcore.predictor import load_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "zoo"


@pytest.fixture(scope="module")
def small_zoo(shapes, tmp_path_factory) -> Path:
    """Three of the zoo's models trained one iteration each on the tiny dataset."""
    out = tmp_path_factory.mktemp("zoo") / "zoo"
    return zoo.build(out, shapes, only=["maskrcnn", "maskrcnn-attention", "fcn"], iterations=1, progress=False)


def test_a_built_zoo_holds_compact_runs_evaluations_and_comparisons(small_zoo, shapes):
    for name in ("maskrcnn", "maskrcnn-attention", "fcn"):
        run = small_zoo / name
        assert not (run / runs.LAST).exists()  # no optimizer state shipped
        state = torch.load(run / runs.CHECKPOINT, weights_only=True)["state_dict"]
        assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
        loaded = load_model(run)
        assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
        assert set(runs.eval_folders(run)) == {f"{shapes.name}-val", f"{shapes.name}-test"}
        assert (run / runs.CHECKPOINT).stat().st_size < 10e6
    compared = {stem for stem in runs.comparison_files(small_zoo / "maskrcnn-attention")}
    assert compared == {f"{shapes.name}-test-vs-maskrcnn", f"{shapes.name}-test-vs-fcn"}
    manifest = zoo.describe(small_zoo)
    assert {"command", "seed", "git_commit", "dataset", "wall_time_s", "machine", "models"} <= set(manifest)
    assert manifest["dataset"]["checksum"] and manifest["dataset"]["content_sha256"]
    assert manifest["models"]["maskrcnn"]["training"]["max_iters"] == 1
    # the files name the zoo's own folder, never the staging folder it was built in
    text = (small_zoo / "maskrcnn" / "evals" / f"{shapes.name}-test" / "metrics.json").read_text()
    assert str(small_zoo) in text and ".building" not in text
    assert runs.dataset_source(small_zoo / "maskrcnn" / "evals" / f"{shapes.name}-test").images == shapes / "test"
    assert not [p for p in small_zoo.parent.iterdir() if p.name.startswith(".")]


def test_the_tables_come_from_the_shipped_files(small_zoo):
    table = zoo.table(small_zoo).splitlines()
    assert table[0].startswith("| model | mask AP") and len(table) == 2 + 3
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
    """Evaluating a zoo checkpoint again (in a copy of its run) gives the zoo's numbers within 0.005."""
    run = tmp_path / name
    shutil.copytree(zoo_dir / name, run, ignore=shutil.ignore_patterns("evals", "comparisons"))
    again = json.loads((evaluate_run(run, data, "test", progress=False, speed_images=5) / "metrics.json").read_text())
    shipped = runs.read_metrics(zoo_dir / name / "evals" / f"{data.name}-test")
    for section, key in [("segm", "AP"), ("segm", "AP50"), ("bbox", "AP"), ("semantic", "mIoU"), ("boundary", "AP")]:
        assert again[section][key] == pytest.approx(shipped[section][key], abs=0.005), (section, key)


def test_a_zoo_evaluation_reproduces_from_its_half_precision_checkpoint(small_zoo, shapes, tmp_path):
    check_reproduces(small_zoo, shapes, "maskrcnn-attention", tmp_path)


@pytest.mark.skipif(not (SHIPPED / zoo.ZOO_FILE).is_file(), reason="no zoo shipped in data/zoo yet")
def test_shipped_evaluations_reproduce(tmp_path):
    """The built-in data regenerates byte-identical, and a shipped Mask R-CNN evaluates to its shipped
    numbers again."""
    manifest = zoo.describe(SHIPPED)
    data = tmp_path / Path(manifest["dataset"]["path"]).name
    generate(data, seed=manifest["dataset"]["seed"], progress=False)
    assert zoo.check_data(SHIPPED, data) is None
    check_reproduces(SHIPPED, data, "maskrcnn-attention", tmp_path)


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
    metrics = {name: runs.read_metrics(small_zoo / name / "evals" / f"{shapes.name}-test")
               for name in ("maskrcnn", "maskrcnn-attention", "fcn")}
    aps = {name: metrics[name]["segm"]["AP"] for name in ("maskrcnn", "maskrcnn-attention")}
    best = max(aps, key=aps.get)
    # one iteration of training is far from the target
    assert f"**Best Mask R-CNN:** {best}, mask AP {aps[best]:.3f} on test against the target of 0.50: not met." in text
    assert "**Occlusion > 0.25:**" in text and "fcn " in text
    # the tiny test split is shorter than the timer's warm-up, so no latency was measured: no speed claim
    timed = all(metrics[name]["speed"].get("total_ms_p50") is not None for name in ("maskrcnn", "fcn"))
    assert ("**Speed, median per image" in text) == timed
    assert "Does spatial attention in the mask branch help?" in text
    assert "Lovász" not in text  # that model was not built, so its question is not asked
    assert zoo.provenance(small_zoo).startswith("Built by `") and " min on " in zoo.provenance(small_zoo)


@pytest.mark.skipif(not (SHIPPED / zoo.ZOO_FILE).is_file(), reason="no zoo shipped in data/zoo yet")
def test_the_readme_shows_the_shipped_zoo():
    assert zoo.readme_tables(ROOT / "README.md") == zoo.readme_text(SHIPPED)


def test_variants_group_the_seeds_and_a_zoo_without_them_has_one_seed_each(small_zoo, tmp_path):
    manifest = zoo.describe(small_zoo)
    assert zoo.variants(manifest) == {"maskrcnn": ["maskrcnn"], "maskrcnn-attention": ["maskrcnn-attention"],
                                      "fcn": ["fcn"]}
    table = zoo.variants_table(small_zoo).splitlines()
    assert table[0].startswith("| variant | seeds | mask AP") and len(table) == 2 + 3 and "| 1 |" in table[2]

    # the same runs read as two seeds of one variant: the mean and spread come from both
    grouped = tmp_path / "zoo"
    shutil.copytree(small_zoo, grouped)
    for name, seed in (("maskrcnn", 0), ("maskrcnn-attention", 1)):
        manifest["models"][name].update(variant="mask", seed=seed)
    runs.write_json(grouped / zoo.ZOO_FILE, manifest)
    assert zoo.variants(zoo.describe(grouped))["mask"] == ["maskrcnn", "maskrcnn-attention"]
    scores = zoo.variant_scores(grouped)["mask"]["mask AP"]
    aps = [runs.read_metrics(e)["segm"]["AP"] for e in (
        runs.eval_folders(small_zoo / n)[f"{Path(manifest['dataset']['path']).name}-test"]
        for n in ("maskrcnn", "maskrcnn-attention"))]
    assert scores["n"] == 2 and scores["mean"] == pytest.approx(sum(aps) / 2)
    assert scores["min"] == min(aps) and scores["max"] == max(aps)
    # the Overview shows the seeds' table only for a zoo that has seeds
    assert zoo.seeded_variants_table(small_zoo) == ""
    assert "| mask | 2 |" in zoo.seeded_variants_table(grouped)


def test_a_variant_comparison_needs_both_intervals_to_call_a_winner(small_zoo):
    result = zoo.variant_comparison(small_zoo, "fcn", "maskrcnn-attention")
    shipped = runs.read_comparison(runs.comparison_files(small_zoo / "maskrcnn-attention")[
        f"{Path(zoo.describe(small_zoo)['dataset']['path']).name}-test-vs-fcn"])["metrics"]["mask_AP"]
    assert result["images"] == shipped
    # one seed a side: no interval over seeds, so no verdict whatever the images say
    assert result["seeds"]["n_a"] == result["seeds"]["n_b"] == 1 and result["seeds"]["low"] is None
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
    assert zoo.variant_of(small_zoo / "fcn") == (small_zoo, "fcn")
    assert zoo.variant_of(tmp_path) is None
    sentence = zoo.seed_sentence(small_zoo, "fcn", "maskrcnn-attention", "test")
    assert sentence.startswith("mask AP, maskrcnn-attention − fcn over training seeds: ") and "no verdict" in sentence
