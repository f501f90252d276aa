"""The runs found under runs/ and data/zoo/, and how to make one."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from segcore.runs import find_runs

st.title("segcore")
st.caption("Train, evaluate and compare segmentation models: Mask R-CNN with an attention mask branch, FCN, U-Net.")

runs = find_runs("runs", "data/zoo")
if not runs:
    st.info("No runs yet. Train one, for example:")
    st.code("python -m segcore train --model maskrcnn --data data/shapes --out runs/maskrcnn --epochs 12", language="bash")
else:
    table = pd.DataFrame([{
        "name": r.get("name"), "model": r.get("model"), "status": r.get("status", r.get("error")),
        "epochs": r.get("epochs_done"), "best val mIoU": (r.get("best") or {}).get("value"),
        "wall time (s)": r.get("wall_time_s"), "path": r["path"],
    } for r in runs])
    st.dataframe(table, hide_index=True, use_container_width=True)
