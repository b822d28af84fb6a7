"""The promptseg command, run for real on the offline backend: contract, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from promptseg import load_image
from promptseg.cli import main
from promptseg.ops.boxes import box_2d_to_xyxy, box_iou
from promptseg.ops.masks import from_rle


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_segment_json_contract(
    offline_env: Path, voc: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["segment", str(voc["path"]), "the bottle", "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) >= {"image", "prompt", "backend", "instances"}
    assert doc["image"] == {"path": str(voc["path"]), "width": 500, "height": 375}
    assert doc["prompt"] == "the bottle" and doc["backend"] == "offline"
    (bottle,) = [i for i in doc["instances"] if i["label"] == "bottle"]
    assert 0 <= bottle["score"] <= 1
    assert len(bottle["box_xyxy"]) == 4 and all(isinstance(v, float) for v in bottle["box_xyxy"])
    assert all(isinstance(v, int) and 0 <= v <= 1000 for v in bottle["box_2d"])
    gt = voc["xyxy"][voc["labels"].index("bottle")][None]
    assert box_iou(gt, [bottle["box_xyxy"]])[0, 0] >= 0.5
    assert box_iou(box_2d_to_xyxy([bottle["box_2d"]], (375, 500)), [bottle["box_xyxy"]])[0, 0] > 0.95
    assert bottle["mask_rle"]["size"] == [375, 500] and isinstance(bottle["mask_rle"]["counts"], str)
    mask = from_rle(bottle["mask_rle"])
    x1, y1, x2, y2 = bottle["box_xyxy"]
    ys, xs = np.nonzero(mask)
    assert (
        mask.sum() > 0
        and xs.min() >= x1 - 1
        and xs.max() <= x2 + 1
        and ys.min() >= y1 - 1
        and ys.max() <= y2 + 1
    )


def test_segment_writes_annotated_image(
    offline_env: Path, voc: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_png = tmp_path / "people.png"
    code, _out, err = run(["segment", str(voc["path"]), "people", "--out", str(out_png)], capsys)
    assert code == 0, err
    drawn = np.asarray(Image.open(out_png).convert("RGB"))
    h, w = voc["rgb"].shape[:2]
    assert drawn.shape[1:] == (w, 3) and drawn.shape[0] > h  # the photo, then the legend under it
    photo = drawn[:h]
    changed = (np.abs(photo.astype(int) - voc["rgb"].astype(int)).sum(axis=2) > 30).mean()
    assert 0.1 < changed < 0.9  # masks and labels drawn, photo still visible
    legend = drawn[h:]
    assert (legend < 100).all(axis=2).mean() > 0.005  # dark text on the white legend panel
    assert list(tmp_path.iterdir()) == [out_png]  # no temporary files left behind

    plain = tmp_path / "plain.png"
    code, _out, err = run(["segment", str(voc["path"]), "people", "--out", str(plain), "--no-legend"], capsys)
    assert code == 0, err
    assert np.asarray(Image.open(plain)).shape == voc["rgb"].shape


def test_nothing_matched_is_success_with_a_note(
    offline_env: Path, voc: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_png = tmp_path / "helmet.png"
    code, out, err = run(["segment", str(voc["path"]), "a helmet", "--json", "--out", str(out_png)], capsys)
    assert code == 0
    assert json.loads(out)["instances"] == []
    assert "helmet" in err and "COCO" in err
    assert len(err.strip().splitlines()) == 1
    # the annotated image of nothing is the photo itself, with the explanation under it
    drawn = np.asarray(Image.open(out_png).convert("RGB"))
    photo = load_image(voc["path"])
    assert np.array_equal(drawn[: photo.shape[0]], photo)
    assert drawn.shape[0] > photo.shape[0]


def test_human_summary(offline_env: Path, voc: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["segment", str(voc["path"]), "people"], capsys)
    assert code == 0
    assert "for 'people'" in out and "person" in out


def _bad_images(tmp_path: Path, voc: dict[str, Any]) -> dict[str, Path]:
    good = voc["path"].read_bytes()
    files = {
        "zero-byte": b"",
        "truncated": good[: len(good) // 2],
        "corrupt": good[:200] + bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
        "not an image": b"name,score\ncup,0.9\n",
    }
    paths = {}
    for name, data in files.items():
        p = tmp_path / f"{name.replace(' ', '_')}.jpg"
        p.write_bytes(data)
        paths[name] = p
    paths["missing"] = tmp_path / "nope.jpg"
    paths["a folder"] = tmp_path
    return paths


@pytest.mark.parametrize("case", ["zero-byte", "truncated", "corrupt", "not an image", "missing", "a folder"])
def test_bad_image_exits_2_with_one_line(
    case: str, offline_env: Path, voc: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_images(tmp_path, voc)[case]
    out_png = tmp_path / "out.png"
    code, out, err = run(["segment", str(bad), "people", "--json", "--out", str(out_png)], capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("promptseg: error:")
    assert "Traceback" not in err
    assert not out_png.exists()


def test_image_over_pixel_limit(
    offline_env: Path, voc: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["segment", str(voc["path"]), "people", "--max-pixels", "1000"], capsys)
    assert code == 2
    assert "1,000" in err


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["segment", "{img}", "people", "--threshold", "1.5"], 2, "between 0 and 1"),  # bad threshold
        (["segment", "{img}", "people", "--backend", "ofline"], 2, "did you mean 'offline'"),  # typo
        (["segment", "{img}", "people", "--out", "/no/such/dir/x.png"], 2, "does not exist"),  # bad out dir
        (["segment", "{img}", "people", "--out", "{tmp}/x.gif"], 2, "--out must end in"),  # bad out type
        (["segment", "{img}", "people", "--masks", "magic"], 2, "magic"),  # unknown mask method
        (["segment", "{img}", "   "], 2, "empty"),  # blank prompt
    ],
)
def test_bad_arguments(
    argv: list[str],
    code: int,
    needle: str,
    offline_env: Path,
    voc: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.format(img=voc["path"], tmp=tmp_path) for a in argv]
    try:
        got, _, err = run(argv, capsys)
    except SystemExit as exc:  # argparse's own errors
        got, err = int(exc.code or 0), capsys.readouterr().err
    assert got == code
    assert needle in err
    assert "Traceback" not in err


def test_missing_model_exits_3(
    voc: dict[str, Any],
    tmp_path: Path,
    minilm_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PROMPTSEG_MODELS", str(tmp_path))
    code, out, err = run(["segment", str(voc["path"]), "people", "--json"], capsys)
    assert code == 3 and out == ""
    assert str(tmp_path / "picodet-s-coco") in err and "PROMPTSEG_MODELS" in err
    assert len(err.strip().splitlines()) == 1


def test_backends_lists_availability(
    offline_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["backends", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["offline"]["available"] and rows["offline-yolox"]["available"]
    monkeypatch.setenv("PROMPTSEG_MODELS", str(tmp_path))
    code, out, _ = run(["backends"], capsys)
    assert code == 0
    assert "unavailable" in out and "why:" in out and str(tmp_path) in out


def test_console_script_end_to_end(offline_env: Path, voc: dict[str, Any], tmp_path: Path) -> None:
    """The installed entry point, in a fresh process, as a user runs it."""
    env = {**os.environ, "PROMPTSEG_MODELS": str(offline_env)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "promptseg",
            "segment",
            str(voc["path"]),
            "people",
            "--json",
            "--out",
            str(tmp_path / "a.png"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["instances"]) >= 5
    assert (tmp_path / "a.png").is_file()
    assert proc.stderr == ""  # no noise from onnxruntime or anything else


def test_backends_json_lists_capabilities_and_licences(
    offline_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptseg.backends.base import CAPABILITIES
    from promptseg.backends.registry import list_backends

    code, out, _ = run(["backends", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == set(list_backends()) >= {"offline", "sam3", "owlv2", "sam", "gemini"}
    for row in rows.values():
        assert row["capabilities"] and set(row["capabilities"]) <= set(CAPABILITIES)
        assert row["license"] and row["preprocessing"] and row["extra"]
    assert "exemplars" in rows["sam3"]["capabilities"] and "points" in rows["sam2"]["capabilities"]
    # listing never downloads: an uncached Hub model is reported, not fetched
    assert not rows["sam3"]["available"] and "hf download facebook/sam3" in rows["sam3"]["reason"]


@pytest.mark.parametrize(
    ("option", "needle"),
    [
        ("threads=x", "threads must be a whole number"),
        ("thresh=0.5", "no option 'thresh' (did you mean 'threshold'?)"),
        ("masks=box", None),
        ("nonsense", "KEY=VALUE"),
        ("bad key=1", "KEY=VALUE"),
    ],
)
def test_backend_options_on_the_command_line(
    option: str,
    needle: str | None,
    offline_env: Path,
    voc: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["segment", str(voc["path"]), "the bottle", "--json", "-o", option]
    try:
        code, out, err = run(argv, capsys)
    except SystemExit as exc:
        code, out, err = int(exc.code or 0), "", capsys.readouterr().err
    if needle is None:
        assert code == 0, err
        (bottle,) = json.loads(out)["instances"]
        mask = from_rle(bottle["mask_rle"])
        x1, y1, x2, y2 = (round(v) for v in bottle["box_xyxy"])
        assert mask[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].all()  # masks=box fills the box
    else:
        assert code != 0 and needle in err and "Traceback" not in err


def test_shell_conversation_from_a_pipe(offline_env: Path, voc: dict[str, Any], tmp_path: Path) -> None:
    """`promptseg shell` read from a pipe: prompts, a box, a failing line that loses nothing, /save."""
    box = " ".join(str(round(float(v))) for v in voc["xyxy"][voc["labels"].index("bottle")])
    lines = [
        "people",
        "the bottle",
        f"/box {box}",
        "/refine 7 10,10",  # no instance 7 in a one-box answer: one error line, the session goes on
        "/point 10,10",  # the offline backend reads no points: one error line
        "/bogus",
        f"/save {tmp_path / 'last.json'}",
        f"/save {tmp_path / 'last.png'}",
        "/history",
        "/quit",
        "never read",
    ]
    env = {**os.environ, "PROMPTSEG_MODELS": str(offline_env)}
    proc = subprocess.run(
        [sys.executable, "-m", "promptseg", "shell", str(voc["path"])],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "500x375, backend 'offline'" in out
    assert "found for 'people'" in out and "found for 'the bottle'" in out
    assert "1 found for 'box" in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "no instance #7" in errors[0] and "no point prompts" in errors[1]
    assert "unknown command '/bogus'" in errors[2]
    doc = json.loads((tmp_path / "last.json").read_text())
    assert [i["label"] for i in doc["instances"]] == ["object"]
    assert Image.open(tmp_path / "last.png").size == (500, 375)
    history = [line for line in out.splitlines() if " ms " in line and "found" in line]
    assert len(history) == 3
    assert "never read" not in out


def test_shell_follow_ups_refer_to_the_last_answer(offline_env: Path, voc: dict[str, Any]) -> None:
    """Follow-ups in the shell: narrowed, extended, and an ambiguous one refused in one line."""
    lines = [
        "people",
        "only the left one",
        "not that one",  # the same request without the last answer: the next leftmost person
        "and the bottle too",
        "not that one",  # two objects: which one?
        "the third chair from the left",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "promptseg", "shell", str(voc["path"])],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, "PROMPTSEG_MODELS": str(offline_env)},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "1 found for 'only the left one'" in out and "leftmost of" in out
    assert "not in the last answer" in out
    assert "2 found for 'and the bottle too'" in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ambiguous" in errors[0]
    assert "third from the left of" in out
