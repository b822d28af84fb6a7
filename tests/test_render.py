from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from promptseg import Detections, InputError, annotate
from promptseg.render import _text_color, instance_colors


def test_nothing_to_draw_leaves_the_image_as_is(voc: dict[str, Any]) -> None:
    out = annotate(voc["rgb"], Detections.empty((375, 500), with_masks=True))
    assert np.array_equal(out, voc["rgb"])
    assert out is not voc["rgb"]


def test_masks_boxes_and_labels_are_drawn_and_the_input_is_untouched(voc: dict[str, Any]) -> None:
    image = voc["rgb"].copy()
    det = Detections(
        xyxy=voc["xyxy"][:3],
        image_size=(375, 500),
        labels=voc["labels"][:3],
        scores=[0.9, 0.5, 0.3],
        masks=voc["masks"][:3],
    )
    out = annotate(image, det)
    assert np.array_equal(image, voc["rgb"])
    assert out.shape == image.shape and out.dtype == np.uint8
    changed = np.abs(out.astype(int) - image.astype(int)).sum(axis=2) > 0
    for m in det.masks:
        assert changed[m].mean() > 0.9  # every mask is tinted
    x1, y1 = int(det.xyxy[0, 0]), int(det.xyxy[0, 1])
    assert changed[max(0, y1 - 10) : y1, x1 : x1 + 30].any()  # a label tag above the first box
    far = ~np.any(det.masks, axis=0)
    far[:, :40] = False  # keep well away from boxes and tags
    assert changed[far].mean() < 0.5


def test_boxes_only(voc: dict[str, Any]) -> None:
    det = Detections(xyxy=voc["xyxy"][:2], image_size=(375, 500), labels=["a", "b"])
    out = annotate(voc["rgb"], det, show_scores=False)
    x1, y1, _x2, y2 = voc["xyxy"][0].astype(int)
    assert not np.array_equal(out[y1:y2, x1], voc["rgb"][y1:y2, x1])  # the left edge is drawn


def test_wrong_image_is_refused(voc: dict[str, Any]) -> None:
    det = Detections.empty((10, 10))
    with pytest.raises(InputError, match="detections are for an image"):
        annotate(voc["rgb"], det)
    with pytest.raises(InputError, match="uint8"):
        annotate(voc["rgb"].astype(np.float32), Detections.empty((375, 500)))


def test_colours_are_distinct_and_text_contrasts() -> None:
    colors = instance_colors(12).astype(int)
    assert len({tuple(c) for c in colors}) == 12
    assert _text_color((255, 230, 0)) == (0, 0, 0)  # yellow tag: black text
    assert _text_color((20, 40, 160)) == (255, 255, 255)  # dark blue tag: white text
