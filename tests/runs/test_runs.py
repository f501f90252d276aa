"""Reading run directories: the comparisons found among runs, and whether they are current."""

from __future__ import annotations

import os

from segcore import runs


def make_runs(root, names):
    manifests = []
    for name, folder in names:
        runs.write_json(root / folder / runs.RUN_FILE, {"name": name, "kind": "trained"})
        manifests.append({"name": name, "path": str(root / folder)})
    return manifests


def comparison(a: dict, **more) -> dict:
    """A comparison file's content, recording run A as ``a``."""
    return {"a": a, "b": {"name": "b"}, "metrics": {}, "most_different": {}, "resamples": 10, "seed": 0, **more}


def test_compared_pairs_are_found_in_run_b_by_the_run_a_it_records(tmp_path):
    fcn, maskrcnn, unet = make_runs(tmp_path, [("fcn", "fcn"), ("maskrcnn", "maskrcnn"), ("unet", "unet")])
    comparisons = tmp_path / "maskrcnn" / "comparisons"
    runs.write_json(comparisons / "shapes-test-vs-fcn.json", comparison({"name": "fcn", "run": fcn["path"]}))
    runs.write_json(comparisons / "shapes-val-vs-unet.json", comparison({"name": "unet"}))  # by name alone
    runs.write_json(tmp_path / "fcn" / "comparisons" / "shapes-test-vs-elsewhere.json",
                    comparison({"name": "elsewhere"}))
    (comparisons / "shapes-test-vs-unet.json").write_text("{damaged")
    runs.write_json(comparisons / "shapes-val-vs-fcn.json", comparison({"name": "fcn", "run": 7}))  # wrong shape
    everything = [fcn, maskrcnn, unet]
    assert runs.compared_pairs(everything, "shapes-test") == [(fcn["path"], maskrcnn["path"])]
    assert runs.compared_pairs(everything, "shapes-val") == [(unet["path"], maskrcnn["path"])]
    assert runs.compared_pairs([fcn], "shapes-test") == []


def test_runs_sharing_a_name_are_told_apart_by_the_recorded_path(tmp_path):
    mine, zoo, b = make_runs(tmp_path, [("maskrcnn", "runs/maskrcnn"), ("maskrcnn", "zoo/maskrcnn"),
                                        ("attention", "zoo/attention")])
    runs.write_json(tmp_path / "zoo" / "attention" / "comparisons" / "shapes-test-vs-maskrcnn.json",
                    comparison({"name": "maskrcnn", "run": zoo["path"]}))
    assert runs.compared_pairs([mine, zoo, b], "shapes-test") == [(zoo["path"], b["path"])]
    runs.write_json(tmp_path / "zoo" / "attention" / "comparisons" / "shapes-test-vs-maskrcnn.json",
                    comparison({"name": "maskrcnn"}))  # no path, and the name is ambiguous: no pair
    assert runs.compared_pairs([mine, zoo, b], "shapes-test") == []


def test_a_comparison_is_current_by_the_times_recorded_not_the_file_times(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    metrics = {"n_images": 0, "source": {}}
    for folder in folders:
        runs.write_json(folder / "metrics.json", {**metrics, "created": "2026-12-04T03:00:00+00:00"})
        (folder / "per_image.csv").write_text("\n")
    made = tmp_path / "comparison.json"
    runs.write_json(made, comparison({"name": "a"}, created="2026-12-04T03:05:00+00:00"))
    os.utime(made, (0, 0))  # as a checkout may leave it: older on disk than the evaluations
    assert runs.comparison_is_current(made, *folders)
    runs.write_json(folders[1] / "metrics.json", {**metrics, "created": "2026-12-04T03:10:00+00:00"})  # again
    assert not runs.comparison_is_current(made, *folders)


def test_a_history_row_cut_short_is_dropped_on_resume(tmp_path):
    # a full disk or a power cut can end the file in the middle of a row: resuming must not keep it
    path = tmp_path / "history.csv"
    path.write_text("epoch,iteration,loss\n1,1,0.5\n1,2,0.4\n1,3")
    runs.CsvLog(path, keep_until_iteration=3)
    assert path.read_text() == "epoch,iteration,loss\n1,1,0.5\n1,2,0.4\n"
