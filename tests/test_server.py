"""The HTTP API, for real: the offline backend on the VOC photo through FastAPI's TestClient, and once
through ``promptseg serve`` on a loopback port."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from promptseg import ConfigError, Detections, RemoteBackendError, UnknownBackendError, load_image
from promptseg._segment import segment
from promptseg.cli import main
from promptseg.formats.result import to_json
from promptseg.ops.masks import from_rle
from tests.conftest import need

TOKEN = "t0ps3cret-token"


@pytest.fixture
def make_client(offline_backend: Any) -> Callable[..., Any]:
    """``make_client(**create_app_kwargs)``: a TestClient on a fresh app sharing the loaded backend."""
    need("fastapi", extra="server")
    need("httpx", extra="dev")
    from fastapi.testclient import TestClient

    from promptseg.server import create_app

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("backend", offline_backend)
        return TestClient(create_app(**kwargs))

    return make


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Any:
    return make_client()


def photo(voc: dict[str, Any], name: str = "rgb.jpg") -> dict[str, Any]:
    return {"image": (name, voc["path"].read_bytes(), "image/jpeg")}


def assert_error(response: Any, status: int, kind: str | None = None) -> str:
    """The response is ``{"error": one line, "type": ...}`` with this status; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "type"}
    assert body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
    if kind is not None:
        assert body["type"] == kind, body
    return str(body["error"])


def test_health_says_what_runs(client: Any) -> None:
    from promptseg import __version__

    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__, "backend": "offline"}


