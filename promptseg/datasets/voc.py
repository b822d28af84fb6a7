"""Pascal VOC XML annotations (boxes), both ways, in the VOC devkit layout.

Layout (``VOCdevkit/VOC2012`` as the devkit and ``torchvision.datasets.VOCDetection`` expect it)::

    out_dir/Annotations/<stem>.xml         one file per image
    out_dir/JPEGImages/<path>              the images (when ``image_root`` is given)
    out_dir/ImageSets/Main/<split>.txt     image stems, one a line (+ trainval.txt)

Box convention: VOC ``bndbox`` values are **1-based, inclusive pixel indices** (the devkit's
``VOCreadxml`` / ``PASreadrecord``; ``xmin = 1`` is the leftmost column, ``xmax = width`` the
rightmost). Our ``xyxy`` is continuous pixel edges with origin 0, so a box covering columns
``c0..c1`` (0-based) is ``x1 = c0, x2 = c1 + 1`` here and ``xmin = c0 + 1, xmax = c1 + 1`` in VOC:
``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2``, and the reverse on reading. Integer boxes
are written as integers (what the devkit and most readers accept); a box with fractional
coordinates is written with ``repr`` floats after the same shift, so it still round-trips exactly,
though strict readers that ``int()`` the text will refuse it. ``difficult``, ``truncated`` and
``occluded`` are written 0, ``pose`` ``Unspecified``. VOC XML has no masks (VOC keeps them in
SegmentationObject PNGs, not written here) and no scores.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from promptseg.datasets.exports import (
    Dataset,
    DatasetItem,
    Splits,
    _as_splits,
    _copy_image,
    _merge,
)
from promptseg.errors import FormatError
from promptseg.types import Detections

__all__ = ["export_voc", "import_voc"]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def export_voc(
    data: Dataset | Splits, out_dir: str | Path, *, image_root: str | Path | None = None
) -> list[Path]:
    """Write VOC XML annotations in the devkit layout (see the module docs for the box convention).

    Args:
        data: a dataset (written as split ``train``) or split name to dataset.
        out_dir: the folder to write, e.g. ``root/VOCdevkit/VOC2012`` (created).
        image_root: folder holding the images under their item paths; None writes annotations only.

    Returns:
        The XML files written.
    """
    out = Path(out_dir)
    splits = _as_splits(data)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    written = []
    for split_name, ds in splits.items():
        stems = []
        for item in ds.items:
            stem = Path(item.path).with_suffix("").as_posix()
            stems.append(stem)
            root = ET.Element("annotation")
            ET.SubElement(root, "folder").text = "JPEGImages"
            ET.SubElement(root, "filename").text = item.path
            size = ET.SubElement(root, "size")
            ET.SubElement(size, "width").text = str(item.width)
            ET.SubElement(size, "height").text = str(item.height)
            ET.SubElement(size, "depth").text = "3"
            ET.SubElement(root, "segmented").text = "0"
            det = item.detections
            for i in range(len(det)):
                x1, y1, x2, y2 = (float(v) for v in det.xyxy[i])
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = str(det.labels[i])
                ET.SubElement(obj, "pose").text = "Unspecified"
                ET.SubElement(obj, "truncated").text = "0"
                ET.SubElement(obj, "occluded").text = "0"
                ET.SubElement(obj, "difficult").text = "0"
                box = ET.SubElement(obj, "bndbox")
                for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
                    ET.SubElement(box, tag).text = _num(v)
            ET.indent(root)
            path = out / "Annotations" / f"{stem}.xml"
            path.parent.mkdir(parents=True, exist_ok=True)
            ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)
            written.append(path)
            _copy_image(image_root, item.path, out / "JPEGImages" / item.path)
        (out / "ImageSets" / "Main" / f"{split_name}.txt").write_text(
            "".join(s + "\n" for s in stems), encoding="utf-8"
        )
    if "train" in splits and "val" in splits and "trainval" not in splits:
        text = "".join((out / "ImageSets" / "Main" / f"{s}.txt").read_text() for s in ("train", "val"))
        (out / "ImageSets" / "Main" / "trainval.txt").write_text(text, encoding="utf-8")
    return written


def import_voc(root: str | Path, *, split: str | None = None, categories: list[str] | None = None) -> Dataset:
    """Read VOC XML annotations back into a :class:`Dataset`.

    Args:
        root: the devkit folder holding ``Annotations/`` (e.g. ``VOCdevkit/VOC2012``).
        split: read the stems in ``ImageSets/Main/<split>.txt``; None reads every XML file, sorted.
        categories: class order; None uses the names in order of first appearance.

    Returns:
        Item paths are the XML ``filename``; boxes follow the module's convention; no masks.

    Raises:
        FormatError: naming the XML file and the field that does not parse.
    """
    base = Path(root)
    if split is None:
        files = sorted((base / "Annotations").rglob("*.xml"))
    else:
        listing = base / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise FormatError(f"{listing}: file not found (no split {split!r})")
        stems = [s.split()[0] for s in listing.read_text(encoding="utf-8").splitlines() if s.strip()]
        files = [base / "Annotations" / f"{s}.xml" for s in stems]
    items = [_read_xml(f) for f in files]
    names = list(categories) if categories is not None else []
    if categories is None:
        for item in items:
            names += [n for n in dict.fromkeys(item.detections.labels.tolist()) if n not in names]
    return _merge([Dataset(items, names)])


def _text(el: ET.Element, tag: str, path: Path, where: str) -> str:
    child = el.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise FormatError(f"{path}: {where}{tag} is missing")
    return child.text.strip()


def _read_xml(path: Path) -> DatasetItem:
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except ET.ParseError as exc:
        raise FormatError(f"{path}: not valid XML: {exc}") from None
    filename = _text(root, "filename", path, "annotation/")
    size = root.find("size")
    if size is None:
        raise FormatError(f"{path}: annotation/size is missing")
    try:
        w, h = int(_text(size, "width", path, "size/")), int(_text(size, "height", path, "size/"))
    except ValueError:
        raise FormatError(f"{path}: size/width and size/height must be integers") from None
    if w <= 0 or h <= 0:
        raise FormatError(f"{path}: size must be positive, got width {w}, height {h}")
    boxes, labels = [], []
    for k, obj in enumerate(root.findall("object")):
        where = f"object[{k}]/"
        labels.append(_text(obj, "name", path, where))
        box = obj.find("bndbox")
        if box is None:
            raise FormatError(f"{path}: {where}bndbox is missing")
        try:
            xmin, ymin, xmax, ymax = (
                float(_text(box, t, path, where + "bndbox/")) for t in ("xmin", "ymin", "xmax", "ymax")
            )
        except ValueError:
            raise FormatError(f"{path}: {where}bndbox values must be numbers") from None
        if not (xmax >= xmin - 1 and ymax >= ymin - 1):
            raise FormatError(f"{path}: {where}bndbox has xmax < xmin or ymax < ymin")
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
    det = Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4), image_size=(h, w), labels=np.array(labels, np.str_)
    )
    return DatasetItem(filename, w, h, det)
