"""Session: one image in conversation with the offline default backend, on the real VOC photo."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from promptseg import ConfigError, InputError
from promptseg.session import Session


@pytest.fixture
def session(offline_backend: Any, voc: dict[str, Any]) -> Session:
    return Session(voc["rgb"], offline_backend)


def test_follow_ups_reuse_the_detector_pass_and_answer_the_same(
    session: Session, offline_backend: Any, voc: dict[str, Any]
) -> None:
    people = session.ask("people")
    assert len(people) >= 5 and set(people.labels) == {"person"}
    # the detector pass of this image is now cached inside the backend...
    from promptseg.backends._common import image_key

    assert offline_backend._image_key == image_key(voc["rgb"])
    bottle = session.ask("the bottle")
    # ...and a follow-up answers exactly what a fresh call on the image answers
    fresh = offline_backend.detect(voc["rgb"].copy(), "bottle")
    assert bottle.replace(attributes={}) == fresh.replace(attributes={}).with_meta(**bottle.meta)
    assert bottle.attributes["reason"].tolist() == fresh.attributes["reason"].tolist()
    assert [t.request for t in session.history] == ["ask 'people'", "ask 'the bottle'"]
    assert session.last is bottle
    assert all(t.seconds > 0 for t in session.history)


def test_a_box_prompt_gets_a_mask_inside_it(session: Session, voc: dict[str, Any]) -> None:
    box = voc["xyxy"][voc["labels"].index("bottle")]
    det = session.predict(boxes=[box], labels="bottle")
    assert len(det) == 1 and det.labels[0] == "bottle"
    assert det.masks is not None and det.masks.shape == (1, 375, 500)
    x1, y1, x2, y2 = np.floor(box).astype(int)
    inside = det.masks[0][y1 : y2 + 1, x1 : x2 + 1].sum()
    assert det.masks[0].sum() > 0 and inside == det.masks[0].sum()
    assert "inside the box prompt" in det.attributes["reason"][0]


def test_refine_redraws_one_instance_and_keeps_the_rest(session: Session) -> None:
    people = session.ask("people")
    x1, y1, x2, y2 = people.xyxy[0]
    tighter = [x1, y1, (x1 + x2) / 2, y2]
    refined = session.refine(0, box=tighter)
    assert len(refined) == len(people)
    np.testing.assert_allclose(refined.xyxy[0], tighter)
    assert refined[1:] == people[1:]
    assert refined.masks is not None and not refined.masks[0][:, int(np.ceil(tighter[2])) + 1 :].any()
    assert refined.attributes["reason"][0].endswith("refined with 1 box")
    assert session.history[-1].request == "refine #0: 1 box"


def test_point_prompts_need_a_point_model(session: Session) -> None:
    session.ask("people")
    with pytest.raises(ConfigError, match="masker='sam'"):
        session.refine(0, points=[[100, 100]], point_labels=[0])
    with pytest.raises(ConfigError, match="no point prompts"):
        session.predict(points=[[100, 100]])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.refine(0, box=[0, 0, 5, 5]), "ask for something first"),
        (lambda s: (s.ask("the bottle"), s.refine(5, box=[0, 0, 5, 5])), "no instance #5"),
        (lambda s: (s.ask("the bottle"), s.refine(0)), "refine needs points"),
    ],
)
def test_refine_errors(session: Session, call: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call(session)


def test_the_image_is_read_only_and_reset_keeps_features(session: Session) -> None:
    with pytest.raises(ValueError, match="read-only"):
        session.image[0, 0, 0] = 1
    session.ask("people")
    session.reset()
    assert session.last is None and session.history == []


def test_a_session_from_a_path_loads_the_photo(offline_backend: Any, voc: dict[str, Any]) -> None:
    session = Session(voc["path"], offline_backend)
    assert session.image.shape == (375, 500, 3)
    assert len(session.ask("chairs")) >= 1
