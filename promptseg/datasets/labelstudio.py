"""Label Studio JSON tasks (``rectanglelabels`` + ``polygonlabels`` / ``brushlabels``), both ways.

The export is a JSON list of tasks, the shape Label Studio's "JSON" export has and its import
accepts: ``{"id", "data": {"image": <prefix + path>}, "annotations": [{"result": [...]}]}``. Each
instance gives a ``rectanglelabels`` result and, when there are masks, a ``polygonlabels`` or
``brushlabels`` result with the same region ``id``, so reading pairs them back into one instance.
Coordinates are **percentages of the image size** (``x``, ``y``, ``width``, ``height`` in [0, 100],
top-left corner, ``rotation`` 0; polygon ``points`` ``[[x%, y%], ...]``), each result carrying
``original_width`` / ``original_height``.

Brush masks use Label Studio's own RLE (``value.rle``, ``value.format = "rle"``): the RGBA image
flattened row-major (``H * W * 4`` bytes, the mask as 255 in every channel) packed by thi.ng's
``rle-pack``: a 32-bit value count, a 5-bit word size - 1, four 4-bit run-length-field sizes - 1,
then chunks of ``flag(1) size-index(2) length-1(size bits)`` followed by one repeated word (flag 1)
or ``length`` literal words (flag 0), MSB first, zero-padded to whole bytes. :func:`encode_brush_rle`
writes exactly what ``label_studio_converter.brush.mask2rle`` writes (word size 8, sizes
``[3, 4, 8, 16]``); :func:`decode_brush_rle` reads any word size and chunk mix and takes the alpha
channel ``> 0`` as the mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from promptseg.datasets.exports import Dataset, DatasetItem, Splits, _as_splits, _load_json, _write_json
from promptseg.errors import ConfigError, FormatError
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.ops.masks import from_polygons, to_polygons
from promptseg.types import BoolArray, Detections

__all__ = [
    "decode_brush_rle",
    "encode_brush_rle",
    "export_labelstudio",
    "import_labelstudio",
    "read_region",
    "region_results",
]

_SIZES = (3, 4, 8, 16)


def encode_brush_rle(mask: BoolArray) -> list[int]:
    """A ``(H, W)`` bool mask as Label Studio brush RLE bytes (same bytes as the converter's ``mask2rle``)."""
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ConfigError(f"brush RLE needs a 2-D mask, got shape {m.shape}")
    values = np.repeat(m.ravel().astype(np.uint8) * 255, 4)
    n = values.size
    bits = [f"{n:032b}", f"{8 - 1:05b}", "".join(f"{s - 1:04b}" for s in _SIZES)]
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [n]]))
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        word = f"{int(values[start]):08b}"
        if length == 1:
            bits.append("0" + "00" + "000" + word)
            continue
        while length > 2**16:
            bits.append("1" + "11" + f"{2**16 - 1:016b}" + word)
            length -= 2**16
        idx = 0 if length <= 8 else 1 if length <= 16 else 2 if length <= 256 else 3
        bits.append("1" + f"{idx:02b}" + f"{length - 1:0{_SIZES[idx]}b}" + word)
    s = "".join(bits)
    s += "0" * (8 - len(s) % 8)  # as the converter does: always pads, by 8 when already aligned
    return np.packbits(np.frombuffer(s.encode(), np.uint8) - ord("0")).tolist()


def decode_brush_rle(rle: Sequence[int], image_size: tuple[int, int]) -> BoolArray:
    """Label Studio brush RLE to a ``(H, W)`` bool mask (alpha channel ``> 0``).

    Raises:
        FormatError: when the stream is truncated or its value count is not ``H * W * 4``.
    """
    try:
        data = np.asarray(rle, np.uint8)
    except (TypeError, ValueError, OverflowError):
        raise FormatError("brush rle must be a list of byte values 0..255") from None
    bits = np.unpackbits(data)
    total = bits.size
    pos = 0

    def read(k: int) -> int:
        nonlocal pos
        if pos + k > total:
            raise FormatError(f"brush rle is truncated ({data.size} bytes)")
        v = 0
        for b in bits[pos : pos + k].tolist():
            v = (v << 1) | b
        pos += k
        return v

    num = read(32)
    h, w = image_size
    if num != h * w * 4:
        raise FormatError(
            f"brush rle holds {num} values, expected H * W * 4 = {h * w * 4} for size {image_size}"
        )
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint8)
    i = 0
    while i < num:
        flag = read(1)
        j = min(num, i + 1 + read(sizes[read(2)]))
        if flag:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return np.ascontiguousarray(out.reshape(h, w, 4)[:, :, 3] > 0)


