"""segcore's dashboard: the entry file routes between pages and holds the shared sidebar."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run dashboard/app.py` puts dashboard/ on the path, not the repository root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

st.set_page_config(page_title="segcore", layout="wide")
pages = [st.Page("pages/runs.py", title="Runs", default=True)]
st.navigation(pages).run()