def test_openapi_describes_every_route(client: Any) -> None:
    from promptseg import __version__

    doc = client.get("/openapi.json").json()
    assert doc["info"]["title"] == "promptseg" and doc["info"]["version"] == __version__
    assert set(doc["paths"]) == {
        "/health",
        "/v1/backends",
        "/v1/segment",
        "/v1/sessions",
        "/v1/sessions/{session_id}",
        "/v1/sessions/{session_id}/ask",
        "/v1/sessions/{session_id}/image.png",
    }
    form = doc["paths"]["/v1/segment"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    fields = doc["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]
    assert set(fields["required"]) == {"image", "prompt"}
    assert set(fields["properties"]) == {"image", "prompt", "threshold", "mask_format"}
    assert client.get("/docs").status_code == 200


def test_segment_answers_the_cli_json(
    client: Any,
    offline_backend: Any,
    offline_env: Path,
    voc: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    response = client.post("/v1/segment", files=photo(voc), data={"prompt": "people"})
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["image"] == {"path": "rgb.jpg", "width": 500, "height": 375}
    assert doc["prompt"] == "people" and doc["backend"] == "offline"
    people = [i for i in doc["instances"] if i["label"] == "person"]
    assert len(people) >= 5
    for inst in doc["instances"]:
        assert 0 <= inst["score"] <= 1
        assert len(inst["box_xyxy"]) == 4 and all(isinstance(v, float) for v in inst["box_xyxy"])
        assert len(inst["box_2d"]) == 4 and all(isinstance(v, int) and 0 <= v <= 1000 for v in inst["box_2d"])
        assert inst["mask_rle"]["size"] == [375, 500] and isinstance(inst["mask_rle"]["counts"], str)
        assert from_rle(inst["mask_rle"]).sum() > 0
    # exactly what the library answers for the same photo (the upload's name stands in for the path)
    det = segment(load_image(voc["path"]), "people", backend=offline_backend)
    expected = to_json(det, image_path="rgb.jpg", prompt="people", backend="offline")
    assert untimed(doc) == untimed(expected)
    # and the contract of the CLI's --json: the same fields, the same instances
    assert main(["segment", str(voc["path"]), "people", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["image"] == {"path": str(voc["path"]), "width": 500, "height": 375}
    assert set(printed) == set(doc)
    contract = ("label", "score", "box_xyxy", "box_2d", "mask_rle")
    assert [{k: i[k] for k in contract} for i in printed["instances"]] == [
        {k: i[k] for k in contract} for i in doc["instances"]
    ]


def untimed(doc: dict[str, Any]) -> dict[str, Any]:
    """The result without ``meta["timing"]``, the one part that differs from run to run."""
    return {**doc, "meta": {k: v for k, v in doc["meta"].items() if k != "timing"}}


@pytest.mark.parametrize(
    ("name", "reported"),
    [
        ("../../home/me/rgb.jpg", "rgb.jpg"),  # POSIX folders
        ("C:\\Users\\me\\rgb.jpg", "rgb.jpg"),  # Windows folders
        ("..", "upload"),  # nothing left that names a file
        ("photos/", "upload"),  # a folder's name
    ],
)
def test_the_upload_name_is_reported_without_folders(
    client: Any, voc: dict[str, Any], name: str, reported: str
) -> None:
    response = client.post("/v1/segment", files=photo(voc, name=name), data={"prompt": "bottle"})
    assert response.status_code == 200, response.text
    assert response.json()["image"]["path"] == reported


def test_a_threshold_and_a_mask_format(client: Any, voc: dict[str, Any]) -> None:
    data = {"prompt": "people", "threshold": "0.6", "mask_format": "polygon"}
    doc = client.post("/v1/segment", files=photo(voc), data=data).json()
    assert doc["instances"] and all(i["score"] >= 0.6 for i in doc["instances"])
    assert all("mask_polygons" in i and "mask_rle" not in i for i in doc["instances"])


def test_a_session_conversation(client: Any, voc: dict[str, Any]) -> None:
    created = client.post("/v1/sessions", files=photo(voc))
    assert created.status_code == 201, created.text
    info = created.json()
    sid = info["session_id"]
    assert info == {"session_id": sid, "width": 500, "height": 375}
    assert created.headers["location"] == f"/v1/sessions/{sid}"

    people = client.post(f"/v1/sessions/{sid}/ask", json={"prompt": "people"})
    assert people.status_code == 200, people.text
    assert len([i for i in people.json()["instances"] if i["label"] == "person"]) >= 5
    assert people.json()["image"] == {"path": "rgb.jpg", "width": 500, "height": 375}
    chairs = client.post(f"/v1/sessions/{sid}/ask", json={"prompt": "chairs", "threshold": None})
    assert chairs.status_code == 200, chairs.text
    assert chairs.json()["prompt"] == "chairs" and set(chairs.json()) == set(people.json())

    history = client.get(f"/v1/sessions/{sid}").json()
    assert history["image"] == {"name": "rgb.jpg", "width": 500, "height": 375}
    turns = history["turns"]
    assert [t["index"] for t in turns] == [0, 1]
    assert "people" in turns[0]["request"] and "chairs" in turns[1]["request"]
    assert turns[0]["instances"] == len(people.json()["instances"])
    assert turns[1]["instances"] == len(chairs.json()["instances"])
    assert all(t["seconds"] >= 0 for t in turns)

    images = {}
    for turn in (-1, 0):
        png = client.get(f"/v1/sessions/{sid}/image.png", params={"turn": turn})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(png.content)) as im:
            assert im.format == "PNG" and im.size == (500, 375)
            images[turn] = np.asarray(im.convert("RGB"))
    assert not np.array_equal(images[0], images[-1])  # people drawn, then chairs
    assert not np.array_equal(images[0], voc["rgb"])
    with_legend = client.get(f"/v1/sessions/{sid}/image.png", params={"legend": "true"})
    with Image.open(io.BytesIO(with_legend.content)) as im:
        assert im.size[0] == 500 and im.size[1] > 375  # the explanations go under the image
    assert_error(client.get(f"/v1/sessions/{sid}/image.png", params={"turn": 2}), 404, "NotFound")

    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    for method, path, body in [
        ("GET", f"/v1/sessions/{sid}", None),
        ("POST", f"/v1/sessions/{sid}/ask", {"prompt": "people"}),
        ("GET", f"/v1/sessions/{sid}/image.png", None),
        ("DELETE", f"/v1/sessions/{sid}", None),
    ]:
        message = assert_error(client.request(method, path, json=body), 404, "NotFound")
        assert sid in message and "POST /v1/sessions" in message


def test_session_ids_are_random_and_long(client: Any, voc: dict[str, Any]) -> None:
    ids = {client.post("/v1/sessions", files=photo(voc)).json()["session_id"] for _ in range(5)}
    assert len(ids) == 5 and all(len(i) >= 22 for i in ids)


def test_sessions_are_a_bounded_lru(make_client: Callable[..., Any], voc: dict[str, Any]) -> None:
    client = make_client(max_sessions=2)

    def new() -> str:
        return str(client.post("/v1/sessions", files=photo(voc)).json()["session_id"])

    a, b = new(), new()
    assert client.get(f"/v1/sessions/{a}").status_code == 200  # a is now the most recently used
    c = new()  # evicts b, the least recently used
    assert_error(client.get(f"/v1/sessions/{b}"), 404, "NotFound")
    assert client.get(f"/v1/sessions/{a}").status_code == 200
    assert client.get(f"/v1/sessions/{c}").status_code == 200
    new()  # evicts a: c was used after it
    assert "at most 2" in assert_error(client.get(f"/v1/sessions/{a}"), 404)
    assert client.get(f"/v1/sessions/{c}").status_code == 200


def test_idle_sessions_expire(make_client: Callable[..., Any], voc: dict[str, Any]) -> None:
    client = make_client(session_ttl_s=0.3)
    sid = client.post("/v1/sessions", files=photo(voc)).json()["session_id"]
    assert client.get(f"/v1/sessions/{sid}").status_code == 200
    time.sleep(0.5)
    assert "0.3 s" in assert_error(client.get(f"/v1/sessions/{sid}"), 404, "NotFound")


def test_a_session_takes_at_most_max_turns(make_client: Callable[..., Any], voc: dict[str, Any]) -> None:
    client = make_client(max_turns=1)
    sid = client.post("/v1/sessions", files=photo(voc)).json()["session_id"]
    assert client.post(f"/v1/sessions/{sid}/ask", json={"prompt": "people"}).status_code == 200
    assert_error(client.post(f"/v1/sessions/{sid}/ask", json={"prompt": "chairs"}), 409, "Conflict")


def test_auth(make_client: Callable[..., Any], voc: dict[str, Any]) -> None:
    client = make_client(token=TOKEN)
    refused = [
        {},  # no header
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ]
    for headers in refused:
        for method, path in [("GET", "/v1/backends"), ("POST", "/v1/segment"), ("GET", "/v1/sessions/x")]:
            response = client.request(method, path, headers=headers)
            assert_error(response, 401, "Unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
    # a wrong token is refused before the upload is read or decoded
    wrong = client.post("/v1/segment", files=photo(voc), data={"prompt": "people"})
    assert_error(wrong, 401)
    # unknown routes too: nothing about the API is told without the token
    assert_error(client.get("/v1/nothing-here"), 401)

    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/v1/backends", headers=good).status_code == 200
    ok = client.post("/v1/segment", files=photo(voc), data={"prompt": "people"}, headers=good)
    assert ok.status_code == 200 and len(ok.json()["instances"]) >= 5
    lower = {"authorization": f"bearer {TOKEN}"}
    assert client.get("/v1/backends", headers=lower).status_code == 200
    for open_path in ["/health", "/openapi.json", "/docs"]:
        assert client.get(open_path).status_code == 200
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert [s["scheme"].lower() for s in schemes.values()] == ["bearer"]


def test_without_a_token_no_header_is_needed(client: Any) -> None:
    assert client.get("/v1/backends").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def _chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _multipart(voc: dict[str, Any], padding: int) -> tuple[bytes, str]:
    boundary = "promptseg-test-boundary"
    image = voc["path"].read_bytes() + b"\0" * padding
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\npeople\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    "how",
    [
        "content-length",  # refused from the header, before any of the body is read
        "streamed",  # no Content-Length (chunked): counted as it arrives
        "image over the limit",  # the request fits the slack for form fields, the image itself does not
    ],
)
def test_an_oversized_upload_gets_413(make_client: Callable[..., Any], voc: dict[str, Any], how: str) -> None:
    limit = 100_000
    client = make_client(max_upload_bytes=limit)
    padding = {"content-length": 1_000_000, "streamed": 1_000_000, "image over the limit": limit}[how]
    body, content_type = _multipart(voc, padding)
    content: bytes | Iterator[bytes] = _chunks(body) if how == "streamed" else body
    response = client.post("/v1/segment", content=content, headers={"Content-Type": content_type})
    message = assert_error(response, 413, "UploadTooLarge")
    assert "100,000" in message or "165,536" in message
    # the same photo without padding is fine
    body, content_type = _multipart(voc, 0)
    assert client.post("/v1/segment", content=body, headers={"Content-Type": content_type}).status_code == 200


def _corrupt(voc: dict[str, Any]) -> bytes:
    good: bytes = voc["path"].read_bytes()
    return good[:200] + bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8))


@pytest.mark.parametrize(
    ("files", "data", "status", "kind", "needle"),
    [
        ("corrupt", {"prompt": "people"}, 400, "ImageLoadError", "corrupt"),  # JPEG header, noise after
        ("text", {"prompt": "people"}, 400, "ImageLoadError", "holds text"),  # a CSV sent as image
        ("empty", {"prompt": "people"}, 400, "ImageLoadError", "empty"),  # zero bytes
        ("photo", {"prompt": "   "}, 422, "QueryError", "empty"),  # blank prompt
        ("photo", {"prompt": ""}, 422, "RequestValidationError", "prompt"),  # empty form field = missing
        ("photo", {}, 422, "RequestValidationError", "prompt: Field required"),  # no prompt field
        (None, {"prompt": "people"}, 422, "RequestValidationError", "image: Field required"),  # no image
        # an image named by a path or URL is refused: only uploaded bytes are images
        (None, {"prompt": "people", "image": "/etc/passwd"}, 422, "RequestValidationError", "UploadFile"),
        (None, {"prompt": "people", "image": "http://10.0.0.1/"}, 422, "RequestValidationError", "image"),
        ("photo", {"prompt": "people", "threshold": "1.5"}, 422, "RequestValidationError", "threshold"),
        ("photo", {"prompt": "people", "mask_format": "svg"}, 422, "RequestValidationError", "mask_format"),
    ],
)
def test_bad_segment_requests_get_one_line_errors(
    client: Any,
    voc: dict[str, Any],
    files: str | None,
    data: dict[str, str],
    status: int,
    kind: str,
    needle: str,
) -> None:
    payloads = {
        "photo": voc["path"].read_bytes(),
        "corrupt": _corrupt(voc),
        "text": b"name,score\ncup,0.9\n",
        "empty": b"",
    }
    upload = None if files is None else {"image": ("x.jpg", payloads[files], "image/jpeg")}
    message = assert_error(client.post("/v1/segment", files=upload, data=data), status, kind)
    assert needle in message


@pytest.mark.parametrize(
    ("body", "kind", "needle"),
    [
        ({"prompt": ""}, "RequestValidationError", "prompt"),  # empty prompt
        ({"prompt": "  "}, "QueryError", "empty"),  # blank prompt
        ({}, "RequestValidationError", "prompt: Field required"),  # no prompt
        ({"prompt": "people", "threshold": -1}, "RequestValidationError", "threshold"),
        ({"prompt": "people", "image": "/etc/passwd"}, "RequestValidationError", "image"),  # no paths
        (b"{not json", "RequestValidationError", "not valid JSON"),
    ],
)
def test_bad_ask_requests_get_one_line_errors(
    client: Any, voc: dict[str, Any], body: Any, kind: str, needle: str
) -> None:
    sid = client.post("/v1/sessions", files=photo(voc)).json()["session_id"]
    if isinstance(body, bytes):
        response = client.post(
            f"/v1/sessions/{sid}/ask", content=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = client.post(f"/v1/sessions/{sid}/ask", json=body)
    assert needle in assert_error(response, 422, kind)
    assert client.get(f"/v1/sessions/{sid}").json()["turns"] == []


def test_a_session_needs_a_readable_image(client: Any) -> None:
    broken = {"image": ("x.png", b"\x89PNG\r\n\x1a\nbroken", "image/png")}
    response = client.post("/v1/sessions", files=broken)
    assert "PNG" in assert_error(response, 400, "ImageLoadError")


def test_an_image_over_the_pixel_limit(make_client: Callable[..., Any], voc: dict[str, Any]) -> None:
    client = make_client(max_pixels=1000)
    response = client.post("/v1/segment", files=photo(voc), data={"prompt": "people"})
    assert "1,000" in assert_error(response, 400, "ImageLoadError")


def test_unknown_routes_and_methods(client: Any) -> None:
    assert_error(client.get("/v2/segment"), 404, "NotFound")
    assert_error(client.get("/v1/segment"), 405, "MethodNotAllowed")


def test_backends_route_is_the_cli_listing(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    assert client.get("/v1/backends").json() == json.loads(capsys.readouterr().out)


class _FailingBackend:
    """A backend whose model fails: to see what the API tells the client, and what it keeps to itself."""

    name = "failing"
    capabilities = frozenset({"text", "boxes"})

    def __init__(self, error: Exception) -> None:
        self.error = error

    def detect(
        self, image: Any, prompts: str | Sequence[str], *, threshold: float | None = None
    ) -> Detections:
        raise self.error


def test_a_bug_is_a_generic_500_and_logged(
    make_client: Callable[..., Any], voc: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(backend=_FailingBackend(RuntimeError("secret detail /srv/models/x.onnx")))
    with caplog.at_level("ERROR", logger="promptseg.server"):
        response = client.post("/v1/segment", files=photo(voc), data={"prompt": "people"})
    message = assert_error(response, 500, "InternalServerError")
    assert "secret" not in message and "/srv" not in message
    assert "secret detail" in caplog.text and "Traceback" in caplog.text


def test_a_remote_failure_is_a_502(make_client: Callable[..., Any], voc: dict[str, Any]) -> None:
    error = RemoteBackendError("Gemini API answered 500 after 3 tries", status=500)
    client = make_client(backend=_FailingBackend(error))
    response = client.post("/v1/segment", files=photo(voc), data={"prompt": "people"})
    assert "after 3 tries" in assert_error(response, 502, "RemoteBackendError")


def test_a_backend_that_cannot_load_is_a_503(
    make_client: Callable[..., Any], voc: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTSEG_MODELS", str(tmp_path))  # no weights there
    client = make_client(backend="offline-yolox")
    assert client.get("/health").status_code == 200  # the model loads on first use, not for /health
    response = client.post("/v1/segment", files=photo(voc), data={"prompt": "people"})
    assert str(tmp_path) in assert_error(response, 503, "WeightsNotFoundError")


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"backend": "ofline"}, UnknownBackendError, "did you mean 'offline'"),
        ({"token": "has space"}, ConfigError, "without spaces"),
        ({"token": ""}, ConfigError, "non-empty"),
        ({"max_sessions": 0}, ConfigError, "max_sessions"),
        ({"max_upload_bytes": -1}, ConfigError, "max_upload_bytes"),
        ({"session_ttl_s": 0}, ConfigError, "session_ttl_s"),
    ],
)
def test_create_app_refuses_settings_that_cannot_work(
    make_client: Callable[..., Any], kwargs: dict[str, Any], error: type[Exception], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        make_client(**kwargs)


def test_options_need_a_backend_name(make_client: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match="already loaded"):
        make_client(masks="box")


def test_importing_promptseg_does_not_import_fastapi() -> None:
    code = "import sys, promptseg, promptseg.cli; print('fastapi' in sys.modules or 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_serve_without_the_server_extra_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None  # as if uvicorn were not installed\n"
        "from promptseg.cli import main; raise SystemExit(main(['serve']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.startswith("promptseg: error:") and len(proc.stderr.strip().splitlines()) == 1
    assert "pip install 'promptseg[server]'" in proc.stderr


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_promptseg_serve_for_real(
    models_dir: Path, minilm_dir: Path, voc: dict[str, Any], tmp_path: Path
) -> None:
    """``promptseg serve`` in its own process on a loopback port, spoken to over real HTTP."""
    need("uvicorn", extra="server")
    httpx = need("httpx", extra="dev")
    port = _free_port()
    env = {**os.environ, "PROMPTSEG_MODELS": str(models_dir), "PROMPTSEG_OFFLINE": "1"}
    env["PROMPTSEG_API_TOKEN"] = TOKEN  # the token from the environment, not the command line
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "promptseg", "serve", "--port", str(port), "--max-upload-mb", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"promptseg serve exited: {log.read_text()}"
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"no answer on {base}: {log.read_text()}"
                time.sleep(0.1)
        assert health.json()["backend"] == "offline"

        auth = {"Authorization": f"Bearer {TOKEN}"}
        anonymous = httpx.post(f"{base}/v1/segment", files=photo(voc), data={"prompt": "people"})
        assert anonymous.status_code == 401

        def segment(_: int) -> Any:
            return httpx.post(
                f"{base}/v1/segment", files=photo(voc), data={"prompt": "people"}, headers=auth, timeout=60
            )

        with ThreadPoolExecutor(4) as pool:  # concurrent requests share the one model, taking turns
            responses = list(pool.map(segment, range(4)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        docs = [untimed(r.json()) for r in responses]
        assert len(docs[0]["instances"]) >= 5 and all(d == docs[0] for d in docs)

        big = httpx.post(
            f"{base}/v1/segment",
            files={"image": ("big.jpg", b"\xff\xd8\xff" + b"\0" * 2_000_000, "image/jpeg")},
            data={"prompt": "people"},
            headers=auth,
        )
        assert big.status_code == 413
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # uvicorn shuts down cleanly on SIGTERM, then (recent versions) re-raises the signal for its caller
    assert proc.returncode in (0, -15), log.read_text()
    assert "Finished server process" in log.read_text() and "Traceback" not in log.read_text()


def test_a_session_answers_follow_ups(client: Any, voc: dict[str, Any]) -> None:
    sid = client.post("/v1/sessions", files=photo(voc)).json()["session_id"]
    people = client.post(f"/v1/sessions/{sid}/ask", json={"prompt": "people"}).json()["instances"]
    left = client.post(f"/v1/sessions/{sid}/ask", json={"prompt": "only the left one"}).json()
    assert len(people) >= 5 and len(left["instances"]) == 1
    from promptseg.ops.masks import from_rle

    leftmost = min(people, key=lambda inst: np.nonzero(from_rle(inst["mask_rle"]))[1].mean())  # mask centroid
    assert left["instances"][0]["box_xyxy"] == leftmost["box_xyxy"]
    assert "leftmost of" in left["instances"][0]["attributes"]["explanation"]
    assert left["meta"]["query"]["refer"] == "narrow"
    both = client.post(f"/v1/sessions/{sid}/ask", json={"prompt": "and the bottle too"}).json()
    assert sorted(i["label"] for i in both["instances"]) == ["bottle", "person"]
    ambiguous = client.post(f"/v1/sessions/{sid}/ask", json={"prompt": "not that one"})
    assert "ambiguous" in assert_error(ambiguous, 422, "QueryError")
