"""The shared sidebar: where runs are looked for, and the run picker whose selection every page uses."""

from __future__ import annotations

import os
from typing import Any

import streamlit as st

from segcore import runs

SELECTED = "selected_runs"
FOUND = "found_runs"


def show(cli_roots: list[str]) -> None:
    """Find the runs and draw the picker; pages read them with :func:`found` and :func:`selected`."""
    extra = st.sidebar.text_input("More run folders", key="extra_roots", placeholder=f"DIR{os.pathsep}DIR",
                                  help="Folders holding run directories, besides runs/, data/zoo/, $SEGCORE_RUNS "
                                       "and --runs.")
    roots = runs.run_roots(*cli_roots, *filter(None, extra.split(os.pathsep)))
    found = runs.find_runs(*roots)
    st.session_state[FOUND] = found
    by_path = {r["path"]: r for r in found}
    names = runs.display_names(found)
    # A run that disappeared leaves the selection; on the first visit every run is selected.
    if SELECTED not in st.session_state:
        st.session_state[SELECTED] = list(by_path)
    st.session_state[SELECTED] = [p for p in st.session_state[SELECTED] if p in by_path]
    st.sidebar.multiselect("Runs", list(by_path), key=SELECTED, format_func=lambda p: _label(by_path[p], names[p]),
                           help="The runs the pages show; the selection holds across pages.")
    st.sidebar.caption(f"{len(found)} runs in " + ", ".join(str(r) for r in roots))


def _label(manifest: dict[str, Any], name: str) -> str:
    return f"{name} ({manifest.get('model') or manifest.get('kind') or '?'})"


def found() -> list[dict[str, Any]]:
    """Every run found, as find_runs' manifests."""
    return st.session_state.get(FOUND, [])


def selected() -> list[dict[str, Any]]:
    """The runs picked in the sidebar, in the picker's order."""
    by_path = {r["path"]: r for r in found()}
    return [by_path[p] for p in st.session_state.get(SELECTED, []) if p in by_path]
