"""YOLO (Ultralytics) detection and segmentation datasets, both ways.

Layout (what Ultralytics documents for ``detect`` and ``segment`` datasets)::

    out_dir/data.yaml                 path: <out_dir>, train: images/train, val: images/val,
                                      test: images/test (splits present only), names: {0: cat, ...}
    out_dir/images/<split>/<path>     the images
    out_dir/labels/<split>/<stem>.txt one line per instance

A label line is ``class cx cy w h`` (detect) or ``class x1 y1 x2 y2 ...`` (segment), every coordinate
normalised by the image width or height into [0, 1]. Numbers are written with ``repr`` (17
significant digits at most), so float32 boxes come back bit-exact. YOLO has one polygon per
instance: a mask of several parts (or with holes) is written as one ring joined by zero-width
bridges, walked once each way, that even-odd fillers (``cv2.fillPoly``, pycocotools) cancel; reading
back rasterises with :func:`promptseg.ops.masks.from_polygons` (pycocotools' rule) and gives the mask
back exactly. On reading a segment file the box is the polygon mask's tight box (YOLO stores none).
Image sizes come from the image files, which must be present to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from promptseg.datasets.exports import (
    Dataset,
    DatasetItem,
    Splits,
    _as_splits,
    _copy_image,
    _image_size_wh,
    _merge,
)
from promptseg.errors import ConfigError, FormatError
from promptseg.ops.boxes import mask_to_xyxy
from promptseg.ops.masks import from_polygons, to_polygons
from promptseg.types import BoolArray, Detections

__all__ = ["export_yolo", "import_yolo"]

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _one_ring(polygons: list[list[float]]) -> list[float]:
    """Several COCO polygons as one ring: after the first, each part is reached from the first
    vertex and left back to it, so every bridge is walked once each way."""
    first = polygons[0]
    ring = list(first)
    for part in polygons[1:]:
        ring += first[:2] + part + part[:2]
    return ring


def export_yolo(
    data: Dataset | Splits,
    out_dir: str | Path,
    *,
    task: Literal["detect", "segment"] = "detect",
    image_root: str | Path | None = None,
) -> Path:
    """Write a YOLO dataset (see the module docs for the layout and conventions).

    Args:
        data: a dataset (written as split ``train``) or split name to dataset, e.g. from
            :func:`promptseg.datasets.split`.
        out_dir: the folder to write (created).
        task: ``"detect"`` (boxes) or ``"segment"`` (polygons from the masks; items need masks).
        image_root: folder holding the images under their item paths; None writes labels only.

    Returns:
        The path of ``data.yaml``.
    """
    if task not in ("detect", "segment"):
        raise ConfigError(f"task must be 'detect' or 'segment', got {task!r}")
    out = Path(out_dir)
    splits = _as_splits(data)
    names = _merge(list(splits.values())).categories
    index = {c: i for i, c in enumerate(names)}
    for split_name, ds in splits.items():
        (out / "labels" / split_name).mkdir(parents=True, exist_ok=True)
        (out / "images" / split_name).mkdir(parents=True, exist_ok=True)
        for item in ds.items:
            det, w, h = item.detections, float(item.width), float(item.height)
            lines = []
            for i in range(len(det)):
                cls = index[str(det.labels[i])]
                if task == "detect":
                    x1, y1, x2, y2 = (float(v) for v in det.xyxy[i])
                    vals = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
                else:
                    if det.masks is None:
                        raise ConfigError(f"task='segment' needs masks; item {item.path!r} has none")
                    polygons = to_polygons(det.masks[i])
                    if not polygons:
                        continue  # an empty mask has no YOLO polygon
                    xy = np.asarray(_one_ring(polygons), np.float64).reshape(-1, 2) / (w, h)
                    vals = xy.ravel().tolist()
                lines.append(" ".join([str(cls), *(repr(float(v)) for v in vals)]))
            label = out / "labels" / split_name / Path(item.path).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            _copy_image(image_root, item.path, out / "images" / split_name / item.path)
    yaml_lines = [f"path: {_yaml_str(str(out.resolve()))}"]
    yaml_lines += [f"{s}: images/{s}" for s in ("train", "val", "test") if s in splits]
    yaml_lines += [f"{s}: images/{s}" for s in splits if s not in ("train", "val", "test")]
    yaml_lines.append("names:")
    yaml_lines += [f"  {i}: {_yaml_str(n)}" for i, n in enumerate(names)]
    (out / "data.yaml").write_text("\n".join(yaml_lines) + "\n", encoding="utf-8")
    return out / "data.yaml"


def _yaml_str(s: str) -> str:
    # a JSON string is a valid YAML double-quoted scalar
    import json

    return json.dumps(s)


def _read_yaml(path: Path) -> dict[str, Any]:
    """data.yaml: PyYAML when installed, else the plain ``key: value`` / ``names`` subset we write."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FormatError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(doc, dict):
            raise FormatError(f"{path}: expected a mapping at the top level")
        return doc
    import json

    out: dict[str, Any] = {}
    current: dict[int, str] | None = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.strip().partition(":")
        value = value.strip()
        parsed = json.loads(value) if value.startswith('"') else value
        if line.startswith(" ") and current is not None:
            current[int(key)] = parsed
        elif key == "names" and not value:
            current = out["names"] = {}
        else:
            out[key] = parsed
    return out


