"""Browse one run's results image by image: sort by a per-image metric, filter, and open an image."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cached, sidebar, widgets
from segcore import runs
from segcore.app import browse, overview
from segcore.runs import health as run_health

GALLERY_SIZE, GALLERY_COLUMNS = 12, 6

st.title("Browse images")
chosen = sidebar.selected() or sidebar.found()
display = runs.display_names(sidebar.found())
for note in run_health.left_out(chosen, runs.eval_part()):
    st.warning(note)
usable = {r["path"]: run_health.usable_evals(r) for r in chosen}
evaluated = {path: display[path] for path, folders in usable.items() if folders}
if not evaluated:
    st.info("Select an evaluated run in the sidebar.")
    st.stop()
columns = st.columns(2)
run_dir = columns[0].selectbox("Run", list(evaluated), format_func=evaluated.get, key="browse_run")
folders = usable[run_dir]
evaluation = columns[1].selectbox("Dataset and split", list(folders), key="browse_evaluation")
folder = str(folders[evaluation])
per_image, per_instance = cached.per_image(folder), cached.per_instance(folder)
if per_image.empty:
    st.info(f"{folder} has no per-image results; evaluate the run again.")
    st.stop()

with st.expander("Filters", expanded=False):
    columns = st.columns(4)
    classes = columns[0].multiselect("Class", sorted(per_instance["category"].dropna().unique()), key="browse_classes")
    errors = columns[1].multiselect("Error type", list(browse.ERROR_FILTERS), key="browse_errors")
    buckets = columns[2].multiselect("Size", ["small", "medium", "large"], key="browse_sizes")
    use_occlusion = columns[3].checkbox("Occlusion range", key="browse_use_occlusion")
    occlusion = columns[3].slider("Occlusion", 0.0, 1.0, (0.25, 1.0), 0.05, key="browse_occlusion",
                                  disabled=not use_occlusion)
metric_columns = [c for c in ("f1", "mean_iou", "mean_boundary_iou", "semantic_miou", "pixel_accuracy", "fp", "fn",
                              "n_objects", "mean_occlusion") if c in per_image]
columns = st.columns([2, 1])
sort_by = columns[0].selectbox("Sort by", metric_columns, key="browse_sort")
ascending = columns[1].toggle("Worst first", value=sort_by not in ("fp", "fn"), key="browse_ascending")
table = browse.filter_images(per_image, per_instance, classes=classes, error_types=errors, area_buckets=buckets,
                             occlusion=occlusion if use_occlusion else None)
table = table.sort_values(sort_by, ascending=ascending, na_position="last", kind="stable")
st.caption(f"{len(table)} of {len(per_image)} images")
if table.empty:
    st.stop()
source = runs.dataset_source(folder)
threshold = st.slider("Score threshold", 0.0, 1.0, 0.5, 0.05, key="browse_threshold")
coco_gt = cached.ground_truth(source)
gallery, listing = st.tabs(["Gallery", "Table"])
with gallery:
    # The first images in the chosen order, predictions coloured by outcome: where the model fails, at a glance.
    shown = table.head(GALLERY_SIZE)
    cells = st.columns(GALLERY_COLUMNS)
    for i, row in enumerate(shown.itertuples()):
        thumb = browse.image_view(coco_gt, source, int(row.image_id), cached.predictions(folder), per_instance,
                                  score_threshold=threshold)
        canvas = thumb.image if thumb.image is not None else browse.blank_canvas(thumb.size)
        value = getattr(row, sort_by)
        widgets.outcome_picture(cells[i % GALLERY_COLUMNS], canvas, thumb.pred_masks, thumb.pred_outcomes,
                                caption=f"{row.image_id} · {sort_by} " + ("–" if pd.isna(value) else f"{value:.2f}"))
with listing:
    st.dataframe(table, hide_index=True, width="stretch")
file_names = browse.file_names(per_image)
image_id = st.selectbox("Open image", table["image_id"].tolist(), key="browse_image",
                        format_func=lambda i: f"{i}: {file_names.get(i, '')}")
view = browse.image_view(coco_gt, source, int(image_id), cached.predictions(folder), per_instance,
                         score_threshold=threshold)
if view.image is None:
    st.warning(f"The image file {view.file_name} is not in {source.images}; masks are drawn on grey.")
canvas = view.image if view.image is not None else browse.blank_canvas(view.size)
st.subheader(f"Image {image_id}: {view.file_name}")
pictures = st.columns(2)
widgets.outcome_picture(pictures[0], canvas, view.gt_masks, view.gt_outcomes, view.gt_labels,
                        caption="Ground truth: green found, blue missed")
widgets.outcome_picture(pictures[1], canvas, view.pred_masks, view.pred_outcomes, view.pred_labels,
                        caption=f"Predictions scoring ≥ {threshold:.2f}: green true positive, red false positive "
                                "(TIDE type written)")
details = view.instances.drop(columns=["image_id"])
details = details[details["score"].isna() | (details["score"].fillna(1.0) >= threshold)]
st.dataframe(details, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("score", "iou", "boundary_iou")})

# Attention lives in the model, not in the eval folder: shown when the run's model is at hand.
manifest = next(r for r in chosen if r["path"] == run_dir)
if run_health.damage_in(manifest, runs.CHECKPOINT):
    st.caption("Attention maps need the run's model: " + " ".join(run_health.damage_in(manifest, runs.CHECKPOINT)))
elif overview.has_attention(manifest) and view.image is not None:
    with st.expander("Attention of the mask branch on this image"):
        loaded = cached.model(run_dir)
        result = cached.segment(run_dir, view.image)
        shown = result.prediction.above(threshold)
        if len(shown) == 0 or shown.attention is None:
            st.info("No instance at this threshold.")
        else:
            widgets.attention_viewer(view.image, shown, loaded.class_names, key="browse_instance",
                                     truth=(view.gt_masks, view.gt_classes),
                                     no_truth="The image file's size differs from its ground truth's: no attention "
                                              "focus.")
