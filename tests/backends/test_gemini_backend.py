"""The Gemini backend: the real google-genai client against a local Gemini API (tests/fakes/gemini_server).

Replies are built with ``to_gemini`` from real VOC instances, so the masks are real. Nothing leaves
127.0.0.1, and every wait is a fraction of a second.
"""

from __future__ import annotations

import email.utils
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip(
    "google.genai", reason="the Gemini backend needs google-genai: pip install 'promptseg[gemini]'"
)

from promptseg.backends import load_backend
from promptseg.backends.gemini import PRICES, GeminiBackend
from promptseg.errors import BackendUnavailable, FormatError, InputError, RemoteBackendError
from promptseg.formats.gemini import from_gemini, to_gemini
from promptseg.ops.masks import from_polygons, mask_iou
from promptseg.types import Detections
from tests.fakes.gemini_server import FakeGemini, Hang, Reply, api_error, gemini_reply

KEY = "test-key-123"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "PROMPTSEG_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server() -> Iterator[FakeGemini]:
    with FakeGemini(lifetime=20) as fake:
        yield fake


@pytest.fixture(scope="module")
def voc_det(voc: dict[str, Any]) -> Detections:
    return Detections(
        xyxy=voc["xyxy"], image_size=voc["masks"].shape[1:], labels=voc["labels"], masks=voc["masks"]
    )


def backend(server: FakeGemini, **options: Any) -> GeminiBackend:
    settings: dict[str, Any] = {"timeout": 2, "max_retries": 2, "total_budget": 10, "backoff": 0.01}
    return GeminiBackend(api_key=KEY, base_url=server.base_url, **{**settings, **options})


def ok(text: str, **usage: Any) -> Reply:
    return Reply(body=gemini_reply(text, **usage))


def fenced(items: Any) -> str:
    return f"Here are the segmentation masks:\n```json\n{json.dumps(items)}\n```\n"


def test_real_masks_come_back_exactly(server: FakeGemini, voc: dict[str, Any], voc_det: Detections) -> None:
    items = to_gemini(voc_det)
    server.add(ok(fenced(items)))
    det = backend(server).detect(voc["rgb"], "people and chairs")
    assert det.labels.tolist() == voc["labels"]
    assert det.scores is None  # Gemini gives no scores
    assert np.array_equal(det.masks, voc["masks"])  # type: ignore[arg-type]
    # boxes: the 0-1000 grid costs at most one grid step (0.5 px here) per side, outward
    assert np.abs(det.xyxy - voc["xyxy"]).max() <= 0.5 + 1e-4
    assert det.attributes["concept"].tolist() == ["people and chairs"] * len(items)
    assert det.attributes["reason"][0] == f"Gemini labelled this {voc['labels'][0]!r}"
    assert det.meta["backend"] == "gemini"
    assert det.meta["model"] == "gemini-2.5-flash"
    assert det.meta["attempts"] == 1
    assert det.meta["notes"] == []


def test_request_carries_key_prompt_and_downscaled_image(
    server: FakeGemini, voc: dict[str, Any], voc_det: Detections
) -> None:
    big = np.repeat(np.repeat(voc["rgb"], 2, axis=0), 2, axis=1)  # 750 x 1000
    items = to_gemini(voc_det)
    server.add(ok(json.dumps(items)))
    det = backend(server, max_side=512).detect(big, "people")

    (request,) = server.requests
    assert request.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert request.api_key == KEY
    (prompt,) = request.texts
    assert "people" in prompt and '"box_2d"' in prompt and '"mask"' in prompt
    ((mime, data),) = request.images
    assert mime == "image/jpeg"
    assert Image.open(io.BytesIO(data)).size == (512, 384)  # longest side 512, aspect kept
    config = request.json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert next(iter(config["thinkingConfig"].values())) == 0  # thinking off
    assert det.meta["sent_size"] == [384, 512]

    # boxes and masks come back in the frame of the image as given, not the one sent
    assert det.image_size == (750, 1000)
    assert det.masks is not None and det.masks.shape == (19, 750, 1000)
    assert det == from_gemini(items, (750, 1000)).replace(attributes=det.attributes, meta=det.meta)
    assert np.abs(det.xyxy - voc["xyxy"] * 2).max() <= 1.0 + 1e-3  # one grid step is 1 px here
    # each mask PNG is stretched over its box on the 0-1000 grid, which is not pixel-aligned at 2x:
    # large objects keep their shape, small ones (100-400 px) drift by a pixel or two
    upsampled = np.repeat(np.repeat(voc["masks"], 2, axis=1), 2, axis=2)
    ious = np.array([mask_iou(a[None], b[None])[0, 0] for a, b in zip(det.masks, upsampled, strict=True)])
    assert ious.mean() > 0.9
    assert (ious[voc["masks"].sum(axis=(1, 2)) >= 1000] > 0.85).all()


