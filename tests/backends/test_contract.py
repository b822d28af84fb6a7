"""Every registered backend keeps the one contract, loaded through its real path.

Offline backends run on their real weights; transformers backends on tiny random checkpoints saved
with ``save_pretrained`` (tests/tiny); the Gemini backend through the real google-genai client against
the loopback fake server. A new registry entry without a case here fails
``test_every_registered_backend_has_a_contract_case``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promptseg import Detections, InputError
from promptseg.backends.base import CAPABILITIES, Backend, CachesImage, Promptable
from promptseg.backends.registry import get_spec, list_backends, load_backend
from tests.conftest import need

H, W = 375, 500
TEXT = {"offline", "offline-yolox", "sam3", "owlv2", "grounding-dino", "florence-2", "gemini"}
PROMPTABLE = {"sam", "sam2", "edgetam"}
KEY = "contract-test-key"


def test_every_registered_backend_has_a_contract_case() -> None:
    assert set(list_backends()) == TEXT | PROMPTABLE


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("torch")
    need("transformers")
    from tests.tiny.detectors import build_tiny_florence2, build_tiny_grounding_dino, build_tiny_owlv2
    from tests.tiny.sam import build_tiny_edgetam, build_tiny_sam, build_tiny_sam2
    from tests.tiny.sam3 import build_tiny_sam3

    root = tmp_path_factory.mktemp("tiny-contract")
    builders: dict[str, Callable[..., Path]] = {
        "sam": build_tiny_sam,
        "sam2": build_tiny_sam2,
        "edgetam": build_tiny_edgetam,
        "sam3": build_tiny_sam3,
        "owlv2": build_tiny_owlv2,
        "grounding-dino": build_tiny_grounding_dino,
    }
    folders = {name: build(root / name) for name, build in builders.items()}
    folders["florence-2"] = build_tiny_florence2(
        root / "florence-2", answer="person<loc_100><loc_200><loc_300><loc_600>"
    )
    return folders


@pytest.fixture(scope="module")
def gemini_server(voc: dict[str, Any]) -> Iterator[Any]:
    need("google.genai", extra="gemini")
    from promptseg.formats.gemini import to_gemini
    from tests.fakes.gemini_server import FakeGemini, Reply, gemini_reply

    people = [i for i, label in enumerate(voc["labels"]) if label == "person"]
    det = Detections(
        xyxy=voc["xyxy"][people],
        image_size=(H, W),
        labels=["person"] * len(people),
        masks=voc["masks"][people],
    )
    import json

    body = gemini_reply("```json\n" + json.dumps(to_gemini(det)) + "\n```")
    with FakeGemini([Reply(body=body)] * 20, lifetime=120) as server:
        yield server


@pytest.fixture
def backend(name: str, request: pytest.FixtureRequest, offline_env: Path) -> Backend:
    if name.startswith("offline"):
        return load_backend(name)
    if name == "gemini":
        server = request.getfixturevalue("gemini_server")
        return load_backend(name, api_key=KEY, base_url=server.base_url, timeout=10, max_retries=0)
    folder = request.getfixturevalue("tiny")[name]
    return load_backend(name, weights=f"file:{folder}")


def check_contract(det: Detections, name: str, capabilities: frozenset[str]) -> None:
    assert isinstance(det, Detections)
    assert det.image_size == (H, W)
    n = len(det)
    assert det.xyxy.shape == (n, 4) and det.xyxy.dtype == np.float32
    assert (det.xyxy >= 0).all() and (det.xyxy[:, [0, 2]] <= W).all() and (det.xyxy[:, [1, 3]] <= H).all()
    assert (det.xyxy[:, 2:] >= det.xyxy[:, :2]).all()
    assert det.labels.shape == (n,) and all(str(label) for label in det.labels)
    if det.scores is not None:
        assert ((det.scores >= 0) & (det.scores <= 1)).all()
    elif name != "gemini":  # Gemini gives no scores; every local model does
        pytest.fail(f"{name} returned no scores")
    if "masks" in capabilities:
        assert det.masks is not None and det.masks.shape == (n, H, W) and det.masks.dtype == bool
    for key, values in det.attributes.items():
        assert len(values) == n, key
    assert "reason" in det.attributes and all(str(r) for r in det.attributes["reason"])
    assert det.meta["backend"] == name
    assert det.meta["promptseg_version"]


@pytest.mark.parametrize("name", sorted(TEXT))
def test_text_backends_keep_the_contract(name: str, backend: Backend, voc: dict[str, Any]) -> None:
    spec = get_spec(name)
    assert backend.name == name
    assert backend.capabilities == spec.capabilities and spec.capabilities <= set(CAPABILITIES)
    assert isinstance(backend, CachesImage) == ("cache" in spec.capabilities)
    # tiny random models score everything low: threshold 0 makes them answer
    threshold = None if name.startswith("offline") or name == "gemini" else 0.0
    det = backend.detect(voc["rgb"], "people", threshold=threshold)
    assert len(det) > 0
    check_contract(det, name, spec.capabilities)
    assert det.meta["prompt"] == "people"
    with pytest.raises(InputError):
        backend.detect(voc["rgb"], [])


@pytest.mark.parametrize("name", sorted(TEXT - {"gemini", "florence-2"}))
def test_nothing_above_threshold_is_an_empty_answer_in_the_same_shape(
    name: str, backend: Backend, voc: dict[str, Any]
) -> None:
    det = backend.detect(voc["rgb"], "people", threshold=1.0)
    assert len(det) == 0 and det.image_size == (H, W)
    assert det.masks is not None and det.masks.shape == (0, H, W)
    check_contract(det, name, get_spec(name).capabilities)


@pytest.mark.parametrize("name", sorted(PROMPTABLE | {"offline"}))
def test_box_promptable_backends_keep_the_contract(name: str, backend: Backend, voc: dict[str, Any]) -> None:
    spec = get_spec(name)
    assert isinstance(backend, Promptable) and "boxes" in spec.capabilities
    assert backend.capabilities == spec.capabilities
    boxes = voc["xyxy"][:3]
    det = backend.predict(voc["rgb"], boxes=boxes, labels=["a", "b", "c"])
    assert len(det) == 3 and list(det.labels) == ["a", "b", "c"]
    check_contract(det, name, spec.capabilities | {"masks"})
    if "points" in spec.capabilities:
        det = backend.predict(voc["rgb"], points=[[[100, 200], [300, 100]]], point_labels=[[1, 0]])
        assert len(det) == 1
        check_contract(det, name, spec.capabilities)
