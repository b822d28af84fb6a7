"""A neutral in-memory dataset model, shared export helpers, and COCO export / import.

A :class:`Dataset` is a list of :class:`DatasetItem` (one image: its relative file name, size and
:class:`~promptseg.types.Detections`) plus the ordered category names. Every format module
(:mod:`.yolo`, :mod:`.voc`, :mod:`.labelstudio`, COCO here) writes from and reads back to this model,
so any format converts to any other through it.

Exports take either one :class:`Dataset` or a mapping of split name to dataset (what
:func:`promptseg.datasets.split` returns); formats without a notion of splits (COCO, Label Studio)
write one file per split in that case.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np

from promptseg.errors import ConfigError, FormatError, InputError
from promptseg.formats.coco import from_coco, to_coco
from promptseg.types import Detections

__all__ = ["Dataset", "DatasetItem", "Splits", "export_coco", "import_coco"]


@dataclass(frozen=True, eq=False)
class DatasetItem:
    """One image of a dataset.

    Attributes:
        path: the image's file name relative to the dataset's image folder (``"000012.jpg"``,
            ``"shelf/a.png"``); forward slashes, never absolute.
        width: image width in pixels.
        height: image height in pixels.
        detections: its annotations, with ``image_size == (height, width)``.
    """

    path: str
    width: int
    height: int
    detections: Detections

    def __post_init__(self) -> None:
        if not self.path or Path(self.path).is_absolute() or ".." in Path(self.path).parts:
            raise InputError(f"DatasetItem.path must be a relative file name, got {self.path!r}")
        if self.detections.image_size != (self.height, self.width):
            raise InputError(
                f"DatasetItem {self.path!r}: detections.image_size {self.detections.image_size} is not "
                f"(height, width) = {(self.height, self.width)}"
            )


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images with their annotations, and the category names in class-index order.

    Every label of every item must be one of ``categories``; class index ``i`` (YOLO) is
    ``categories[i]`` and COCO category id ``i + 1``.
    """

    items: Sequence[DatasetItem]
    categories: Sequence[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", list(self.items))
        object.__setattr__(self, "categories", [str(c) for c in self.categories])
        if len(set(self.categories)) != len(self.categories):
            raise InputError(f"Dataset.categories has duplicates: {self.categories}")
        known = set(self.categories)
        paths: set[str] = set()
        for item in self.items:
            unknown = sorted(set(item.detections.labels.tolist()) - known)
            if unknown:
                raise InputError(
                    f"DatasetItem {item.path!r} has labels {unknown} that are not in Dataset.categories "
                    f"{self.categories}"
                )
            if item.path in paths:
                raise InputError(f"Dataset has two items with path {item.path!r}")
            paths.add(item.path)

    def __len__(self) -> int:
        return len(self.items)


Splits: TypeAlias = Mapping[str, Dataset]
"""Split name (``"train"``, ``"val"``, ``"test"``) to the dataset of that split."""


def _as_splits(data: Dataset | Splits, default: str = "train") -> dict[str, Dataset]:
    if isinstance(data, Dataset):
        return {default: data}
    if not isinstance(data, Mapping) or not all(isinstance(v, Dataset) for v in data.values()):
        raise InputError(
            f"expected a Dataset or a mapping of split name to Dataset, got {type(data).__name__}"
        )
    return dict(data)


def _merge(parts: Sequence[Dataset]) -> Dataset:
    categories: list[str] = []
    for p in parts:
        categories += [c for c in p.categories if c not in categories]
    return Dataset([item for p in parts for item in p.items], categories)


def _copy_image(image_root: str | Path | None, rel: str, dest: Path) -> None:
    """Copy ``image_root / rel`` to ``dest`` (nothing when ``image_root`` is None)."""
    if image_root is None:
        return
    src = Path(image_root) / rel
    if not src.is_file():
        raise InputError(f"image {src} not found (item path {rel!r} under image_root {image_root})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


def _image_size_wh(path: Path) -> tuple[int, int]:
    """``(W, H)`` from an image file's header (Pillow reads no pixels)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, UnidentifiedImageError) as exc:
        raise FormatError(f"{path}: cannot read the image size: {exc}") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not valid JSON: {exc}") from None


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, separators=(",", ":")), encoding="utf-8")


def _empty_like(item_size: tuple[int, int], with_masks: bool) -> Detections:
    h, w = item_size
    return Detections(
        xyxy=np.zeros((0, 4), np.float32),
        image_size=(h, w),
        labels=np.zeros(0, np.str_),
        masks=np.zeros((0, h, w), bool) if with_masks else None,
    )


# ---------------------------------------------------------------- COCO


def export_coco(
    data: Dataset | Splits,
    out_dir: str | Path,
    *,
    masks: Literal["rle", "polygon"] = "rle",
    image_root: str | Path | None = None,
) -> list[Path]:
    """Write COCO instance annotations (``annotations.json``) and optionally copy the images.

    Layout: ``out_dir/annotations.json`` and ``out_dir/images/<path>`` for one dataset; for splits,
    ``out_dir/annotations/<split>.json`` and ``out_dir/images/<split>/<path>``. Image ids count from 1
    in item order, category ``categories[i]`` gets id ``i + 1``, ``file_name`` is the item path.
    Boxes are exact floats (``[x, y, w, h]``); masks are compressed RLE (exact) or polygons (traced a
    quarter pixel inside the pixel edges, so pycocotools rasterises them back exactly; see
    :func:`promptseg.ops.masks.to_polygons`). Scores and track ids are written when present.

    Args:
        data: a dataset, or split name to dataset.
        out_dir: the folder to write (created).
        masks: ``"rle"`` or ``"polygon"``.
        image_root: folder holding the images under their item paths; None writes annotations only.

    Returns:
        The JSON files written.
    """
    if masks not in ("rle", "polygon"):
        raise ConfigError(f"masks must be 'rle' or 'polygon', got {masks!r}")
    out = Path(out_dir)
    splits = _as_splits(data)
    written: list[Path] = []
    for name, ds in splits.items():
        single = isinstance(data, Dataset)
        json_path = out / "annotations.json" if single else out / "annotations" / f"{name}.json"
        img_dir = out / "images" if single else out / "images" / name
        category_ids = {c: i + 1 for i, c in enumerate(ds.categories)}
        images: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        for image_id, item in enumerate(ds.items, start=1):
            images.append(
                {"id": image_id, "file_name": item.path, "width": item.width, "height": item.height}
            )
            anns += to_coco(
                item.detections,
                image_id,
                category_ids=category_ids,
                mask_format=masks,
                start_id=len(anns) + 1,
            )
            _copy_image(image_root, item.path, img_dir / item.path)
        categories = [{"id": i, "name": c, "supercategory": ""} for c, i in category_ids.items()]
        _write_json(json_path, {"images": images, "annotations": anns, "categories": categories})
        written.append(json_path)
    return written


def import_coco(path: str | Path) -> Dataset:
    """Read a COCO instances file (``annotations.json``) back into a :class:`Dataset`.

    Categories are ordered by id; items follow the ``images`` list, each with its annotations in file
    order (see :func:`promptseg.formats.coco.from_coco` for what is kept). An image with no
    annotations gets empty detections, with masks when the file has any segmentation.

    Raises:
        FormatError: naming the file and the field that does not parse.
    """
    p = Path(path)
    doc = _load_json(p)
    if not isinstance(doc, Mapping):
        raise FormatError(f"{p}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise FormatError(f"{p}: field {key!r} must be a list, got {type(doc.get(key)).__name__}")
    names: dict[int, str] = {}
    for i, cat in enumerate(doc["categories"]):
        if not isinstance(cat, Mapping) or not isinstance(cat.get("id"), int) or "name" not in cat:
            raise FormatError(f"{p}: categories[{i}] needs an int 'id' and a 'name', got {cat!r:.80}")
        names[cat["id"]] = str(cat["name"])
    by_image: dict[Any, list[Mapping[str, Any]]] = {}
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, Mapping) or "image_id" not in ann:
            raise FormatError(f"{p}: annotations[{i}] has no 'image_id'")
        by_image.setdefault(ann["image_id"], []).append(ann)
    any_masks = any("segmentation" in a for a in doc["annotations"])
    items: list[DatasetItem] = []
    for i, img in enumerate(doc["images"]):
        where = f"{p}: images[{i}]"
        if not isinstance(img, Mapping):
            raise FormatError(f"{where}: expected an object, got {img!r:.80}")
        for key in ("width", "height"):
            if not isinstance(img.get(key), int) or img[key] <= 0:
                raise FormatError(f"{where}.{key}: expected a positive int, got {img.get(key)!r:.40}")
        if not isinstance(img.get("file_name"), str):
            raise FormatError(f"{where}.file_name: expected a string, got {img.get('file_name')!r:.40}")
        size = (img["height"], img["width"])
        anns = by_image.get(img.get("id"), [])
        try:
            det = from_coco(anns, size, category_names=names) if anns else _empty_like(size, any_masks)
        except FormatError as exc:
            raise FormatError(f"{p}: image {img['file_name']!r}: {exc}") from None
        if any_masks and det.masks is None:
            det = det.replace(masks=np.zeros((len(det), *size), bool))
        items.append(DatasetItem(img["file_name"], img["width"], img["height"], det))
    return Dataset(items, [names[k] for k in sorted(names)])