def test_polygon_masks(server: FakeGemini, voc: dict[str, Any]) -> None:
    h, w = voc["rgb"].shape[:2]
    triangle = [[100, 200], [500, 200], [300, 600]]  # [x, y] on 0-1000
    box = [200, 100, 600, 500]
    server.add(ok(json.dumps([{"box_2d": box, "label": "sail", "mask": triangle}])))
    det = backend(server).detect(voc["rgb"], "the sail")
    want = from_polygons([[v for x, y in triangle for v in (x * w / 1000, y * h / 1000)]], (h, w))
    assert want.sum() > 1000
    assert np.array_equal(det.masks[0], want)  # type: ignore[index]
    assert det.xyxy[0].tolist() == [50.0, 75.0, 250.0, 225.0]


def test_boolean_array_masks(server: FakeGemini, voc: dict[str, Any], voc_det: Detections) -> None:
    items = to_gemini(voc_det[[0, 1]])
    for item, mask in zip(items, voc["masks"][:2], strict=True):
        y0, x0, y1, x1 = (
            v * size // 1000 for v, size in zip(item["box_2d"], (375, 500, 375, 500), strict=True)
        )
        item["mask"] = mask[y0:y1, x0:x1].tolist()  # JSON booleans over the box, at its pixel size
    server.add(ok(json.dumps(items)))
    det = backend(server).detect(voc["rgb"], "people")
    assert np.array_equal(det.masks, voc["masks"][:2])


def test_seg_token_masks_keep_boxes_and_say_why(server: FakeGemini, voc: dict[str, Any]) -> None:
    tokens = "<start_of_mask>" + "".join(f"<seg_{n}>" for n in (4, 20, 4, 35, 65, 27, 27, 1))
    server.add(ok(json.dumps([{"box_2d": [100, 200, 500, 600], "label": "cup", "mask": tokens}])))
    det = backend(server).detect(voc["rgb"], "the cup")
    assert det.labels.tolist() == ["cup"]
    assert det.xyxy[0].tolist() == [100.0, 37.5, 300.0, 187.5]
    assert det.masks is None
    assert det.meta["masks_missing"] == [0]
    assert any("VQ-VAE" in note for note in det.meta["notes"])


def test_truncated_reply_keeps_complete_items(
    server: FakeGemini, voc: dict[str, Any], voc_det: Detections
) -> None:
    text = json.dumps(to_gemini(voc_det))
    cut = text.index('{"box_2d"', text.index('{"box_2d"') + 1)  # start of the second item
    cut = text.index('"mask"', cut) + 200  # ... in the middle of its mask
    server.add(ok("```json\n" + text[:cut], finish_reason="MAX_TOKENS"))
    det = backend(server).detect(voc["rgb"], "people")
    assert len(det) == 1
    assert np.array_equal(det.masks, voc["masks"][:1])
    assert det.meta["truncated"] is True
    assert any("cut off" in note for note in det.meta["notes"])


