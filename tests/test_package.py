"""The package surface: cheap import, no global side effects, a sorted and complete __all__."""

from __future__ import annotations

import json
import subprocess
import sys

import promptseg

HEAVY = ["torch", "transformers", "onnxruntime", "cv2", "tokenizers", "google.genai", "huggingface_hub"]


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_import_is_cheap_and_pulls_no_model_runtime() -> None:
    out = _run(
        "import sys, json, promptseg, promptseg.backends, promptseg.cli; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert json.loads(out) == []


def test_import_changes_no_global_state() -> None:
    out = _run(
        "import os, sys, json, logging, warnings\n"
        "import numpy  # numpy adds its own warning filters on first import\n"
        "from PIL import Image, ImageFile\n"
        "before = (dict(os.environ), list(warnings.filters), logging.getLogger().handlers[:],"
        " Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)\n"
        "import promptseg, promptseg.backends, promptseg.cli\n"
        "after = (dict(os.environ), list(warnings.filters), logging.getLogger().handlers[:],"
        " Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)\n"
        "print(json.dumps(before == after))"
    )
    assert json.loads(out) is True


def test_public_names_are_sorted_complete_and_resolvable() -> None:
    assert promptseg.__all__ == sorted(promptseg.__all__)
    assert set(promptseg.__all__) == set(promptseg._EXPORTS) | {"__version__"}
    for name in promptseg.__all__:
        assert getattr(promptseg, name) is not None
    assert set(dir(promptseg)) >= set(promptseg.__all__)


def test_errors_form_one_tree() -> None:
    for name in promptseg.__all__:
        obj = getattr(promptseg, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, promptseg.PromptsegError), name


def test_no_submodule_shadows_a_lazy_export() -> None:
    """Importing a submodule sets it as an attribute of the package: one named like a lazy export
    (a ``promptseg/segment.py`` beside ``promptseg.segment()``) would replace the function with the module
    as soon as anything imported it."""
    import importlib.util

    import promptseg
    import promptseg._segment  # what cli, server and labeling import

    assert [n for n in promptseg.__all__ if importlib.util.find_spec(f"promptseg.{n}") is not None] == []
    assert callable(promptseg.segment) and promptseg.segment.__name__ == "segment"
