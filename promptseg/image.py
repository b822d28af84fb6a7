"""Image input that survives the real world: a file, bytes, a PIL image or an array in, RGB pixels out.

:func:`load_image` always returns an ``(H, W, 3)`` uint8 RGB array, C-contiguous, upright (EXIF
orientation applied), or raises :class:`~promptseg.errors.ImageLoadError` (a file or buffer that cannot
be read) or :class:`~promptseg.errors.InputError` (an array or object of the wrong kind) with a one-line
message naming the source, what is wrong and what was expected. It never returns a partly decoded image.

Decisions, so that no caller has to guess:

- **Formats**: JPEG (and MPO, the multi-picture JPEG some cameras write), PNG (APNG: first frame), WebP
  (animated: first frame), BMP, TIFF (first page) and GIF (first frame). Other formats Pillow knows (PSD,
  ICO, EPS, ...) are refused by name: fewer parsers exposed to untrusted files, and EPS would run
  Ghostscript. The file's content decides, never its extension.
- **Size limit**: ``width * height`` is checked against ``max_pixels`` (argument, else
  ``$PROMPTSEG_MAX_PIXELS``, default 100 MP) from the header, before any pixel is decoded. Pillow's own
  guard (more than ``2 * PIL.Image.MAX_IMAGE_PIXELS``, ~179 MP by default) still applies on top and is
  reported the same way; promptseg never changes Pillow's globals (``MAX_IMAGE_PIXELS``,
  ``LOAD_TRUNCATED_IMAGES``), so raising that second limit is the application's call. Pillow's
  ``DecompressionBombWarning`` is silenced around the decode only (promptseg made its own check), so a
  filter that turns warnings into errors cannot break a load.
- **Transparency** (alpha channels, PNG/GIF transparent colours, palettes with alpha) is composited over
  :data:`COMPOSITE_BACKGROUND`, white: dropping alpha would expose whatever colour happens to be stored
  under transparent pixels (often black, sometimes junk), and cut-outs, logos and screenshots are drawn
  to be seen on a light page; a fixed colour keeps the result deterministic.
- **High bit depth** is scaled by the declared depth, not clipped: 16-bit gray ``v -> round(v / 257)``
  (65535 -> 255, 32768 -> 128); 32-bit integer TIFF by its BitsPerSample/SampleFormat (signed: negative
  -> 0); an in-memory mode ``I`` image of unknown depth is taken as 16-bit. 16-bit-per-channel colour
  (48-bit PNG, 16-bit RGB TIFF) is reduced by Pillow itself, which keeps the high byte (``v >> 8``).
- **Float images** (TIFF mode ``F``) are read as intensities in [0, 1]: ``round(255 * clip(v, 0, 1))``,
  NaN -> 0. (Pillow's own ``convert("L")`` would clip to [0, 255] instead; [0, 1] is what float images
  written by image tools hold.)
- **Arrays**: uint8 is taken as is (a C-contiguous ``(H, W, 3)`` array is returned without a copy); bool
  becomes 0/255; every other dtype is refused with the one-line conversion to use, because whether
  floats mean [0, 1] or [0, 255] (or ints 8 or 16 bits) cannot be told from the values.
- **EXIF** that Pillow cannot parse leaves the image unrotated, with a
  :class:`~promptseg.errors.PromptsegWarning`; an orientation value outside 1-8 means upright.
- **Colour profiles** (ICC) are not applied: pixel values are taken as encoded, as OpenCV and most vision
  pipelines do. CMYK, YCbCr and LAB go through Pillow's conversion to RGB (Adobe-inverted CMYK JPEGs
  included).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Final, TypeAlias

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from promptseg.errors import ConfigError, ImageLoadError, InputError, PromptsegWarning
from promptseg.settings import get_settings
from promptseg.types import ImageSize, UInt8Array

__all__ = ["COMPOSITE_BACKGROUND", "check_rgb", "load_image", "read_image_size"]

COMPOSITE_BACKGROUND: Final[tuple[int, int, int]] = (255, 255, 255)
"""RGB colour that transparent pixels are composited over: white (see the module docstring)."""

_Source: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | Image.Image | NDArray[Any]
)

_FORMATS: Final = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
_EXPECTED: Final = "a JPEG, PNG, WebP, BMP, TIFF or GIF image"
_SIGNATURES: Final = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
_SNIFF_BYTES: Final = 512
_ORIENTATION_TAG: Final = 0x0112
_ALPHA_MODES: Final = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_INT_GRAY_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_CHUNK_PIXELS: Final = 1 << 20  # rows processed at a time in the wide-integer steps, to bound memory


def load_image(source: _Source, *, max_pixels: int | None = None) -> UInt8Array:
    """Read an image into RGB pixels, upright, refusing anything too large before decoding it.

    Args:
        source: where the image comes from:

            - a path (``str`` or ``os.PathLike``) to a JPEG, PNG, WebP, BMP, TIFF or GIF file;
            - ``bytes``, ``bytearray`` or ``memoryview`` holding such a file;
            - a binary file object, read from its current position to its end (not closed);
            - a ``PIL.Image.Image`` (lazily opened images are size-checked before they are decoded;
              EXIF orientation is applied, once: ``ImageOps.exif_transpose`` removes the tag);
            - a numpy array ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)`` (RGBA) of
              dtype uint8 or bool.
        max_pixels: refuse images with more than this many pixels (``H * W``); None reads
            ``$PROMPTSEG_MAX_PIXELS`` (default 100 000 000).

    Returns:
        ``(H, W, 3)`` uint8 RGB, C-contiguous, rows top to bottom as the image is meant to be viewed.
        A new, writable array, except that a C-contiguous ``(H, W, 3)`` uint8 input array is returned
        as is.

    Raises:
        ImageLoadError: the file or buffer is missing, unreadable, empty, truncated, corrupt, not an
            image, in an unsupported format, or has more than ``max_pixels`` pixels.
        InputError: an array of the wrong shape or dtype, or a source of an unsupported type.
        ConfigError: ``max_pixels`` (or ``$PROMPTSEG_MAX_PIXELS``) is not a positive whole number.

    Example:
        >>> rgb = load_image("photo.jpg")  # doctest: +SKIP
        >>> rgb.shape, rgb.dtype  # doctest: +SKIP
        ((375, 500, 3), dtype('uint8'))
    """
    limit = _pixel_limit(max_pixels)
    if isinstance(source, np.ndarray):
        return _from_array(source, limit)
    if isinstance(source, Image.Image):
        return _from_pil(source, _pil_name(source), limit)
    with _opened(source, limit) as (im, name):
        return _from_pil(im, name, limit)


def check_rgb(image: Any, *, purpose: str) -> UInt8Array:
    """Check that an array already is what :func:`load_image` returns, without converting anything.

    Models and drawing take pixels in one form; this is the one check they share.

    Args:
        image: the array to check.
        purpose: who needs it, for the message ("mask refinement").

    Returns:
        ``image`` as an ``(H, W, 3)`` uint8 array (no copy when it is one).

    Raises:
        InputError: for any other shape or dtype, or an empty image.
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(
            f"{purpose} needs an (H, W, 3) uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}; "
            "promptseg.load_image() reads files and converts arrays into that form"
        )
    return arr