def export_labelstudio(
    data: Dataset | Splits,
    out_dir: str | Path,
    *,
    masks: Literal["brush", "polygon"] = "brush",
    image_prefix: str = "",
    from_name: str = "label",
    to_name: str = "image",
) -> list[Path]:
    """Write Label Studio JSON tasks with reviewed annotations (see the module docs).

    Args:
        data: a dataset (``out_dir/tasks.json``) or split name to dataset (``out_dir/<split>.json``).
        out_dir: the folder to write (created).
        masks: ``"brush"`` (Label Studio RLE, exact) or ``"polygon"`` (``polygonlabels``, one result per
            connected part, holes bridged as in :func:`promptseg.ops.masks.to_polygons`).
        image_prefix: put before each item path in ``data.image`` (e.g. ``"/data/local-files/?d=imgs/"``).
        from_name: the control tag names (``RectangleLabels`` and the mask tag share it, as the
            templates' ``<RectangleLabels name="label">``); to_name: the ``Image`` tag's name.

    Returns:
        The JSON files written.
    """
    if masks not in ("brush", "polygon"):
        raise ConfigError(f"masks must be 'brush' or 'polygon', got {masks!r}")
    out = Path(out_dir)
    written = []
    for split_name, ds in _as_splits(data).items():
        tasks = []
        for task_id, item in enumerate(ds.items, start=1):
            tasks.append(
                {
                    "id": task_id,
                    "data": {"image": image_prefix + item.path},
                    "annotations": [
                        {
                            "id": task_id,
                            "result": _results(item, masks, from_name, to_name),
                            "was_cancelled": False,
                        }
                    ],
                }
            )
        path = out / "tasks.json" if isinstance(data, Dataset) else out / f"{split_name}.json"
        _write_json(path, tasks)
        written.append(path)
    return written


def _results(item: DatasetItem, masks: str, from_name: str, to_name: str) -> list[dict[str, Any]]:
    det = item.detections
    results: list[dict[str, Any]] = []
    for i in range(len(det)):
        results += region_results(
            str(det.labels[i]),
            det.xyxy[i].tolist(),
            None if det.masks is None else det.masks[i],
            (item.height, item.width),
            region_id=f"r{i}",
            masks=masks,
            from_name=from_name,
            to_name=to_name,
        )
    return results


def region_results(
    label: str,
    xyxy: Sequence[float],
    mask: BoolArray | None,
    image_size: tuple[int, int],
    *,
    region_id: str,
    mask_id: str | None = None,
    masks: Literal["brush", "polygon"] | str | None = "brush",
    from_name: str = "label",
    mask_from_name: str | None = None,
    to_name: str = "image",
    score: float | None = None,
) -> list[dict[str, Any]]:
    """One instance as Label Studio results: a ``rectanglelabels`` result and, when ``mask`` is given and
    ``masks`` is not None, a ``brushlabels`` result or one ``polygonlabels`` result per connected part.

    Args:
        label: the instance's label name.
        xyxy: its box ``[x1, y1, x2, y2]`` in absolute pixels.
        mask: its ``(H, W)`` bool mask, or None.
        image_size: ``(H, W)`` of the image.
        region_id: the rectangle's result ``id``.
        mask_id: the mask results' ``id`` (polygon parts after the first get ``f"{mask_id}{k}"``);
            None: ``region_id`` (rectangle and mask share the id, as :func:`export_labelstudio` writes).
        masks: ``"brush"``, ``"polygon"`` or None (rectangles only).
        from_name: the ``RectangleLabels`` tag name; mask_from_name: the mask tag's name (None: the same).
        to_name: the ``Image`` tag name.
        score: put on every result as ``score`` (pre-annotations), when given.

    Returns:
        The result dicts, coordinates in percent of the image size.
    """
    h, w = image_size
    common: dict[str, Any] = {
        "to_name": to_name,
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
    }
    if score is not None:
        common["score"] = float(score)
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    value = {
        "x": x1 / w * 100,
        "y": y1 / h * 100,
        "width": (x2 - x1) / w * 100,
        "height": (y2 - y1) / h * 100,
        "rotation": 0,
        "rectanglelabels": [label],
    }
    out: list[dict[str, Any]] = [
        {"id": region_id, "type": "rectanglelabels", "from_name": from_name, **common, "value": value}
    ]
    if mask is None or masks is None:
        return out
    mid = region_id if mask_id is None else mask_id
    mname = from_name if mask_from_name is None else mask_from_name
    if masks == "brush":
        brush = {"format": "rle", "rle": encode_brush_rle(mask), "brushlabels": [label]}
        out.append({"id": mid, "type": "brushlabels", "from_name": mname, **common, "value": brush})
        return out
    for k, poly in enumerate(to_polygons(mask)):
        xy = np.asarray(poly, np.float64).reshape(-1, 2) / (w, h) * 100
        pvalue = {"points": xy.tolist(), "closed": True, "polygonlabels": [label]}
        rid = mid if k == 0 or mask_id is None else f"{mid}{k}"
        out.append({"id": rid, "type": "polygonlabels", "from_name": mname, **common, "value": pvalue})
    return out


