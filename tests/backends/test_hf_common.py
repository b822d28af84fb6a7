"""The shared transformers plumbing: device and dtype choice, and loading errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptseg import BackendUnavailable, ConfigError, WeightsNotFoundError
from promptseg.backends._hf import load_pretrained, select_device, select_dtype
from tests.conftest import need


@pytest.fixture(autouse=True)
def _torch() -> None:
    need("torch")
    need("transformers")


def test_auto_device_is_the_cpu_here() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device(None) == select_device("auto") == expected
    assert select_device("cpu") == "cpu"


@pytest.mark.parametrize(("device", "message"), [("tpu", "unknown device"), ("gpu0", "unknown device")])
def test_unknown_devices_are_refused(device: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        select_device(device)


def test_absent_gpus_are_refused_with_the_fix() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("platform: this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU here; use 'cpu' or 'auto'"):
        select_device("cuda:0")


def test_dtypes() -> None:
    import torch

    assert select_dtype(None, "cpu") is torch.float32
    assert select_dtype("bf16", "cpu") is torch.bfloat16
    assert select_dtype("torch.float32", "cuda") is torch.float32
    assert select_dtype("auto", "cuda") in (torch.bfloat16, torch.float16)
    with pytest.raises(ConfigError, match="not supported on the CPU"):
        select_dtype("float16", "cpu")
    with pytest.raises(ConfigError, match="unknown dtype"):
        select_dtype("int8", "cpu")


def test_a_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"no config\.json"):
        load_pretrained("SamModel", "SamProcessor", f"file:{tmp_path}", backend="sam")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "sam"}))
    with pytest.raises(BackendUnavailable, match="could not load SamModel"):
        load_pretrained("SamModel", "SamProcessor", f"file:{tmp_path}", backend="sam")


def test_a_class_transformers_lacks(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BackendUnavailable, match="does not have"):
        load_pretrained("NoSuchModel", "SamProcessor", f"file:{tmp_path}", backend="x")


def test_hub_models_are_never_downloaded_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMPTSEG_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="offline mode forbids downloading"):
        load_pretrained("SamModel", "SamProcessor", "hf:facebook/sam-vit-base", backend="sam")
