"""The dashboard's pages, through Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def test_with_no_runs_the_home_page_says_how_to_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert "segcore train" in app.code[0].value


def test_runs_are_listed(tiny_run, monkeypatch):
    monkeypatch.chdir(tiny_run.parent.parent)
    (Path("runs")).symlink_to(tiny_run.parent, target_is_directory=True)
    app = AppTest.from_file(APP, default_timeout=60).run()
    assert not app.exception
    assert "tiny" in app.dataframe[0].value["name"].tolist()
