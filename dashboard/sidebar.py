"""The shared sidebar: where runs are looked for, and the run picker whose selection every page uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import cached
from segcore import runs, zoo
from segcore.app import overview
from segcore.errors import SegcoreError
from segcore.runs import health as run_health

SELECTED = "selected_runs"
FOUND = "found_runs"


def show(cli_roots: list[str]) -> None:
    """Find the runs, check each for damage and draw the picker; pages read them with :func:`found` and
    :func:`selected`, each manifest with its "damage" (run_health.check_run)."""
    extra = st.sidebar.text_input("More run folders", key="extra_roots", placeholder=f"DIR{os.pathsep}DIR",
                                  help="Folders holding run directories, inside the folder the dashboard runs in, "
                                       "besides runs/, data/zoo/, $SEGCORE_RUNS and --runs.")
    roots = runs.run_roots(*cli_roots, *_typed_roots(extra))
    found = [{**manifest, "damage": cached.damage(manifest["path"])} for manifest in runs.find_runs(*roots)]
    st.session_state[FOUND] = found
    by_path = {r["path"]: r for r in found}
    names = runs.display_names(found)
    # A run that disappeared leaves the selection; on the first visit every whole run is selected, but for the
    # later seeds of the zoo's variants (the first seed stands for its variant on the pages)
    if SELECTED not in st.session_state:
        st.session_state[SELECTED] = [p for p, r in by_path.items() if not run_health.damage_of(r)
                                      and zoo.opens_first(p)]
    st.session_state[SELECTED] = [p for p in st.session_state[SELECTED] if p in by_path]
    st.sidebar.multiselect("Runs", list(by_path), key=SELECTED,
                           format_func=lambda p: overview.run_label(by_path[p], names[p]),
                           help="The runs the pages show; the selection holds across pages. A damaged run starts "
                                "unselected.")
    st.sidebar.caption(f"{len(found)} runs in " + ", ".join(str(r) for r in roots))
    # on every page, so that a run missing from one is explained there
    for manifest in found:
        damage = run_health.damage_of(manifest)
        if damage:
            st.sidebar.warning(f"{names[manifest['path']]} is damaged: " + " ".join(damage.values()))


def _typed_roots(text: str) -> list[str]:
    """The run folders typed into the sidebar that lie within the dashboard's folder: a visitor may not
    point it at the rest of the machine (the operator does that with --runs or $SEGCORE_RUNS)."""
    allowed = []
    for typed in filter(None, text.split(os.pathsep)):
        try:
            allowed.append(str(runs.confine(typed, [Path.cwd()], what="run folder",
                                            remedy="start the dashboard with --runs DIR to show runs from elsewhere.")))
        except SegcoreError as error:
            st.sidebar.error(str(error))
    return allowed


def found() -> list[dict[str, Any]]:
    """Every run found, as find_runs' manifests."""
    return st.session_state.get(FOUND, [])


def selected() -> list[dict[str, Any]]:
    """The runs picked in the sidebar, in the picker's order."""
    by_path = {r["path"]: r for r in found()}
    return [by_path[p] for p in st.session_state.get(SELECTED, []) if p in by_path]
