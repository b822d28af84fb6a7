"""COCO annotations and results for one image, both ways.

COCO ``bbox`` is ``[x, y, width, height]`` in pixels (floats); ``segmentation`` is COCO RLE (compressed
counts as str, or uncompressed counts as a list of ints) or a list of polygons. What :func:`to_coco`
writes loads in pycocotools' ``COCO`` / ``loadRes`` and evaluates with ``COCOeval``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from promptseg.errors import ConfigError, FormatError
from promptseg.formats.result import _preview
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.ops.masks import from_polygons, from_rle, to_polygons, to_rle
from promptseg.types import BoolArray, Detections, ImageSize

__all__ = ["from_coco", "to_coco"]


def to_coco(
    det: Detections,
    image_id: int,
    *,
    category_ids: Mapping[str, int],
    kind: Literal["results", "annotations"] = "annotations",
    mask_format: Literal["rle", "polygon"] = "rle",
    start_id: int = 1,
) -> list[dict[str, Any]]:
    """Detections of one image as COCO annotation or result dicts.

    Args:
        det: the detections of image ``image_id``.
        image_id: the COCO image id.
        category_ids: COCO category id of each label; every label in ``det`` must be in it.
        kind: ``"annotations"`` (a dataset's ``annotations`` list: ``id``, ``image_id``,
            ``category_id``, ``bbox``, ``area``, ``iscrowd`` 0, ``segmentation`` when there are masks,
            and ``score`` / ``track_id`` when set) or ``"results"`` (detection results for COCOeval:
            ``image_id``, ``category_id``, ``bbox``, ``score`` (1.0 for every instance when ``det`` has
            no scores) and ``segmentation`` when there are masks).
        mask_format: ``"rle"`` (compressed RLE, counts as str; exact) or ``"polygon"`` (COCO polygons,
            holes bridged so pycocotools rasterises them back exactly, see
            :func:`promptseg.ops.masks.to_polygons`; needs OpenCV; an empty mask is written as RLE,
            since an empty polygon list does not load). Results are always RLE.
        start_id: ``id`` of the first annotation; the next ones count up.

    Returns:
        One dict per instance, in order. ``area`` is the mask's pixel count when there are masks,
        else the box area; ``bbox`` floats are exact, so ``x + w`` gives back the float32 ``x2``.

    Raises:
        FormatError: when a label has no category id (the message lists the known labels).
        ConfigError: for an unknown ``kind`` or ``mask_format``, or polygons asked for results.

    Example:
        >>> det = Detections(xyxy=[[10, 20, 50, 80]], image_size=(100, 100), labels=["cup"])
        >>> to_coco(det, 7, category_ids={"cup": 47})
        [{'id': 1, 'image_id': 7, 'category_id': 47, 'bbox': [10.0, 20.0, 40.0, 60.0], 'area': 2400.0, \
'iscrowd': 0}]
    """
    if kind not in ("results", "annotations"):
        raise ConfigError(f"kind must be 'annotations' or 'results', got {kind!r}")
    if mask_format not in ("rle", "polygon"):
        raise ConfigError(f"mask_format must be 'rle' or 'polygon', got {mask_format!r}")
    if kind == "results" and mask_format == "polygon":
        raise ConfigError("COCO results carry RLE segmentations (pycocotools' loadRes cannot read polygons)")
    unknown = sorted(set(det.labels.tolist()) - set(category_ids))
    if unknown:
        raise FormatError(
            f"labels {unknown} have no COCO category id; known labels: {sorted(category_ids)}. "
            f"Add them to category_ids"
        )
    out: list[dict[str, Any]] = []
    for i in range(len(det)):
        x1, y1, x2, y2 = (float(v) for v in det.xyxy[i])
        # float32 -> float64 differences are exact, so x + w gives x2 back
        bbox = [x1, y1, x2 - x1, y2 - y1]
        ann: dict[str, Any] = {}
        if kind == "annotations":
            ann["id"] = start_id + i
        ann["image_id"] = image_id
        ann["category_id"] = int(category_ids[str(det.labels[i])])
        ann["bbox"] = bbox
        if kind == "results":
            ann["score"] = 1.0 if det.scores is None else float(det.scores[i])
        if det.masks is not None:
            mask = det.masks[i]
            polygons = to_polygons(mask) if mask_format == "polygon" else []
            ann["segmentation"] = polygons if polygons else dict(to_rle(mask))
        if kind == "annotations":
            area = int(det.masks[i].sum()) if det.masks is not None else bbox[2] * bbox[3]
            ann["area"] = float(area)
            ann["iscrowd"] = 0
            if det.scores is not None:
                ann["score"] = float(det.scores[i])
            if det.track_ids is not None:
                ann["track_id"] = int(det.track_ids[i])
        out.append(ann)
    return out


def from_coco(
    anns: Sequence[Mapping[str, Any]], image_size: ImageSize, *, category_names: Mapping[int, str]
) -> Detections:
    """COCO annotations or results of one image as Detections.

    Args:
        anns: the annotation (or result) dicts of one image, e.g.
            ``[a for a in coco["annotations"] if a["image_id"] == 7]``.
        image_size: ``(H, W)`` of that image.
        category_names: label of each COCO category id.

    Returns:
        Detections in the order of ``anns``. ``bbox`` gives the box (from the mask when an annotation
        has a segmentation but no bbox); ``segmentation`` may be compressed RLE (str or bytes counts),
        uncompressed RLE or polygons. Masks are None when no annotation has a segmentation, else an
        annotation without one (missing or ``[]``) gets an empty mask. ``score`` and ``track_id`` are
        read when every annotation has them. ``id``, ``area`` and ``iscrowd`` are not kept.

    Raises:
        FormatError: for a malformed annotation (naming its index, id and field), an unknown category
            id (listing the known ones) or an RLE of another size than ``image_size``.
    """
    if isinstance(anns, Mapping) or not isinstance(anns, Sequence):
        raise FormatError(f"COCO annotations must be a list of dicts, got {type(anns).__name__}")
    h, w = int(image_size[0]), int(image_size[1])
    boxes: list[list[float]] = []
    labels: list[str] = []
    masks: list[BoolArray | None] = []
    scores: list[float | None] = []
    track_ids: list[int | None] = []
    for i, ann in enumerate(anns):
        if not isinstance(ann, Mapping):
            raise FormatError(f"COCO annotation {i}: expected a dict, got {_preview(ann)}")
        where = f"COCO annotation {i}" + (f" (id {ann['id']})" if "id" in ann else "")
        category = ann.get("category_id")
        if not isinstance(category, int) or category not in category_names:
            raise FormatError(
                f"{where}: category_id {category!r} is not in category_names; "
                f"known ids: {sorted(category_names)}"
            )
        labels.append(str(category_names[category]))
        mask = _segmentation(ann.get("segmentation"), (h, w), where)
        masks.append(mask)
        boxes.append(_bbox(ann, mask, where))
        score = ann.get("score")
        if score is not None and (
            not isinstance(score, (int, float)) or isinstance(score, bool) or not 0 <= score <= 1
        ):
            raise FormatError(f"{where}.score: expected a number in [0, 1], got {_preview(score)}")
        scores.append(None if score is None else float(score))
        track_id = ann.get("track_id")
        if track_id is not None and (not isinstance(track_id, int) or isinstance(track_id, bool)):
            raise FormatError(f"{where}.track_id: expected an int, got {_preview(track_id)}")
        track_ids.append(track_id)

    if not boxes:
        return Detections(xyxy=np.zeros((0, 4), np.float32), image_size=(h, w), labels=np.zeros(0, np.str_))
    have_masks = any(m is not None for m in masks)
    return Detections(
        xyxy=np.array(boxes, np.float32),
        image_size=(h, w),
        labels=np.array(labels, np.str_),
        scores=np.array(scores, np.float32) if all(s is not None for s in scores) else None,
        masks=np.stack([np.zeros((h, w), bool) if m is None else m for m in masks]) if have_masks else None,
        track_ids=np.array(track_ids, np.int64) if all(t is not None for t in track_ids) else None,
    )


def _segmentation(value: Any, image_size: ImageSize, where: str) -> BoolArray | None:
    if value is None or (isinstance(value, list) and not value):
        return None
    try:
        if isinstance(value, Mapping):
            mask = from_rle(value)
            if mask.shape != image_size:
                raise FormatError(
                    f"RLE size {list(mask.shape)} does not match the image size {list(image_size)} (H, W)"
                )
            return mask
        if isinstance(value, list):
            return from_polygons(value, image_size)
    except FormatError as exc:
        raise FormatError(f"{where}.segmentation: {exc}") from None
    raise FormatError(
        f"{where}.segmentation: expected RLE (a dict) or polygons (a list), got {_preview(value)}"
    )


def _bbox(ann: Mapping[str, Any], mask: BoolArray | None, where: str) -> list[float]:
    bbox = ann.get("bbox")
    if bbox is None:
        if mask is None:
            raise FormatError(f"{where}: has neither a bbox nor a segmentation")
        return [float(v) for v in mask_to_xyxy(mask[None])[0]]
    if (
        not isinstance(bbox, Sequence)
        or isinstance(bbox, (str, bytes))
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
        or not all(math.isfinite(v) for v in bbox)
        or bbox[2] < 0
        or bbox[3] < 0
    ):
        raise FormatError(
            f"{where}.bbox: expected [x, y, width, height] with width, height >= 0, got {_preview(bbox)}"
        )
    x, y, bw, bh = (float(v) for v in bbox)
    return [x, y, x + bw, y + bh]
