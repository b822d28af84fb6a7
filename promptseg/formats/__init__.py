"""Converters between :class:`~promptseg.types.Detections` and interchange formats.

Each format is a module with a symmetric ``to_*`` / ``from_*`` pair; nothing here adds methods to
``Detections``:

- :mod:`promptseg.formats.result`: promptseg's own JSON result (the CLI / HTTP contract),
  ``to_json`` / ``from_json``.
- :mod:`promptseg.formats.gemini`: Gemini 2.5's segmentation list (``box_2d``, ``label``, a PNG mask
  cropped to the box), ``to_gemini`` / ``from_gemini``.
- :mod:`promptseg.formats.coco`: COCO annotations and results, ``to_coco`` / ``from_coco``.

Malformed input raises :class:`~promptseg.errors.FormatError` naming the item and field.
"""

from __future__ import annotations

from promptseg.formats.coco import from_coco, to_coco
from promptseg.formats.gemini import from_gemini, to_gemini
from promptseg.formats.result import from_json, to_json

__all__ = ["from_coco", "from_gemini", "from_json", "to_coco", "to_gemini", "to_json"]
