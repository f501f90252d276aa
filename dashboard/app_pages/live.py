"""Live segmentation: upload images (or pick one from a dataset), run one or more models side by side,
and look at masks, instances, attention maps and semantic maps."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cached, sidebar, widgets
from segcore import runs
from segcore.app import browse, folders, live
from segcore.data.images import read_image
from segcore.errors import SegcoreError
from segcore.models import model_spec
from segcore.runs import health as run_health
from segcore.visualize import overlay

st.title("Live segmentation")
display = runs.display_names(sidebar.found())
models = {r["path"]: display[r["path"]] for r in sidebar.found() if run_health.usable_model(r)}
for note in run_health.left_out([r for r in sidebar.found() if run_health.has_model(r)], runs.CHECKPOINT):
    st.warning(note)
if not models:
    st.info("No trained model found: train one with `python -m segcore train`, or build the demo models with "
            "`python -m segcore zoo build`.")
    st.stop()
picked = [r["path"] for r in sidebar.selected() if r["path"] in models]
chosen = st.multiselect("Models (run side by side)", list(models), default=picked[:2] or list(models)[:1],
                        format_func=models.get, key="live_models")
source = st.radio("Image", ["Upload", "From a dataset"], horizontal=True, key="live_source")
# (name, (3, h, w) uint8 fitted to live.MAX_SIDE, the original's (H, W)): no full-size image outlives its decoding
images: list[tuple[str, object, tuple[int, int]]] = []
truth = None  # the dataset's ground truth, for images picked from a dataset: attention focus needs it
if source == "Upload":
    # segcore's upload limit, so that the browser refuses a larger file before sending it
    uploads = st.file_uploader("PNG, JPEG or TIFF: 8- or 16-bit, grayscale, RGB, RGBA or CMYK",
                               accept_multiple_files=True, type=["png", "jpg", "jpeg", "tif", "tiff"],
                               max_upload_size=live.MAX_UPLOAD_MB, key="live_upload")
    uploads = uploads or []
    if len(uploads) > live.MAX_IMAGES:
        st.warning(f"{len(uploads)} images are uploaded; the first {live.MAX_IMAGES} are segmented. Remove some "
                   f"to see the others.")
    for upload in uploads[:live.MAX_IMAGES]:
        try:
            images.append((upload.name, *live.shown(live.decode_upload(upload.name, upload.getvalue()))))
        except SegcoreError as error:
            st.error(str(error))
else:
    data = st.text_input("Dataset folder", value="data/shapes", key="live_data")
    split = st.text_input("Split", value="val", key="live_split")
    try:  # a visitor reads images under the dashboard's folder or the runs' own datasets, nowhere else
        folder = folders.split_folder(data, split, sidebar.found(), remedy="give one under the dashboard's folder or "
                                      "the dataset of a listed run.")
    except SegcoreError as error:
        st.error(str(error))
        st.stop()
    files = folders.image_files(folder)
    if not files:
        st.warning(f"No images in {folder}; generate the built-in data with `make data` or give a COCO-layout folder.")
    else:
        name = st.selectbox("Image", files, key="live_file")
        try:
            images.append((name, *live.shown(read_image(folder / name))))
            split_truth = folders.split_source(folder)
            if split_truth is not None:
                truth = browse.ground_truth_of_file(cached.ground_truth(split_truth), name)
        except SegcoreError as error:
            st.error(str(error))
if not chosen or not images:
    st.stop()

columns = st.columns(2)
threshold = columns[0].slider("Score threshold", 0.0, 1.0, 0.5, 0.05, key="live_threshold")
opacity = columns[1].slider("Mask opacity", 0.0, 1.0, 0.5, 0.05, key="live_opacity")
for name, image, (height, width) in images:
    st.subheader(name)
    if (height, width) != tuple(image.shape[-2:]):
        st.info(f"{name} is {width}×{height} pixels; it was scaled down to {image.shape[2]}×{image.shape[1]} for "
                f"the models.")
    panels = st.columns(len(chosen))
    for panel, run_dir in zip(panels, chosen):
        with panel:
            try:  # a model that cannot be loaded is named in its own panel; the others still run
                loaded = cached.model(run_dir)
                result = cached.segment(run_dir, image)
            except SegcoreError as error:
                st.error(str(error))
                continue
            shown = result.prediction.above(threshold)
            st.image(live.png_bytes(overlay(image, shown, loaded.class_names, alpha=opacity)),
                     caption=f"{models[run_dir]} · {len(shown)} instances · {result.milliseconds:.0f} ms",
                     width="stretch", output_format="PNG")
            st.dataframe(pd.DataFrame(live.instances_table(shown, loaded.class_names)), hide_index=True,
                         width="stretch")
            if shown.attention is not None and len(shown):
                widgets.attention_viewer(image, shown, loaded.class_names, key=f"live_attention_{run_dir}_{name}",
                                         truth=truth, side_by_side=False, label="Attention of instance")
            if model_spec(loaded.name).kind == "semantic":
                st.image(live.png_bytes(live.semantic_picture(image, result.prediction, len(loaded.class_names),
                                                              opacity)),
                         caption="semantic map (its connected components are the instances above)",
                         width="stretch", output_format="PNG")
            png_name, json_name = live.download_names(name, loaded.name)
            downloads = st.columns(2)
            # Made when clicked, on another thread: the page does not wait for files nobody asked for.
            downloads[0].download_button("Masks (PNG)", lambda shown=shown: live.masks_png(shown),
                                         png_name, "image/png", on_click="ignore",
                                         key=f"live_png_{run_dir}_{name}")
            downloads[1].download_button(
                "Predictions (COCO JSON)",
                lambda shown=shown, loaded=loaded, name=name, size=tuple(image.shape[-2:]): live.coco_json(
                    shown, loaded, name, size),
                json_name, "application/json", on_click="ignore", key=f"live_json_{run_dir}_{name}")
