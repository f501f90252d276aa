"""Widgets more than one page draws: the attention viewer and the outcome picture."""

from __future__ import annotations

import streamlit as st

from segcore.app import figures, live
from segcore.visualize import outcome_overlay


def outcome_picture(container, canvas, masks, outcomes, labels=None, *, caption: str) -> None:
    """Masks coloured by outcome (green matched, red false positive, blue missed) over ``canvas``."""
    container.image(live.png_bytes(outcome_overlay(canvas, masks, outcomes, labels)), caption=caption,
                    width="stretch", output_format="PNG")


def attention_viewer(image, shown, class_names: list[str], *, key: str, truth=None, side_by_side: bool = True,
                     label: str = "Instance",
                     no_truth: str = "Attention focus needs the image's ground truth: pick the image from a dataset.",
                     ) -> None:
    """Pick an instance of ``shown`` (a Prediction with attention) and draw its attention over ``image`` and
    as the raw map in its RoI, with its focus on the ground truth where ``truth`` ((N, H, W) masks, classes)
    is given for this image.

    Args:
        image: (3, H, W) uint8, the image the prediction was made on.
        key: the widgets' key, unique on the page.
        side_by_side: the two pictures in two columns (else one under the other, for a narrow panel).
        no_truth: the caption where the focus cannot be measured (no ground truth, or one of another size).
    """
    index = st.selectbox(label, range(len(shown)), key=key, format_func=lambda i: (
        f"{i}: {class_names[int(shown.labels[i]) - 1]} {float(shown.scores[i]):.2f}"))
    places = st.columns(2) if side_by_side else (st, st)
    places[0].image(live.png_bytes(live.attention_overlay(image, shown.attention[index])),
                    caption="attention over the image", width="stretch", output_format="PNG")
    places[1].plotly_chart(figures.attention_heatmap(shown.attention_roi[index].numpy()), width="stretch",
                           key=f"{key}_raw")
    if truth is not None and tuple(truth[0].shape[-2:]) == tuple(image.shape[-2:]):
        st.caption(live.focus_caption(live.instance_focus(shown, index, *truth, class_names)))
    else:
        st.caption(no_truth)