def test_empty_list_is_no_detections(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(ok("[]"))
    det = backend(server).detect(voc["rgb"], "a giraffe")
    assert len(det) == 0
    assert det.masks is not None and det.masks.shape == (0, 375, 500)
    assert det.attributes["concept"].shape == (0,)


@pytest.mark.parametrize(
    ("text", "finish"),
    [
        ("I'm sorry, I can't find any cups in this picture.", "STOP"),  # prose, no JSON
        ('[{"box_2d": [1, 2, 3, 4], "label": "cu', "MAX_TOKENS"),  # cut off before the first item ends
        ('[{"box_2d": [1, 2, 3, 4], "label": "cup", "mask": "%%%"}]', "STOP"),  # a mask that is no PNG
    ],
)
def test_unreadable_reply_raises_with_raw_text(
    server: FakeGemini, voc: dict[str, Any], text: str, finish: str
) -> None:
    server.add(ok(text, finish_reason=finish))
    with pytest.raises(RemoteBackendError, match="not a segmentation list") as info:
        backend(server).detect(voc["rgb"], "cups")
    assert info.value.raw_response == text
    assert info.value.status == 200
    assert isinstance(info.value.__cause__, FormatError)
    assert len(server.requests) == 1  # a reply that does not parse is not retried


def test_garbage_http_body_is_an_error_with_the_body(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(Reply(body="<html>proxy error</html>"))
    with pytest.raises(RemoteBackendError, match="not JSON") as info:
        backend(server).detect(voc["rgb"], "cups")
    assert info.value.raw_response == "<html>proxy error</html>"
    assert len(server.requests) == 1


def test_reply_the_sdk_cannot_read_is_translated(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(Reply(body={"candidates": [{"content": {"parts": [{"text": 5}]}}]}))  # text not a string
    with pytest.raises(RemoteBackendError, match="google-genai could not handle"):
        backend(server).detect(voc["rgb"], "cups")


def test_no_text_says_why(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(
        Reply(body={"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}})
    )
    with pytest.raises(RemoteBackendError, match=r"no text.*SAFETY"):
        backend(server).detect(voc["rgb"], "cups")


@pytest.mark.parametrize(
    "wait",
    [
        {"headers": {"Retry-After": "0.25"}},  # seconds
        {
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.25s"}]
        },  # Google's
    ],
)
def test_429_waits_as_asked_then_succeeds(
    server: FakeGemini, voc: dict[str, Any], wait: dict[str, Any]
) -> None:
    server.add(api_error(429, "Resource has been exhausted", **wait), ok("[]"))
    start = time.monotonic()
    det = backend(server, backoff=0).detect(voc["rgb"], "cups")
    assert time.monotonic() - start >= 0.25
    assert det.meta["attempts"] == 2
    assert len(server.requests) == 2


def test_retry_after_as_http_date(server: FakeGemini, voc: dict[str, Any]) -> None:
    when = email.utils.formatdate(time.time() + 1.2, usegmt=True)  # whole seconds: waits 0.2-1.2 s
    server.add(api_error(503, "overloaded", headers={"Retry-After": when}), ok("[]"))
    start = time.monotonic()
    backend(server, backoff=0).detect(voc["rgb"], "cups")
    assert 0.15 <= time.monotonic() - start <= 2.0


def test_retry_after_beyond_the_budget_gives_up_at_once(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(api_error(429, "slow down", headers={"Retry-After": "30"}), ok("[]"))
    start = time.monotonic()
    with pytest.raises(RemoteBackendError, match=r"total_budget=2 s.*429.*next try in 30 s") as info:
        backend(server, total_budget=2).detect(voc["rgb"], "cups")
    assert time.monotonic() - start < 1
    assert info.value.status == 429


def test_503_until_retries_run_out(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(*[api_error(503, "The model is overloaded.")] * 4)
    with pytest.raises(RemoteBackendError, match=r"failed 3 attempts.*max_retries=2.*HTTP 503") as info:
        backend(server, max_retries=2).detect(voc["rgb"], "cups")
    assert info.value.status == 503
    assert len(server.requests) == 3  # ours are the only retries: none from the SDK


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "Request contains an invalid argument"),
        (401, "GEMINI_API_KEY or GOOGLE_API_KEY"),
        (403, "GEMINI_API_KEY or GOOGLE_API_KEY"),
        (404, "check the model name"),
    ],
)
def test_client_errors_are_not_retried(
    server: FakeGemini, voc: dict[str, Any], status: int, hint: str
) -> None:
    server.add(api_error(status, "Request contains an invalid argument."), ok("[]"))
    with pytest.raises(RemoteBackendError, match=f"HTTP {status}") as info:
        backend(server).detect(voc["rgb"], "cups")
    assert hint in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.status == status
    assert len(server.requests) == 1


def test_timeout_then_retry_succeeds(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(Hang(5), ok("[]"))
    start = time.monotonic()
    det = backend(server, timeout=0.2).detect(voc["rgb"], "cups")
    assert det.meta["attempts"] == 2
    assert time.monotonic() - start < 2


def test_hanging_server_spends_the_budget_and_stops(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(*[Hang(5)] * 10)
    start = time.monotonic()
    with pytest.raises(RemoteBackendError, match=r"gave up.*total_budget=0.6 s.*timeout") as info:
        backend(server, timeout=0.2, max_retries=10, total_budget=0.6).detect(voc["rgb"], "cups")
    assert time.monotonic() - start < 1.0
    assert info.value.status is None
    assert 2 <= len(server.requests) <= 4


def test_reply_cut_in_transit_is_retried(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(Reply(body=gemini_reply("[]"), cut_at=25), ok("[]"))
    det = backend(server).detect(voc["rgb"], "cups")
    assert det.meta["attempts"] == 2


def test_tokens_and_cost(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(ok("[]", prompt_tokens=1290, output_tokens=200, thinking_tokens=50))
    det = backend(server).detect(voc["rgb"], "cups")
    assert det.meta["usage"] == {
        "prompt_tokens": 1290,
        "output_tokens": 200,
        "thinking_tokens": 50,
        "total_tokens": 1540,
    }
    price = PRICES["gemini-2.5-flash"]
    assert det.meta["cost_usd"] == pytest.approx((1290 * price.input + 250 * price.output) / 1e6)
    assert det.meta["latency_s"] > 0
    assert det.meta["calls"][0]["finish_reason"] == "STOP"


def test_unknown_model_has_no_cost(server: FakeGemini, voc: dict[str, Any]) -> None:
    server.add(ok("[]"))
    det = backend(server, model="gemini-robotics-er-9").detect(voc["rgb"], "cups")
    assert server.requests[0].model == "gemini-robotics-er-9"
    assert det.meta["cost_usd"] is None
    assert det.meta["usage"]["prompt_tokens"] == 1290


def test_two_prompts_two_requests(server: FakeGemini, voc: dict[str, Any], voc_det: Detections) -> None:
    server.add(ok(json.dumps(to_gemini(voc_det[[0]]))), ok(json.dumps(to_gemini(voc_det[[1, 2]]))))
    det = backend(server).detect(voc["rgb"], ["the person", "the chairs"])
    assert det.attributes["concept"].tolist() == ["the person", "the chairs", "the chairs"]
    assert np.array_equal(det.masks, voc["masks"][:3])
    assert det.meta["attempts"] == 2
    assert det.meta["usage"]["prompt_tokens"] == 2 * 1290
    assert [c["prompt"] for c in det.meta["calls"]] == ["the person", "the chairs"]


def test_an_answer_without_masks_among_answers_with_masks(
    server: FakeGemini, voc: dict[str, Any], voc_det: Detections
) -> None:
    boxes_only = [{"box_2d": it["box_2d"], "label": it["label"]} for it in to_gemini(voc_det[[0]])]
    server.add(ok(json.dumps(boxes_only)), ok(json.dumps(to_gemini(voc_det[[1]]))))
    det = backend(server).detect(voc["rgb"], ["the person", "the chair"])
    assert det.masks is not None
    assert not det.masks[0].any()  # empty, not the box filled
    assert np.array_equal(det.masks[1], voc["masks"][1])
    assert det.meta["masks_missing"] == [0]
    assert any("without masks" in note for note in det.meta["notes"])


def test_boxes_only(server: FakeGemini, voc: dict[str, Any], voc_det: Detections) -> None:
    server.add(ok(json.dumps(to_gemini(voc_det[[0]]))))  # masks sent anyway are dropped
    b = backend(server, masks=False)
    assert b.capabilities == frozenset({"text"})
    det = b.detect(voc["rgb"], "people")
    assert det.masks is None
    assert "Do not return masks" in server.requests[0].texts[0]


def test_api_key_from_the_environment(
    server: FakeGemini, voc: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    monkeypatch.setenv("PROMPTSEG_GEMINI_BASE_URL", server.base_url)
    server.add(ok("[]"), ok("[]"))
    GeminiBackend().detect(voc["rgb"], "cups")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")  # wins over GOOGLE_API_KEY
    load_backend("gemini").detect(voc["rgb"], "cups")
    assert [r.api_key for r in server.requests] == ["google-key", "gemini-key"]


def test_missing_api_key_names_both_variables() -> None:
    with pytest.raises(BackendUnavailable, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        GeminiBackend(base_url="http://127.0.0.1:9")


def test_bad_input_is_refused_before_any_request(server: FakeGemini, voc: dict[str, Any]) -> None:
    b = backend(server)
    with pytest.raises(InputError):
        b.detect(voc["rgb"], "   ")
    with pytest.raises(InputError):
        b.detect(voc["rgb"][..., 0], "cups")
    assert server.requests == []


def test_server_gone_is_a_connection_error_after_retries(voc: dict[str, Any]) -> None:
    with FakeGemini() as gone:
        pass  # leaving the block closes the socket: nothing listens on that port any more
    with pytest.raises(RemoteBackendError, match=r"failed 2 attempts.*connection failed") as info:
        backend(gone, max_retries=1).detect(voc["rgb"], "cups")
    assert info.value.status is None
