"""Drawing detections on images (masks, boxes, labels). Drawing lives here, never on Detections.

Labels stay legible on any background: each sits on a filled tag in its instance's colour with
black or white text, whichever contrasts more, and boxes and mask outlines get a thin dark halo.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from promptseg.errors import InputError
from promptseg.image import check_rgb
from promptseg.types import BoolArray, Detections, UInt8Array

__all__ = ["annotate", "instance_colors"]


def instance_colors(n: int) -> UInt8Array:
    """``(n, 3)`` uint8 RGB colours, well apart in hue (golden-ratio steps), saturated and bright."""
    hues = (np.arange(n) * 0.618033988749895 + 0.11) % 1.0
    rgb = [colorsys.hsv_to_rgb(float(h), 0.85, 0.95) for h in hues]
    return (np.array(rgb, dtype=np.float64).reshape(n, 3) * 255).round().astype(np.uint8)


def annotate(
    image: UInt8Array,
    detections: Detections,
    *,
    mask_alpha: float = 0.45,
    show_scores: bool = True,
    line_width: int | None = None,
    legend: bool | None = None,
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

    Returns:
        A new uint8 RGB image, ``(H, W, 3)``, or taller by the legend; the input is not modified.
    """
    image = check_rgb(image, purpose="annotate")
    h, w = image.shape[:2]
    if detections.image_size != (h, w):
        raise InputError(f"detections are for an image of {detections.image_size}, the image is {(h, w)}")
    n = len(detections)
    colors = instance_colors(n)
    out = image.astype(np.float32)
    if detections.masks is not None:
        # Paint small instances last so they stay visible on top of large ones.
        order = np.argsort(-detections.mask_area, kind="stable")
        for i in order:
            m = detections.masks[i]
            out[m] = out[m] * (1 - mask_alpha) + colors[i].astype(np.float32) * mask_alpha
        for i in order:
            # A dark line just outside and a coloured line just inside: the outline shows on any
            # background, also where the fill colour resembles the object's own.
            m = detections.masks[i]
            out[_grow(m) & ~m] *= 0.25
            out[m & ~_shrink(_shrink(m))] = colors[i]
    canvas = Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    lw = line_width if line_width is not None else max(1, round(max(h, w) / 250))
    font = _font(max(11, round(max(h, w) / 45)))
    order_boxes = np.argsort(-detections.box_area, kind="stable") if n else np.zeros(0, np.int64)
    for i in order_boxes:
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        color = tuple(int(c) for c in colors[i])
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=(0, 0, 0), width=lw + 2)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=lw)
    explanations = detections.attributes.get("explanation")
    legend = explanations is not None if legend is None else legend
    for i in order_boxes:
        text = f"{i + 1} " if legend else ""
        text += str(detections.labels[i])
        if show_scores and detections.scores is not None:
            text += f" {float(detections.scores[i]):.2f}"
        _draw_tag(draw, text, detections.xyxy[i], tuple(int(c) for c in colors[i]), font, (h, w))
    if legend:
        lines = [str(detections.meta.get("explanation") or detections.meta.get("prompt") or "")]
        for i in range(n):
            why = str(explanations[i]) if explanations is not None else str(detections.labels[i])
            lines.append(f"{i + 1}  {why}")
        canvas = _with_legend(canvas, lines, colors, font)
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
