"""segcore's dashboard: the entry file routes between pages and holds the shared sidebar (the run picker).

    streamlit run dashboard/app.py [-- --runs DIR ...]

Runs are found under runs/, data/zoo/, the folders in $SEGCORE_RUNS and those given with --runs or in the
sidebar. The picker's selection is kept in st.session_state, so it holds across pages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on the path, not the repository root
from dashboard import sidebar  # after the path is set
from segcore.errors import SegcoreError

st.set_page_config(page_title="segcore", layout="wide")
parser = argparse.ArgumentParser(add_help=False)
parser.add_argument("--runs", action="append", default=[])
sidebar.show(parser.parse_known_args(sys.argv[1:])[0].runs)

# Not named pages/: a pages/ folder beside the entry file switches Streamlit (and AppTest) to the older
# folder-based navigation, which skips this file on every page but the first.
here = Path(__file__).parent / "app_pages"
# grouped in the sidebar as Streamlit's dynamic-navigation example groups them: what was measured, and the
# models themselves
pages = {
    "Results": [
        st.Page(here / "home.py", title="Overview", icon=":material/home:", default=True),
        st.Page(here / "leaderboard.py", title="Leaderboard", icon=":material/leaderboard:"),
        st.Page(here / "compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page(here / "browse.py", title="Browse images", icon=":material/photo_library:"),
    ],
    "Models": [
        st.Page(here / "live.py", title="Live segmentation", icon=":material/image_search:"),
        st.Page(here / "training.py", title="Training", icon=":material/monitoring:"),
    ],
}
try:
    st.navigation(pages).run()
except SegcoreError as error:
    # a damaged checkpoint, a missing ground-truth file…: one sentence naming the file, not a traceback
    st.error(str(error))
