"""Overview: what runs there are, and, with none, how to get some."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import cached, sidebar
from segcore import zoo
from segcore.app import leaderboard, overview
from segcore.errors import SegcoreError

st.title("segcore")
st.caption("Mask R-CNN with an attention mask branch, FCN and U-Net on one scoreboard: COCO AP, IoU, boundary "
           "quality and speed, with confidence intervals.")

found = sidebar.found()
if not found:
    st.info("No runs yet. Runs are looked for in runs/, data/zoo/ and the folders in $SEGCORE_RUNS. "
            "Make some with one of these:")
    st.markdown("**Build the demo models** (trains small Mask R-CNN, FCN and U-Net models on the built-in data "
                "into data/zoo/):")
    st.code("python -m segcore zoo build", language="bash")
    st.markdown("**Train and evaluate your own:**")
    st.code("python -m segcore train --model maskrcnn --data data/shapes --out runs/maskrcnn --epochs 12\n"
            "python -m segcore eval runs/maskrcnn --data data/shapes --split val", language="bash")
    st.markdown("**Import another tool's predictions** (COCO results JSON from Detectron2, MMDetection, "
                "Ultralytics…):")
    st.code("python -m segcore eval --gt data/shapes/annotations/instances_val.json --predictions results.json "
            "--out runs/imported --name my-model", language="bash")
    st.stop()

# The first thing a newcomer sees: the scoreboard, on the test split when there is one.
evaluations = leaderboard.evaluation_names(found)
if evaluations:
    preferred = [e for e in evaluations if e.endswith("-test")] or evaluations
    evaluation = preferred[0]
    table = cached.leaderboard(found, evaluation)
    st.subheader(f"Scoreboard on {evaluation}")
    st.dataframe(table[["run", "family", "mask AP", "AP50", "box AP", "mIoU", "boundary AP", "latency p50 (ms)"]],
                 hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in leaderboard.ACCURACY_COLUMNS})
    st.page_link("app_pages/leaderboard.py", label="Every metric, charts and intervals: the Leaderboard",
                 icon=":material/leaderboard:")
zoo_dir = Path("data/zoo")
if (zoo_dir / zoo.ZOO_FILE).is_file():
    st.subheader("What the demo zoo shows")
    st.caption("Paired differences B − A on the test split, with 95% bootstrap intervals over images. An interval "
               "that includes 0 means the split cannot tell the two apart.")
    # a damaged zoo must not hide the runs below, nor one part of it the other
    for part in (zoo.seeded_variants_table, zoo.findings, zoo.comparisons_table):
        try:
            st.markdown(part(zoo_dir))
        except SegcoreError as error:
            st.warning(str(error))
        except (KeyError, TypeError) as error:
            st.warning(f"{zoo_dir} is incomplete ({type(error).__name__}: {error}); build it again with make zoo.")

rows = overview.run_rows(found)
st.subheader(f"{len(found)} runs")
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
notes = overview.needing_attention(rows)
if notes["damaged"]:
    damaged = notes["damaged"]
    st.warning(f"{len(damaged)} damaged run{'s' * (len(damaged) > 1)}: the pages show what still reads and leave "
               "the rest out. " + " ".join(damaged))
if notes["killed"]:
    st.info("Stopped while training (its process is gone): " + ", ".join(notes["killed"]) + ". Each lost at most "
            "the epoch under way; continue with `python -m segcore train --out RUN_DIR --data DATA --resume`, DATA "
            "being the dataset it was trained on.")
if notes["not_evaluated"]:
    st.caption(f"Not evaluated yet: {', '.join(notes['not_evaluated'])}. Evaluate them from the Leaderboard page, or "
               "with `python -m segcore eval RUN_DIR --data DIR --split val`.")