def read_image_size(source: _Source) -> ImageSize:
    """``(H, W)`` of an image as :func:`load_image` would return it, reading the header only.

    EXIF orientations 5-8 (a quarter turn) swap the stored width and height. No size limit applies
    (nothing is decoded), except Pillow's own decompression-bomb guard. A PNG can place its EXIF
    after the pixel data; only EXIF before it is seen here.

    Args:
        source: anything :func:`load_image` accepts.

    Returns:
        ``(H, W)`` in pixels.

    Raises:
        ImageLoadError: the file or buffer cannot be identified as a supported image.
        InputError: an array of the wrong shape, or a source of an unsupported type.

    Example:
        >>> read_image_size("photo.jpg")  # doctest: +SKIP
        (375, 500)
    """
    if isinstance(source, np.ndarray):
        _check_array_shape(source)
        return int(source.shape[0]), int(source.shape[1])
    if isinstance(source, Image.Image):
        return _upright_size(source, _pil_name(source))
    with _opened(source, None) as (im, name):
        return _upright_size(im, name)


def _pixel_limit(max_pixels: int | None) -> int:
    if max_pixels is None:
        return get_settings().max_pixels
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
        raise ConfigError(f"max_pixels must be a positive whole number of pixels, got {max_pixels!r}")
    return int(max_pixels)