def import_yolo(root: str | Path, *, split: str | None = None) -> Dataset:
    """Read a YOLO dataset written by :func:`export_yolo` (or any in the same layout).

    Args:
        root: the folder holding ``data.yaml``.
        split: read only this split; None reads every split listed in ``data.yaml``, in order.

    Returns:
        A dataset whose item paths are relative to ``images/<split>/``. Lines with 5 numbers are
        boxes, longer ones polygons (the dataset has masks when any line is a polygon; box-only
        instances then get empty masks).

    Raises:
        FormatError: naming the file (and line) that does not parse.
    """
    base = Path(root)
    doc = _read_yaml(base / "data.yaml")
    names_field = doc.get("names")
    if isinstance(names_field, list):
        names = [str(n) for n in names_field]
    elif isinstance(names_field, Mapping) and all(isinstance(k, int) for k in names_field):
        names = [str(names_field[k]) for k in sorted(names_field)]
    else:
        raise FormatError(f"{base / 'data.yaml'}: field 'names' must be a list or an int-keyed mapping")
    split_names = [s for s in ("train", "val", "test") if isinstance(doc.get(s), str)]
    if split is not None:
        if split not in split_names:
            raise FormatError(f"{base / 'data.yaml'}: no split {split!r}; it lists {split_names}")
        split_names = [split]
    parts = []
    for s in split_names:
        img_dir = base / str(doc[s])
        lbl_dir = base / str(doc[s]).replace("images", "labels", 1)
        items = []
        for img in sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES):
            rel = img.relative_to(img_dir).as_posix()
            w, h = _image_size_wh(img)
            label = lbl_dir / Path(rel).with_suffix(".txt")
            items.append(DatasetItem(rel, w, h, _read_label(label, (h, w), names)))
        parts.append(Dataset(items, names))
    merged = _merge(parts) if parts else Dataset([], names)
    return Dataset(merged.items, names)


def _read_label(path: Path, image_size: tuple[int, int], names: list[str]) -> Detections:
    h, w = image_size
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    boxes: list[list[float]] = []
    labels: list[str] = []
    masks: list[BoolArray | None] = []
    any_poly = False
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            cls = int(fields[0])
            vals = np.array([float(v) for v in fields[1:]], np.float64)
        except ValueError:
            raise FormatError(
                f"{path}: line {n}: expected 'class x y ...' numbers, got {line[:60]!r}"
            ) from None
        if not 0 <= cls < len(names):
            raise FormatError(f"{path}: line {n}: class {cls} is not in names (0..{len(names) - 1})")
        if not np.isfinite(vals).all():
            raise FormatError(f"{path}: line {n}: NaN or infinite coordinate")
        if vals.size == 4:
            cx, cy, bw, bh = vals
            if bw < 0 or bh < 0:
                raise FormatError(f"{path}: line {n}: negative box width or height")
            boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
            masks.append(None)
        elif vals.size >= 6 and vals.size % 2 == 0:
            any_poly = True
            xy = (vals.reshape(-1, 2) * (w, h)).ravel().tolist()
            mask = from_polygons([xy], image_size)
            masks.append(mask)
            boxes.append(mask_to_xyxy(mask[None])[0].tolist())
        else:
            raise FormatError(
                f"{path}: line {n}: expected 4 box numbers or an even count >= 6 of polygon numbers "
                f"after the class, got {vals.size}"
            )
        labels.append(names[cls])
    return Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        image_size=image_size,
        labels=np.array(labels, np.str_),
        masks=np.stack([np.zeros(image_size, bool) if m is None else m for m in masks]) if any_poly else None,
    )
