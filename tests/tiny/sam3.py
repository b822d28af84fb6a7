"""A tiny SAM 3 checkpoint: random weights (seeded) on a small config, with a small CLIP tokenizer.

The model sees 112x112 images (8x8 patches of 14 pixels), so a forward pass takes a few tens of
milliseconds on a CPU. Its answers are noise; tests check shapes, frames, plumbing and caching, never
what it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.tiny._common import bpe_vocab

IMAGE_SIZE = 112
"""Side of the square the tiny model's processor resizes every image to, in pixels."""

# Words the tiny tokenizer knows whole; anything else falls back to single bytes.
_WORDS = """person people cup cups bag bags luggage bottle chair table dog cat car bus bicycle
plate bowl fork knife spoon glass tray food bread visual red blue green left right the of and"""


def build_tiny_sam3(path: str | Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``Sam3Model`` and its ``Sam3Processor`` into ``path``.

    Args:
        path: the folder to write (created if missing); afterwards it holds ``config.json``, the
            weights as safetensors, the image processor's and the tokenizer's files.
        seed: torch seed of the random weights; the same seed gives the same weights.

    Returns:
        ``path``, ready for ``load_backend("sam3", weights=f"file:{path}")``.
    """
    import torch
    from transformers import Sam3Model, Sam3Processor

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    parts = tiny_sam3_detector(IMAGE_SIZE, hidden=32, words=_WORDS)
    torch.manual_seed(seed)
    model = Sam3Model(parts.config).eval()
    model.save_pretrained(folder)
    Sam3Processor(image_processor=parts.image_processor, tokenizer=parts.tokenizer).save_pretrained(folder)
    return folder


@dataclass(frozen=True)
class TinySam3:
    """The pieces of a tiny SAM 3 detector: its config, the vision config inside it, a CLIP tokenizer,
    the image processor, and the patch grid side (``size // 14``)."""

    config: Any
    vision: Any
    tokenizer: Any
    image_processor: Any
    grid: int


def tiny_sam3_detector(size: int, *, hidden: int, words: str) -> TinySam3:
    """A one-layer SAM 3 detector for ``size`` x ``size`` images (8x8 patches of 14 pixels at 112; the
    FPN makes 32, 16, 8 and 4 cells a side), FPN and decoder width ``hidden``, and a CLIP BPE tokenizer
    that knows ``words`` whole (anything else falls back to single bytes). Shared by the image and the
    video builders."""
    from transformers import (
        CLIPTokenizer,
        Sam3Config,
        Sam3DETRDecoderConfig,
        Sam3DETREncoderConfig,
        Sam3GeometryEncoderConfig,
        Sam3ImageProcessor,
        Sam3MaskDecoderConfig,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )

    patch = 14
    grid = size // patch
    backbone = Sam3ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=size,
        pretrain_image_size=size,
        patch_size=patch,
        window_size=grid // 2,
        global_attn_indexes=[1],
    )
    vision = Sam3VisionConfig(
        backbone_config=backbone,
        fpn_hidden_size=hidden,
        scale_factors=[4.0, 2.0, 1.0, 0.5],
        backbone_feature_sizes=[[grid * 4] * 2, [grid * 2] * 2, [grid] * 2],
    )
    vocab, spelled = bpe_vocab(
        words.split(), end_of_word="</w>", specials=("<|startoftext|>", "<|endoftext|>")
    )
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "projection_dim": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "max_position_embeddings": 32,  # the processor pads every prompt to 32 tokens
        "hidden_act": "gelu",
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
        "pad_token_id": vocab["<|endoftext|>"],
    }
    small = {"hidden_size": hidden, "num_attention_heads": 4, "intermediate_size": 64}
    config = Sam3Config(
        vision_config=vision,
        text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(num_layers=1, **small),
        detr_encoder_config=Sam3DETREncoderConfig(num_layers=1, **small),
        detr_decoder_config=Sam3DETRDecoderConfig(num_layers=1, num_queries=8, **small),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=hidden, num_attention_heads=4),
    )
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in spelled])
    image_processor = Sam3ImageProcessor(
        size={"height": size, "width": size},
        mask_size={"height": grid * 4, "width": grid * 4},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return TinySam3(config, vision, tokenizer, image_processor, grid)
