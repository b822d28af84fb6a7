"""Drawing detections on images (masks, boxes, labels). Drawing lives here, never on Detections.

Labels stay legible on any background: each sits on a filled tag in its instance's colour with
black or white text, whichever contrasts more, and boxes and mask outlines get a thin dark halo.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw, ImageFont

from promptseg.errors import InputError
from promptseg.image import check_rgb
from promptseg.types import BoolArray, Detections, UInt8Array

__all__ = ["annotate", "id_colors", "instance_colors"]


def instance_colors(n: int) -> UInt8Array:
    """``(n, 3)`` uint8 RGB colours, well apart in hue (golden-ratio steps), saturated and bright."""
    return id_colors(np.arange(n))


def id_colors(ids: ArrayLike) -> UInt8Array:
    """``(N, 3)`` uint8 RGB colours keyed by integer ids: the same id always gets the same colour (a
    track keeps its colour from frame to frame), neighbouring ids are far apart in hue."""
    keys = np.asarray(ids, dtype=np.int64).reshape(-1)
    hues = (keys.astype(np.float64) * 0.618033988749895 + 0.11) % 1.0
    rgb = [colorsys.hsv_to_rgb(float(h), 0.85, 0.95) for h in hues]
    return (np.array(rgb, dtype=np.float64).reshape(len(keys), 3) * 255).round().astype(np.uint8)


def annotate(
    image: UInt8Array,
    detections: Detections,
    *,
    mask_alpha: float = 0.45,
    show_scores: bool = True,
    line_width: int | None = None,
    legend: bool | None = None,
    colors: ArrayLike | None = None,
    tags: Sequence[str] | None = None,
) -> UInt8Array:
    """Draw masks, boxes and labels over an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, the image the detections belong to.
        detections: what to draw (masks are optional).
        mask_alpha: opacity of the mask fill, 0-1.
        show_scores: append the score to each label.
        line_width: box line width in pixels (None: scaled to the image, 2 px at 500 px).
        legend: add a panel under the image that numbers the instances and gives each one's
            ``attributes["explanation"]`` (and ``meta["explanation"]`` as its title). None: when the
            detections carry explanations (answers of :mod:`promptseg.query`).
        colors: ``(N, 3)`` uint8 RGB per instance (None: :func:`instance_colors`; a tracker passes
            :func:`id_colors` of its track ids so colours stay with objects).
        tags: the text of each instance's tag (None: its label, and its score with ``show_scores``).

    Returns:
        A new uint8 RGB image, ``(H, W, 3)``, or taller by the legend; the input is not modified.
    """
    image = check_rgb(image, purpose="annotate")
    h, w = image.shape[:2]
    if detections.image_size != (h, w):
        raise InputError(f"detections are for an image of {detections.image_size}, the image is {(h, w)}")
    n = len(detections)
    palette = instance_colors(n) if colors is None else np.asarray(colors, np.uint8).reshape(n, 3)
    out = image.copy()
    if detections.masks is not None and n:
        # Small instances are painted last so they stay visible on top of large ones. Each mask is
        # drawn inside its bounding region, in uint8: no frame-sized float copies (video draws this
        # per frame).
        order = np.argsort(-detections.mask_area, kind="stable")
        regions = [_mask_region(m) for m in detections.masks]
        tint = palette.astype(np.float32) * mask_alpha + 0.5
        for i in order:
            m = detections.masks[i][regions[i]]
            patch = out[regions[i]]
            patch[m] = (patch[m] * np.float32(1 - mask_alpha) + tint[i]).astype(np.uint8)
        for i in order:
            # A dark line just outside and a coloured line just inside: the outline shows on any
            # background, also where the fill colour resembles the object's own.
            m = detections.masks[i][regions[i]]
            patch = out[regions[i]]
            patch[_grow(m) & ~m] //= 4
            patch[m & ~_shrink(_shrink(m))] = palette[i]
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    lw = line_width if line_width is not None else max(1, round(max(h, w) / 250))
    font = _font(max(11, round(max(h, w) / 45)))
    order_boxes = np.argsort(-detections.box_area, kind="stable") if n else np.zeros(0, np.int64)
    for i in order_boxes:
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        color = tuple(int(c) for c in palette[i])
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=(0, 0, 0), width=lw + 2)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=lw)
    explanations = detections.attributes.get("explanation")
    legend = explanations is not None if legend is None else legend
    for i in order_boxes:
        text = f"{i + 1} " if legend else ""
        if tags is not None:
            text += str(tags[i])
        else:
            text += str(detections.labels[i])
            if show_scores and detections.scores is not None:
                text += f" {float(detections.scores[i]):.2f}"
        _draw_tag(draw, text, detections.xyxy[i], tuple(int(c) for c in palette[i]), font, (h, w))
    if legend:
        lines = [str(detections.meta.get("explanation") or detections.meta.get("prompt") or "")]
        for i in range(n):
            why = str(explanations[i]) if explanations is not None else str(detections.labels[i])
            lines.append(f"{i + 1}  {why}")
        canvas = _with_legend(canvas, lines, palette, font)
    return np.asarray(canvas, dtype=np.uint8)


def _with_legend(
    canvas: Image.Image,
    lines: list[str],
    colors: UInt8Array,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> Image.Image:
    """The image with a white panel under it: a title line, then one wrapped line per instance."""
    w = canvas.width
    probe = ImageDraw.Draw(canvas)
    line_h = int(probe.textbbox((0, 0), "Ag", font=font)[3]) + 4
    swatch = line_h - 4
    rows: list[tuple[int, str]] = []  # (instance index or -1 for the title, text)
    for k, line in enumerate(lines):
        indent = 0 if k == 0 else swatch + 6
        for part in _wrap(probe, line, font, w - 12 - indent):
            rows.append((k - 1, part))
    panel = Image.new("RGB", (w, canvas.height + len(rows) * line_h + 10), (255, 255, 255))
    panel.paste(canvas, (0, 0))
    draw = ImageDraw.Draw(panel)
    y = canvas.height + 5
    previous = -2
    for index, text in rows:
        x = 6
        if index >= 0:
            if index != previous:
                color = tuple(int(c) for c in colors[index])
                draw.rectangle((x, y + 2, x + swatch, y + 2 + swatch - 2), fill=color, outline=(0, 0, 0))
            x += swatch + 6
        draw.text((x, y), text, fill=(0, 0, 0), font=font)
        previous = index
        y += line_h
    return panel


def _wrap(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int
) -> list[str]:
    words = text.split()
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if current and draw.textlength(candidate, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current or not lines else lines


def _draw_tag(
    draw: ImageDraw.ImageDraw,
    text: str,
    xyxy: np.ndarray,
    color: tuple[int, ...],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    image_size: tuple[int, int],
) -> None:
    h, w = image_size
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tw, th = right - left, bottom - top
    pad = max(2, th // 4)
    x = float(np.clip(xyxy[0], 0, max(0, w - tw - 2 * pad)))
    y = float(xyxy[1]) - th - 2 * pad
    if y < 0:  # no room above the box: put the tag inside its top edge
        y = float(np.clip(xyxy[1], 0, max(0, h - th - 2 * pad)))
    draw.rectangle((x, y, x + tw + 2 * pad, y + th + 2 * pad), fill=color, outline=(0, 0, 0))
    draw.text((x + pad - left, y + pad - top), text, fill=_text_color(color), font=font)


def _text_color(rgb: tuple[int, ...]) -> tuple[int, int, int]:
    # WCAG relative luminance; pick the text colour with the larger contrast ratio.
    c = np.array(rgb[:3], dtype=np.float64) / 255
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lum = float(lin @ [0.2126, 0.7152, 0.0722])
    return (0, 0, 0) if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else (255, 255, 255)


def _mask_region(mask: BoolArray) -> tuple[slice, slice]:
    """The rows and columns a mask covers, one pixel wider each side (for its outline)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return slice(0, 0), slice(0, 0)
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h)),
        slice(max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w)),
    )


def _shrink(mask: BoolArray) -> BoolArray:
    """Erosion by one pixel (4-neighbourhood)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def _grow(mask: BoolArray) -> BoolArray:
    """Dilation by one pixel (4-neighbourhood)."""
    outer = mask.copy()
    outer[1:, :] |= mask[:-1, :]
    outer[:-1, :] |= mask[1:, :]
    outer[:, 1:] |= mask[:, :-1]
    outer[:, :-1] |= mask[:, 1:]
    return outer


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