def _check_size(width: int, height: int, name: str, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"cannot load image {name}: it is {width} x {height} pixels; expected H, W > 0")
    if width * height > limit:
        raise ImageLoadError(
            f"cannot load image {name}: it is {width} x {height} = {width * height:,} pixels (W x H), "
            f"over the limit of {limit:,}; to accept it, pass max_pixels= or set PROMPTSEG_MAX_PIXELS "
            "(the limit guards against decompression bombs)"
        )


@contextmanager
def _bomb_warning_silenced() -> Iterator[None]:
    # Pillow warns from MAX_IMAGE_PIXELS (~89 MP) on, below our default limit; promptseg has made its
    # own check, and a filter that turns warnings into errors must not turn that warning into a failure.
    # catch_warnings restores the filters on exit (before Python 3.14 it is process-wide, not per
    # thread: a filter another thread changes during a decode is undone; an accepted trade-off).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


@functools.cache
def _formats() -> tuple[str, ...]:
    # Importing a plugin registers it with Pillow; Image.init() would import all of them (~0.1 s).
    from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin  # noqa: F401

    # A Pillow built without libwebp: WebP files are then reported as unsupported.
    with contextlib.suppress(ImportError):
        from PIL import WebPImagePlugin  # noqa: F401
    return tuple(f for f in _FORMATS if f in Image.OPEN)


