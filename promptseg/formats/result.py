"""promptseg's own JSON result, the contract the CLI, the HTTP API and other tools rely on.

One object per image::

    {
      "image": {"path": "photo.jpg", "width": 640, "height": 480},
      "prompt": "the bottle",
      "backend": "owlv2",
      "instances": [
        {
          "label": "bottle",
          "score": 0.91,                          # omitted when the backend gives no scores
          "box_xyxy": [12.5, 30.0, 80.25, 200.0], # pixels, floats
          "box_2d": [62, 20, 417, 125],           # Gemini's [ymin, xmin, ymax, xmax] on 0-1000
          "mask_rle": {"size": [480, 640], "counts": "..."},  # or mask_polygons / mask_png
          "track_id": 3,                          # only from trackers
          "attributes": {"color": "green"}        # only when there are attributes
        }
      ],
      "meta": {...}                               # Detections.meta, made JSON-safe
    }

Everything in it is JSON-native, so ``json.dumps(obj, allow_nan=False)`` always works.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import enum
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from promptseg.errors import FormatError, InputError
from promptseg.ops.boxes import box_2d_to_xyxy, xyxy_to_box_2d
from promptseg.ops.masks import from_polygons, from_rle, to_polygons, to_rle
from promptseg.types import BoolArray, Detections, ImageSize

__all__ = ["MaskFormat", "from_json", "to_json"]

MaskFormat = Literal["rle", "polygon", "png", "none"]
_T = TypeVar("_T")
_MASK_KEYS = {"rle": "mask_rle", "polygon": "mask_polygons", "png": "mask_png"}


def to_json(
    det: Detections,
    *,
    image_path: str | None = None,
    prompt: str | None = None,
    backend: str | None = None,
    mask_format: MaskFormat = "rle",
) -> dict[str, Any]:
    """Detections as promptseg's JSON result (see the module docstring for the layout).

    Args:
        det: the detections of one image.
        image_path: recorded as ``image.path`` (None gives ``null``).
        prompt: recorded as ``prompt``; when None, ``det.meta["prompt"]`` if that is a str.
        backend: recorded as ``backend``; when None, ``det.meta["backend"]`` if that is a str.
        mask_format: how masks are written, when ``det.masks`` is set: ``"rle"`` (``mask_rle``, COCO
            compressed RLE, exact), ``"polygon"`` (``mask_polygons``, COCO polygons with holes bridged,
            see :func:`promptseg.ops.masks.to_polygons`; needs OpenCV), ``"png"`` (``mask_png``, a
            base64 1-bit PNG of the full image size, exact) or ``"none"`` (no masks).

    Returns:
        A dict of JSON-native values. Floats are written from float32 exactly, so :func:`from_json`
        gets the same float32 values back. Attribute values and ``meta`` are made JSON-safe: numpy
        scalars and arrays become Python numbers and lists, tuples and sets lists, NaN and infinity
        ``null``, paths, dates and other objects strings.

    Raises:
        InputError: for an unknown ``mask_format``.

    Example:
        >>> det = Detections(xyxy=[[10, 20, 50, 80]], image_size=(100, 200), labels=["cup"], scores=[0.5])
        >>> to_json(det, prompt="a cup")["instances"][0]["box_2d"]
        [200, 50, 800, 250]
    """
    if mask_format not in ("rle", "polygon", "png", "none"):
        raise InputError(f"mask_format must be 'rle', 'polygon', 'png' or 'none', got {mask_format!r}")
    h, w = det.image_size
    if prompt is None and isinstance(det.meta.get("prompt"), str):
        prompt = det.meta["prompt"]
    if backend is None and isinstance(det.meta.get("backend"), str):
        backend = det.meta["backend"]
    box_2d = xyxy_to_box_2d(det.xyxy, det.image_size)
    instances: list[dict[str, Any]] = []
    for i in range(len(det)):
        inst: dict[str, Any] = {"label": str(det.labels[i])}
        if det.scores is not None:
            inst["score"] = float(det.scores[i])
        inst["box_xyxy"] = [float(v) for v in det.xyxy[i]]
        inst["box_2d"] = [int(v) for v in box_2d[i]]
        if det.masks is not None and mask_format != "none":
            mask = det.masks[i]
            if mask_format == "rle":
                inst["mask_rle"] = dict(to_rle(mask))
            elif mask_format == "polygon":
                inst["mask_polygons"] = to_polygons(mask)
            else:
                inst["mask_png"] = _encode_png(mask)
        if det.track_ids is not None:
            inst["track_id"] = int(det.track_ids[i])
        if det.attributes:
            inst["attributes"] = {k: _json_safe(v[i]) for k, v in det.attributes.items()}
        instances.append(inst)
    return {
        "image": {"path": image_path, "width": w, "height": h},
        "prompt": prompt,
        "backend": backend,
        "instances": instances,
        "meta": _json_safe(det.meta),
    }


def from_json(obj: Mapping[str, Any] | str | bytes) -> Detections:
    """Read promptseg's JSON result back into Detections.

    ``from_json(to_json(det))`` gives ``det`` back exactly (masks too with any ``mask_format`` but
    "none") for boxes, labels, scores, masks, track ids, attributes whose values are str, int, float or
    bool, and a JSON-native ``meta``. ``prompt``, ``backend`` and ``image.path`` are not put into ``meta``. An
    empty ``instances`` list gives ``Detections.empty`` (scores an empty array, masks None).

    Args:
        obj: the parsed object, or its JSON text. Instances may carry ``mask_rle`` (compressed or
            uncompressed COCO RLE), ``mask_png`` (base64 PNG, optionally as a ``data:`` URI) or
            ``mask_polygons``; ``box_2d`` is used when ``box_xyxy`` is missing.

    Returns:
        Detections of an image of ``image.height`` x ``image.width``.

    Raises:
        FormatError: for anything malformed, naming the instance index and field, e.g.
            ``instances[2].box_xyxy: expected 4 finite numbers, got [1, 2, 3]``. Fields that only some
            instances have (score, mask, track_id, attribute names) are errors too.
    """
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise FormatError(f"promptseg result is not valid JSON: {exc}") from None
    if not isinstance(obj, Mapping):
        raise FormatError(f"promptseg result must be a JSON object, got {type(obj).__name__}")
    image = obj.get("image")
    if not isinstance(image, Mapping):
        raise FormatError(f"image: expected an object with width and height, got {_preview(image)}")
    size = (
        _positive_int(image.get("height"), "image.height"),
        _positive_int(image.get("width"), "image.width"),
    )
    items = obj.get("instances")
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise FormatError(f"instances: expected a list, got {_preview(items)}")
    meta = obj.get("meta", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, Mapping):
        raise FormatError(f"meta: expected an object, got {_preview(meta)}")
    if not items:
        return Detections.empty(size).replace(meta=dict(meta))

    xyxy: list[list[float]] = []
    labels: list[str] = []
    scores: list[float | None] = []
    masks: list[BoolArray | None] = []
    track_ids: list[int | None] = []
    attrs: list[Mapping[str, Any]] = []
    for i, inst in enumerate(items):
        where = f"instances[{i}]"
        if not isinstance(inst, Mapping):
            raise FormatError(f"{where}: expected an object, got {_preview(inst)}")
        label = inst.get("label")
        if not isinstance(label, str):
            raise FormatError(f"{where}.label: expected a string, got {_preview(label)}")
        labels.append(label)
        xyxy.append(_instance_box(inst, size, where))
        scores.append(_optional_score(inst.get("score"), f"{where}.score"))
        masks.append(_instance_mask(inst, size, where))
        track_id = inst.get("track_id")
        if track_id is not None and (not isinstance(track_id, int) or isinstance(track_id, bool)):
            raise FormatError(f"{where}.track_id: expected an int, got {_preview(track_id)}")
        track_ids.append(track_id)
        attributes = inst.get("attributes", {})
        if attributes is None:
            attributes = {}
        if not isinstance(attributes, Mapping):
            raise FormatError(f"{where}.attributes: expected an object, got {_preview(attributes)}")
        attrs.append(attributes)

    given_scores = _all_or_none(scores, "score")
    given_masks = _all_or_none(masks, "mask")
    given_track_ids = _all_or_none(track_ids, "track_id")
    return Detections(
        xyxy=np.array(xyxy, np.float32),
        image_size=size,
        labels=np.array(labels, np.str_),
        scores=None if given_scores is None else np.array(given_scores, np.float32),
        masks=None if given_masks is None else np.stack(given_masks),
        track_ids=None if given_track_ids is None else np.array(given_track_ids, np.int64),
        attributes=_attributes(attrs),
        meta=dict(meta),
    )


def _json_safe(value: Any) -> Any:
    """``value`` with every part turned into a JSON-native type (str, int, float, bool, None, list, dict).

    numpy scalars and arrays become Python numbers and lists; tuples and sets lists (sets sorted when
    possible); mapping keys strings; NaN and infinities None; bytes base64 text; dates ISO strings;
    enums their value; dataclasses dicts; paths and anything else ``str(value)``.
    """
    if isinstance(value, np.generic):  # before str and float: np.str_ and np.float64 subclass them
        return _json_safe(value.item())
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        try:
            value = sorted(value)
        except TypeError:
            value = list(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return _json_safe(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_safe(dataclasses.asdict(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _preview(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _positive_int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise FormatError(f"{where}: expected a positive int, got {_preview(value)}")
    return value


def _numbers(value: Any, n: int, where: str) -> list[float]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, (str, bytes))
        or len(value) != n
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise FormatError(f"{where}: expected {n} finite numbers, got {_preview(value)}")
    return [float(v) for v in value]


def _instance_box(inst: Mapping[str, Any], size: ImageSize, where: str) -> list[float]:
    if "box_xyxy" in inst:
        box = _numbers(inst["box_xyxy"], 4, f"{where}.box_xyxy")
        if box[2] < box[0] or box[3] < box[1]:
            raise FormatError(f"{where}.box_xyxy: expected x1 <= x2 and y1 <= y2, got {box}")
        return box
    if "box_2d" in inst:
        box_2d = _numbers(inst["box_2d"], 4, f"{where}.box_2d")
        return [float(v) for v in box_2d_to_xyxy([box_2d], size)[0]]
    raise FormatError(f"{where}: has neither box_xyxy nor box_2d")


def _optional_score(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise FormatError(f"{where}: expected a number in [0, 1], got {_preview(value)}")
    return float(value)


def _instance_mask(inst: Mapping[str, Any], size: ImageSize, where: str) -> BoolArray | None:
    present = [key for key in _MASK_KEYS.values() if inst.get(key) is not None]
    if len(present) > 1:
        raise FormatError(f"{where}: has several masks ({', '.join(present)}); expected at most one")
    if not present:
        return None
    key = present[0]
    value = inst[key]
    try:
        if key == "mask_rle":
            mask = from_rle(value)
        elif key == "mask_polygons":
            mask = from_polygons(value, size)
        else:
            if not isinstance(value, str):
                raise FormatError(f"expected a base64 PNG string, got {_preview(value)}")
            mask = _decode_png(value) > 127
    except FormatError as exc:
        raise FormatError(f"{where}.{key}: {exc}") from None
    if mask.shape != size:
        raise FormatError(
            f"{where}.{key}: mask is {mask.shape[0]}x{mask.shape[1]} but the image is {size[0]}x{size[1]}"
        )
    return mask


def _all_or_none(values: Sequence[_T | None], name: str) -> list[_T] | None:
    missing = [i for i, v in enumerate(values) if v is None]
    if len(missing) == len(values):
        return None
    if missing:
        have = next(i for i, v in enumerate(values) if v is not None)
        raise FormatError(
            f"instances[{missing[0]}]: has no {name} but instances[{have}] has one; "
            f"a {name} must be given for every instance or for none"
        )
    return [v for v in values if v is not None]


def _attributes(per_instance: list[Mapping[str, Any]]) -> dict[str, NDArray[Any]]:
    keys = list(per_instance[0])
    for i, attrs in enumerate(per_instance):
        if set(attrs) != set(keys):
            raise FormatError(
                f"instances[{i}].attributes: has {sorted(attrs)} but instances[0] has {sorted(keys)}; "
                f"every instance must carry the same attribute names"
            )
    return {k: _attribute_array([attrs[k] for attrs in per_instance]) for k in keys}


def _attribute_array(values: list[Any]) -> NDArray[Any]:
    """One attribute's JSON values as an array, with a dtype that fits them all."""
    if all(isinstance(v, bool) for v in values):
        return np.array(values, bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        try:
            return np.array(values, np.int64)
        except OverflowError:
            pass
    elif all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        # None stands for a NaN that JSON cannot hold
        return np.array([math.nan if v is None else v for v in values], np.float64)
    if all(isinstance(v, str) for v in values):
        return np.array(values, np.str_)
    try:  # lists of one length (an RGB triple per instance) become a 2-D array
        regular = np.array(values)
    except ValueError:  # ragged
        regular = None
    if regular is not None and regular.dtype != object:
        return regular
    out = np.empty(len(values), object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _encode_png(image: NDArray[Any]) -> str:
    """Base64 text of a PNG of a 2-D bool (1-bit PNG) or uint8 (grayscale PNG) array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _decode_png(text: str) -> NDArray[np.uint8]:
    """A base64 PNG (or other image PIL reads), optionally as a ``data:`` URI, as a uint8 gray array.

    RGB and palette images are converted to luminance, images with alpha lose it (LA keeps L),
    16-bit and 32-bit integer images are scaled down from 0-65535 to 0-255.

    Raises:
        FormatError: for bad base64 or bytes that are not an image.
    """
    from PIL import Image, UnidentifiedImageError

    payload = text.strip()
    if payload.startswith("data:"):
        header, sep, payload = payload.partition(",")
        if not sep or not header.endswith(";base64"):
            raise FormatError(
                f"expected a base64 data URI like 'data:image/png;base64,...', got {header[:40]!r}"
            )
    payload = "".join(payload.split())
    payload += "=" * (-len(payload) % 4)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"mask is not valid base64 ({exc})") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode.startswith("I"):
                wide = np.asarray(img, np.float64)
                return np.clip(np.rint(wide * (255 / 65535)), 0, 255).astype(np.uint8)
            gray = img.getchannel(0) if img.mode == "LA" else img.convert("L")
            return np.asarray(gray, np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FormatError(f"mask is not a readable image ({type(exc).__name__}: {exc})") from None