def import_labelstudio(
    path: str | Path, *, image_prefix: str = "", categories: list[str] | None = None
) -> Dataset:
    """Read a Label Studio JSON export (a list of tasks) back into a :class:`Dataset`.

    Each task's first non-cancelled annotation is read (``predictions`` are not). Results sharing an
    ``id`` are one instance: a rectangle gives the box; polygons (unioned) and brush masks give the
    mask, and the box when there is no rectangle. Labels come from ``*labels`` in ``value``.

    Args:
        path: the JSON file.
        image_prefix: removed from the start of ``data.image`` to give the item path.
        categories: class order; None uses the labels in order of first appearance.

    Raises:
        FormatError: naming the file, task and field that does not parse.
    """
    p = Path(path)
    tasks = _load_json(p)
    if not isinstance(tasks, list):
        raise FormatError(f"{p}: expected a JSON list of tasks, got {type(tasks).__name__}")
    items, names = [], list(categories or [])
    for t, task in enumerate(tasks):
        where = f"{p}: task {t}"
        if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
            raise FormatError(f"{where}: expected an object with 'data'")
        image = task["data"].get("image")
        if not isinstance(image, str):
            raise FormatError(f"{where}: data.image must be a string, got {image!r:.60}")
        rel = image[len(image_prefix) :] if image_prefix and image.startswith(image_prefix) else image
        anns = [
            a for a in task.get("annotations") or [] if isinstance(a, Mapping) and not a.get("was_cancelled")
        ]
        results = anns[0].get("result", []) if anns else []
        item = _read_results(results, rel, where)
        if categories is None:
            names += [n for n in dict.fromkeys(item.detections.labels.tolist()) if n not in names]
        items.append(item)
    return Dataset(items, names)


def _read_results(results: Any, rel: str, where: str) -> DatasetItem:
    if not isinstance(results, list):
        raise FormatError(f"{where}: annotations[0].result must be a list")
    sizes = {(r.get("original_height"), r.get("original_width")) for r in results if isinstance(r, Mapping)}
    if len(sizes) != 1:
        got = sorted(map(str, sizes)) or "none"
        raise FormatError(f"{where}: results need one original_width / original_height, got {got}")
    h, w = sizes.pop()
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise FormatError(
            f"{where}: original_width / original_height must be positive ints, got {w!r}, {h!r}"
        )
    groups: dict[str, dict[str, Any]] = {}
    for k, r in enumerate(results):
        region = read_region(r, (h, w), f"{where}: result[{k}]")
        if region is None:
            continue
        g = groups.setdefault(str(r.get("id", f"#{k}")), {"mask": None})
        kind, label, shape = region
        g["label"] = label
        if kind == "rectanglelabels":
            g["box"] = shape
        else:
            g["mask"] = shape if g["mask"] is None else g["mask"] | shape
    any_mask = any(g["mask"] is not None for g in groups.values())
    boxes, labels, masks = [], [], []
    for g in groups.values():
        mask = g["mask"] if g["mask"] is not None else np.zeros((h, w), bool)
        boxes.append(g["box"] if "box" in g else mask_to_xyxy(mask[None])[0].tolist())
        labels.append(g["label"])
        masks.append(mask)
    det = Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        image_size=(h, w),
        labels=np.array(labels, np.str_),
        masks=np.stack(masks) if any_mask else None,
    )
    return DatasetItem(rel, w, h, det)


def read_region(result: Any, image_size: tuple[int, int], where: str) -> tuple[str, str, Any] | None:
    """One Label Studio result as ``(type, label, shape)``; None for types other than rectangles,
    polygons and brushes.

    ``shape`` is the box ``[x1, y1, x2, y2]`` in absolute pixels for ``rectanglelabels``, else the
    ``(H, W)`` bool mask. ``where`` starts each error message (file, task, result index).

    Raises:
        FormatError: naming ``where`` and the field that does not parse.
    """
    h, w = image_size
    if not isinstance(result, Mapping):
        raise FormatError(f"{where} must be an object, got {type(result).__name__}")
    kind, value = result.get("type"), result.get("value")
    if not isinstance(value, Mapping):
        raise FormatError(f"{where}.value must be an object")
    if kind not in ("rectanglelabels", "polygonlabels", "brushlabels"):
        return None
    labels = value.get(kind)
    if not isinstance(labels, list) or not labels:
        raise FormatError(f"{where}.value.{kind} must be a non-empty list of label names")
    label = str(labels[0])
    try:
        if kind == "rectanglelabels":
            if value.get("rotation", 0) not in (0, 0.0):
                raise FormatError("rotated rectangles are not supported")
            x, y, bw, bh = (float(value[f]) for f in ("x", "y", "width", "height"))
            return kind, label, [x * w / 100, y * h / 100, (x + bw) * w / 100, (y + bh) * h / 100]
        if kind == "polygonlabels":
            pts = np.asarray(value["points"], np.float64).reshape(-1, 2) * (w / 100, h / 100)
            return kind, label, from_polygons([pts.ravel().tolist()], (h, w))
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise FormatError("brushlabels needs format 'rle' and an 'rle' list")
        return kind, label, decode_brush_rle(value["rle"], (h, w))
    except FormatError as exc:
        raise FormatError(f"{where}.value: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{where}.value: {type(exc).__name__}: {exc}") from None