@contextmanager
def _opened(source: Any, limit: int | None) -> Iterator[tuple[Image.Image, str]]:
    """Open a path, a buffer or a file object lazily (header only); yield the image and its name."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = repr(os.fsdecode(path))
        with _open_path(path, name) as fp:
            try:
                prefix = fp.read(_SNIFF_BYTES)
                fp.seek(0)
            except OSError as exc:
                raise ImageLoadError(f"cannot load image {name}: reading it failed ({_brief(exc)})") from None
            if not prefix:
                raise ImageLoadError(
                    f"cannot load image {name}: the file is empty (0 bytes); expected {_EXPECTED}"
                )
            with _pil_open(fp, name, prefix, limit) as im:
                yield im, name
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = "<bytes>"
        data = source if isinstance(source, bytes) else bytes(source)
    elif isinstance(source, io.TextIOBase):
        raise InputError(f"the file object {_file_name(source)} is open in text mode; open it with 'rb'")
    elif callable(getattr(source, "read", None)):
        name = _file_name(source)
        try:
            data = source.read()
        except OSError as exc:
            raise ImageLoadError(f"cannot load image {name}: reading it failed ({_brief(exc)})") from None
        if isinstance(data, str):
            raise InputError(f"the file object {name} is open in text mode; open it with 'rb'")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InputError(f"the file object {name} returned {type(data).__name__} from read(), not bytes")
        data = bytes(data)
    else:
        raise InputError(
            f"cannot load an image from a {type(source).__name__}; expected a path (str or os.PathLike), "
            "encoded bytes, a binary file object, a PIL.Image.Image or a numpy array"
        )
    if not data:
        raise ImageLoadError(f"cannot load image {name}: it is empty (0 bytes); expected {_EXPECTED}")
    with _pil_open(io.BytesIO(data), name, data[:_SNIFF_BYTES], limit) as im:
        yield im, name


def _open_path(path: str | bytes, name: str) -> IO[bytes]:
    try:
        return open(path, "rb")  # closed by the caller's with-block
    except FileNotFoundError:
        text = os.fsdecode(path)
        hint = "; promptseg reads local files only, download it first" if "://" in text else ""
        raise ImageLoadError(
            f"cannot load image {name}: no such file; expected the path of an existing image file{hint}"
        ) from None
    except IsADirectoryError:
        raise ImageLoadError(f"cannot load image {name}: it is a directory; expected an image file") from None
    except PermissionError:
        if os.path.isdir(path):  # Windows reports a directory this way
            raise ImageLoadError(
                f"cannot load image {name}: it is a directory; expected an image file"
            ) from None
        raise ImageLoadError(
            f"cannot load image {name}: permission denied; expected a file this process can read"
        ) from None
    except OSError as exc:
        raise ImageLoadError(f"cannot load image {name}: cannot open it ({_brief(exc)})") from None
    except ValueError as exc:  # e.g. a NUL character in the path
        raise ImageLoadError(f"cannot load image {name}: not a usable path ({_brief(exc)})") from None


@contextmanager
def _pil_open(fp: IO[bytes], name: str, prefix: bytes, limit: int | None) -> Iterator[Image.Image]:
    try:
        with _bomb_warning_silenced():
            im = Image.open(fp, formats=_formats())
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(_pillow_bomb_message(name, exc, limit)) from None
    except UnidentifiedImageError:
        raise ImageLoadError(_unidentified_message(fp, name, prefix)) from None
    except Exception as exc:  # Pillow's header parsers raise a zoo of types; all mean "cannot read it"
        kind = _sniff(prefix)
        expected = f"a complete {kind} file" if kind else _EXPECTED
        raise ImageLoadError(
            f"cannot load image {name}: its header cannot be read, the file is truncated or corrupt "
            f"({_brief(exc)}); expected {expected}"
        ) from exc
    with im:
        yield im


def _from_pil(im: Image.Image, name: str, limit: int) -> UInt8Array:
    width, height = im.size
    _check_size(width, height, name, limit)
    what = f"a complete {im.format} file" if im.format else "an image whose pixel data can be read"
    try:
        with _bomb_warning_silenced():
            im.load()  # decode every pixel here, inside the try: truncation must fail now, not later
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(_pillow_bomb_message(name, exc, limit)) from None
    except MemoryError:
        raise ImageLoadError(
            f"cannot load image {name}: not enough memory to decode {width} x {height} pixels; "
            "lower max_pixels (or PROMPTSEG_MAX_PIXELS) to refuse such images up front"
        ) from None
    except Exception as exc:
        raise ImageLoadError(
            f"cannot load image {name}: its pixel data cannot be decoded, the file is truncated or corrupt "
            f"({_brief(exc)}); expected {what} (re-download or re-export it)"
        ) from exc
    orientation = _orientation(im, name, header_only=False)
    try:
        rgb = _to_rgb(im)
    except Exception as exc:
        raise ImageLoadError(
            f"cannot load image {name}: its colour mode {im.mode!r} cannot be converted to RGB "
            f"({_brief(exc)}); expected {_EXPECTED} in a common colour mode"
        ) from exc
    return _apply_orientation(rgb, orientation)


def _upright_size(im: Image.Image, name: str) -> ImageSize:
    width, height = im.size
    if _orientation(im, name, header_only=True) < 5:
        return height, width
    tags = getattr(im, "tag_v2", None)
    if tags is not None and _ORIENTATION_TAG in tags:
        # A TIFF not yet turned upright: recent Pillow already reports its upright size (and turns the
        # pixels on load), older Pillow the stored one; the tags hold the stored size in both.
        width, height = int(tags[256]), int(tags[257])
    return width, height  # stored a quarter turn from upright


def _orientation(im: Image.Image, name: str, *, header_only: bool) -> int:
    """The EXIF (or XMP) orientation, 1-8; 1 when absent, invalid or unreadable."""
    if header_only and im.format == "PNG" and "exif" not in im.info:
        return 1  # Pillow's PNG getexif() would decode the pixels to look for a trailing eXIf chunk
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as exc:
        warnings.warn(
            f"the EXIF data of image {name} cannot be read ({_brief(exc)}); using the image unrotated",
            PromptsegWarning,
            stacklevel=4,  # the caller of load_image / read_image_size
        )
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(rgb: UInt8Array, orientation: int) -> UInt8Array:
    """Turn stored ``(H, W, 3)`` pixels upright for an EXIF orientation (as ImageOps.exif_transpose does)."""
    views = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # rotated 180
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.transpose(1, 0, 2),  # mirrored along the main diagonal
        6: lambda a: np.rot90(a, -1),  # stored a quarter turn counter-clockwise: turn clockwise
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the anti-diagonal
        8: lambda a: np.rot90(a, 1),  # stored a quarter turn clockwise: turn counter-clockwise
    }
    view = views.get(orientation)
    return rgb if view is None else np.ascontiguousarray(view(rgb))


def _to_rgb(im: Image.Image) -> UInt8Array:
    """Decoded pixels of any Pillow mode to a new ``(H, W, 3)`` uint8 array (before orientation)."""
    mode = im.mode
    if mode in _INT_GRAY_MODES or mode == "F":
        values = np.asarray(im)
        gray = _float_to_u8(values) if mode == "F" else _int_to_u8(values, _int_max_value(im))
        rgb = np.repeat(gray[..., None], 3, axis=2)
        key = im.info.get("transparency")
        if isinstance(key, int) and mode != "F":  # a 16-bit PNG's transparent gray level
            return _composite(rgb, np.where(values == key, 0, 255).astype(np.uint8))
        return rgb
    if _has_alpha(im):
        rgba = np.asarray(im.convert("RGBA"))
        return _composite(rgba[..., :3], rgba[..., 3])
    if mode in ("1", "L"):
        gray = np.asarray(im if mode == "L" else im.convert("L"))
        return np.repeat(gray[..., None], 3, axis=2)
    return np.array(im if mode == "RGB" else im.convert("RGB"), dtype=np.uint8)  # a copy we own


def _has_alpha(im: Image.Image) -> bool:
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        return True
    return im.mode == "P" and im.palette is not None and im.palette.mode == "RGBA"


def _int_max_value(im: Image.Image) -> int:
    """The full-scale value of an integer gray image, from its declared bit depth."""
    if im.mode != "I":
        return 65535
    bits, signed = 16, False  # mode I of unknown origin: 16-bit is by far the commonest source
    tags = getattr(im, "tag_v2", None)  # TIFF
    if tags is not None:
        declared = _first(tags.get(258))  # BitsPerSample
        if isinstance(declared, int) and 1 <= declared <= 32:
            bits = declared
        signed = _first(tags.get(339)) == 2  # SampleFormat: 1 unsigned, 2 signed
    return max(1, (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) and value else value


def _row_chunks(height: int, width: int) -> Iterator[slice]:
    step = max(1, _CHUNK_PIXELS // max(1, width))
    for top in range(0, height, step):
        yield slice(top, top + step)


def _int_to_u8(values: NDArray[Any], max_value: int) -> NDArray[np.uint8]:
    """``round(255 * v / max_value)`` with negative values as 0, half up, in exact integer arithmetic."""
    out = np.empty(values.shape, np.uint8)
    for rows in _row_chunks(*values.shape):
        v = np.clip(values[rows].astype(np.int64), 0, max_value)
        out[rows] = (v * 510 + max_value) // (2 * max_value)
    return out


def _float_to_u8(values: NDArray[Any]) -> NDArray[np.uint8]:
    out = np.empty(values.shape, np.uint8)
    for rows in _row_chunks(*values.shape):
        v = np.nan_to_num(values[rows].astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        out[rows] = np.floor(np.clip(v, 0.0, 1.0) * 255.0 + 0.5)
    return out


def _composite(rgb: NDArray[np.uint8], alpha: NDArray[np.uint8]) -> UInt8Array:
    """``(H, W, 3)`` colour over :data:`COMPOSITE_BACKGROUND` by ``(H, W)`` alpha, rounded, as a new array."""
    height, width = alpha.shape
    out = np.empty((height, width, 3), np.uint8)
    background = np.array(COMPOSITE_BACKGROUND, np.uint16)
    for rows in _row_chunks(height, width):
        a = alpha[rows, :, None].astype(np.uint16)
        # c*a + bg*(255-a) <= 255*255, so uint16 cannot overflow; +127 rounds the division
        out[rows] = (rgb[rows].astype(np.uint16) * a + background * (255 - a) + 127) // 255
    return out


def _check_array_shape(arr: NDArray[Any]) -> None:
    shape = arr.shape
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and shape[2] not in (1, 3, 4)):
        hint = (
            "; it looks channels-first (C, H, W), use a.transpose(1, 2, 0)"
            if arr.ndim == 3 and shape[0] in (1, 3, 4) and shape[1] > 4 and shape[2] > 4
            else ""
        )
        raise InputError(
            f"an image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {shape}{hint}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"the image array is empty (shape {shape}); expected H > 0 and W > 0")


def _from_array(arr: NDArray[Any], limit: int) -> UInt8Array:
    _check_array_shape(arr)
    if arr.dtype != np.uint8 and arr.dtype != np.bool_:
        raise InputError(_dtype_message(arr))
    height, width = int(arr.shape[0]), int(arr.shape[1])
    _check_size(width, height, "<array>", limit)
    if arr.dtype == np.bool_:
        arr = np.where(arr, np.uint8(255), np.uint8(0))
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels == 1:
        return np.repeat(arr.reshape(height, width, 1), 3, axis=2)
    if channels == 4:
        return _composite(arr[..., :3], arr[..., 3])
    return np.ascontiguousarray(arr)


def _dtype_message(arr: NDArray[Any]) -> str:
    head = f"an image array must be uint8 (or bool), got {arr.dtype}"
    if arr.dtype.kind == "f":
        lo, hi = float(np.min(arr)), float(np.max(arr))
        return (
            f"{head} with values in [{lo:g}, {hi:g}]; convert it first: "
            "(np.clip(a, 0, 1) * 255).round().astype(np.uint8) for values in [0, 1], "
            "or np.clip(a, 0, 255).round().astype(np.uint8) for values in [0, 255]"
        )
    if arr.dtype.kind in "iu":
        lo, hi = int(np.min(arr)), int(np.max(arr))
        return (
            f"{head} with values in [{lo}, {hi}]; convert it first: np.clip(a, 0, 255).astype(np.uint8) "
            "for values in 0..255, or (a / 257).round().astype(np.uint8) for 16-bit values"
        )
    return f"{head}; expected RGB or gray intensities as uint8"


def _pillow_bomb_message(name: str, exc: Exception, limit: int | None) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found[1]) if found else None
    size = f"{pixels:,} pixels" if pixels is not None else "too many pixels"
    pillow_limit = f"{2 * Image.MAX_IMAGE_PIXELS:,}" if Image.MAX_IMAGE_PIXELS else "its limit"
    if limit is not None and pixels is not None and pixels > limit:
        return (
            f"cannot load image {name}: it has {size}, over the limit of {limit:,}; to accept it, pass "
            "max_pixels= or set PROMPTSEG_MAX_PIXELS (the limit guards against decompression bombs), and "
            f"have the application raise PIL.Image.MAX_IMAGE_PIXELS (Pillow refuses more than {pillow_limit})"
        )
    return (
        f"cannot load image {name}: it has {size}, over Pillow's decompression-bomb limit of "
        f"{pillow_limit} pixels (2 x PIL.Image.MAX_IMAGE_PIXELS); to accept it, the application must raise "
        "PIL.Image.MAX_IMAGE_PIXELS (promptseg never changes it) as well as max_pixels= "
        "or PROMPTSEG_MAX_PIXELS"
    )


def _unidentified_message(fp: IO[bytes], name: str, prefix: bytes) -> str:
    head = f"cannot load image {name}:"
    kind = _sniff(prefix)
    if kind is not None:
        return (
            f"{head} it starts like a {kind} file but its header cannot be read (truncated or corrupt); "
            f"expected a complete {kind} file"
        )
    other = _identify_any(fp)
    if other is not None:
        return (
            f"{head} it is a {other} image, which promptseg does not read; expected {_EXPECTED} (convert it)"
        )
    text = _as_text(prefix)
    if text is not None:
        return f"{head} it holds text, not an image (it starts {text!r}); expected {_EXPECTED}"
    start = prefix[:8].hex(" ")
    return f"{head} it is not a recognised image (it starts with bytes {start}); expected {_EXPECTED}"


def _sniff(prefix: bytes) -> str | None:
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        return "WebP"
    for signature, kind in _SIGNATURES:
        if prefix.startswith(signature):
            return kind
    return None


def _identify_any(fp: IO[bytes]) -> str | None:
    """The name of a format Pillow knows but promptseg does not read, for the message; else None."""
    try:
        with _bomb_warning_silenced(), Image.open(fp) as other:
            return str(other.format) if other.format else None
    except Exception:  # not an image at all (or a broken one): the caller says so
        return None


def _as_text(prefix: bytes) -> str | None:
    """The first words of ``prefix`` when it reads as text (an HTML error page, a CSV, ...); else None."""
    if b"\x00" in prefix:
        return None
    decoded = prefix.decode("utf-8", errors="replace")
    odd = sum(1 for c in decoded if c == "\ufffd" or (ord(c) < 32 and c not in "\t\n\r\f\v"))
    if odd > len(decoded) // 20:
        return None
    return " ".join(decoded.split())[:40]


def _file_name(fp: Any) -> str:
    name = getattr(fp, "name", None)
    return repr(os.fsdecode(name)) if isinstance(name, (str, bytes)) else "<file object>"


def _pil_name(im: Image.Image) -> str:
    filename = getattr(im, "filename", None)
    return repr(os.fsdecode(filename)) if isinstance(filename, (str, bytes)) and filename else "<PIL.Image>"


def _brief(exc: BaseException) -> str:
    """A third-party exception as one short line: ``Type: message``."""
    message = " ".join(str(exc).split())
    if len(message) > 200:
        message = message[:197] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
