"""Tiny SAM, SAM 2 and EdgeTAM checkpoints: random weights (seeded) on small configs.

Each model sees 128x128 images (an 8x8 grid of 16-pixel cells for the mask decoder), and its
processor is saved with the same size, so prompts and masks are scaled exactly as with the real
1024x1024 checkpoints, only smaller. A forward pass takes a few tens of milliseconds on a CPU. Their
answers are noise; tests check shapes, frames, plumbing and caching, never what they find.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.tiny._common import make_folder

__all__ = ["IMAGE_SIZE", "TINY_BUILDERS", "build_tiny_edgetam", "build_tiny_sam", "build_tiny_sam2"]

IMAGE_SIZE = 128
"""Side of the square every tiny model sees, in pixels (SAM: longest side, padded to a square)."""

_GRID = IMAGE_SIZE // 16  # cells a side of the image embedding the mask decoder works on
_HIDDEN = 32  # width of the prompt encoder, mask decoder and FPN


def build_tiny_sam(path: str | Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``SamModel`` and its ``SamProcessor`` into ``path``.

    Args:
        path: the folder to write (created if missing); afterwards it holds ``config.json``, the
            weights as safetensors and ``processor_config.json``.
        seed: torch seed of the random weights; the same seed gives the same weights.

    Returns:
        ``path``, ready for ``load_backend("sam", weights=f"file:{path}")``.
    """
    import torch
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    folder = make_folder(path)
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=32,
            output_channels=_HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMAGE_SIZE,
            patch_size=16,
            window_size=_GRID // 2,
            global_attn_indexes=[1],
            num_pos_feats=_HIDDEN // 2,
            mlp_dim=64,
            # SAM's default of 1e-10 makes subnormal activations, which are very slow on a CPU
            initializer_range=0.02,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=_HIDDEN, image_size=IMAGE_SIZE, patch_size=16, mask_input_channels=4
        ),
        mask_decoder_config=SamMaskDecoderConfig(**_decoder_sizes()),
    )
    torch.manual_seed(seed)
    SamModel(config).eval().save_pretrained(folder)
    image_processor = SamImageProcessor(
        size={"longest_edge": IMAGE_SIZE},
        pad_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        mask_size={"longest_edge": IMAGE_SIZE // 4},
        mask_pad_size={"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4},
    )
    SamProcessor(image_processor).save_pretrained(folder)
    return folder


def build_tiny_sam2(path: str | Path, *, seed: int = 0, video: bool = False) -> Path:
    """Save a randomly initialised tiny ``Sam2Model`` (a 4-stage Hiera of 5 blocks) and its
    ``Sam2Processor`` into ``path``; arguments and result as :func:`build_tiny_sam`.

    Args:
        video: save a ``Sam2VideoModel`` (small memory modules) with a ``Sam2VideoProcessor``
            instead, as the Hub ships SAM 2.1 (``model_type`` ``"sam2_video"``); its image part has
            the weights ``video=False`` gives for the same seed, its memory modules random ones.
    """
    import torch
    from transformers import (
        Sam2Config,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2PromptEncoderConfig,
        Sam2VideoConfig,
        Sam2VideoModel,
    )

    folder = make_folder(path)
    parts = {
        "vision_config": tiny_hiera_vision(IMAGE_SIZE, _HIDDEN),
        "prompt_encoder_config": Sam2PromptEncoderConfig(
            hidden_size=_HIDDEN, image_size=IMAGE_SIZE, patch_size=16, mask_input_channels=4
        ),
        "mask_decoder_config": Sam2MaskDecoderConfig(**_decoder_sizes()),
    }
    torch.manual_seed(seed)
    model = Sam2Model(Sam2Config(**parts)).eval()
    if video:
        model = _with_image_weights(Sam2VideoModel(Sam2VideoConfig(**parts, **_memory_sizes())), model)
    model.save_pretrained(folder)
    _sam2_processor(video=video).save_pretrained(folder)
    return folder


def build_tiny_edgetam(path: str | Path, *, seed: int = 0, video: bool = False) -> Path:
    """Save a randomly initialised tiny ``EdgeTamModel`` (a 4-block RepViT from timm) and its
    ``Sam2Processor`` into ``path``; arguments and result as :func:`build_tiny_sam`.

    Needs ``timm``, as the real EdgeTAM does.

    Args:
        video: save an ``EdgeTamVideoModel`` with a ``Sam2VideoProcessor`` instead, as the Hub
            ships EdgeTAM (``model_type`` ``"edgetam_video"``); see :func:`build_tiny_sam2`.
    """
    import torch
    from transformers import (
        EdgeTamConfig,
        EdgeTamMaskDecoderConfig,
        EdgeTamModel,
        EdgeTamPromptEncoderConfig,
        EdgeTamVideoConfig,
        EdgeTamVideoModel,
        EdgeTamVisionConfig,
    )

    folder = make_folder(path)
    dims, backbone = tiny_repvit_backbone()
    parts = {
        "vision_config": EdgeTamVisionConfig(
            backbone_config=backbone,
            backbone_channel_list=list(dims[::-1]),
            backbone_feature_sizes=sam2_feature_sizes(IMAGE_SIZE),
            fpn_hidden_size=_HIDDEN,
        ),
        "prompt_encoder_config": EdgeTamPromptEncoderConfig(
            hidden_size=_HIDDEN, image_size=IMAGE_SIZE, patch_size=16, mask_input_channels=4
        ),
        "mask_decoder_config": EdgeTamMaskDecoderConfig(**_decoder_sizes()),
    }
    torch.manual_seed(seed)
    model = EdgeTamModel(EdgeTamConfig(**parts)).eval()
    if video:
        perceiver = {
            "perceiver_resampler_num_latents": 16,
            "perceiver_resampler_num_latents_2d": 16,  # a 4x4 grid of windows
            "perceiver_resampler_hidden_size": 16,
            "perceiver_resampler_mlp_intermediate_size": 32,
            "perceiver_resampler_attention_head_dim": 16,
            "perceiver_resampler_num_layers": 1,
            "memory_attention_rope_k_sizes": [4, 4],
        }
        config = EdgeTamVideoConfig(**parts, **_memory_sizes(), **perceiver)
        model = _with_image_weights(EdgeTamVideoModel(config), model)
    model.save_pretrained(folder)
    _sam2_processor(video=video).save_pretrained(folder)
    return folder


TINY_BUILDERS: dict[str, Callable[..., Path]] = {
    "sam": build_tiny_sam,
    "sam2": build_tiny_sam2,
    "edgetam": build_tiny_edgetam,
}
"""Registry name -> the builder of its tiny checkpoint."""


def _decoder_sizes() -> dict[str, int]:
    return {
        "hidden_size": _HIDDEN,
        "mlp_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": _HIDDEN,
    }


def sam2_feature_sizes(size: int) -> list[list[int]]:
    """The three FPN levels SAM 2's decoder reads, for ``size`` x ``size`` images: strides 4, 8 and 16."""
    return [[size // 4] * 2, [size // 8] * 2, [size // 16] * 2]


def tiny_hiera_vision(size: int, fpn_hidden: int) -> Any:
    """SAM 2's Hiera image encoder, tiny (stage widths 16 to 128, 5 blocks), for ``size`` x ``size``
    images, with an FPN ``fpn_hidden`` wide; shared by the image and the video builders."""
    from transformers import Sam2HieraDetConfig, Sam2VisionConfig

    dims = [16, 32, 64, 128]
    backbone = Sam2HieraDetConfig(
        hidden_size=dims[0],
        num_attention_heads=1,
        image_size=[size, size],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=dims,
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[8, 4, 4, 2],
        # a global block must not open a stage: the first block of a stage pools by its window
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    return Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=dims[::-1],
        backbone_feature_sizes=sam2_feature_sizes(size),
        fpn_hidden_size=fpn_hidden,
    )


def _with_image_weights(video_model: Any, image_model: Any) -> Any:
    """``video_model`` with the image model's weights, so both kinds of checkpoint of a seed agree."""
    result = video_model.load_state_dict(image_model.state_dict(), strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"the video model lacks image weights {result.unexpected_keys[:3]}")
    return video_model.eval()


def _memory_sizes() -> dict[str, Any]:
    # the video models' memory modules, small; the image part never uses them
    return {
        "image_size": IMAGE_SIZE,
        "memory_attention_hidden_size": _HIDDEN,
        "memory_attention_num_layers": 1,
        "memory_attention_rope_feat_sizes": [_GRID, _GRID],
        "memory_encoder_hidden_size": _HIDDEN,
        "memory_encoder_output_channels": 16,
        "mask_downsampler_embed_dim": _HIDDEN,
        "memory_fuser_embed_dim": _HIDDEN,
        "memory_fuser_intermediate_dim": 64,
    }


def _sam2_processor(*, video: bool = False) -> Any:
    from transformers import Sam2ImageProcessor, Sam2Processor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    image_processor = Sam2ImageProcessor(
        size=size, mask_size={"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4}
    )
    if video:
        return Sam2VideoProcessor(image_processor, Sam2VideoVideoProcessor(size=size), target_size=IMAGE_SIZE)
    return Sam2Processor(image_processor)


def tiny_repvit_backbone() -> tuple[tuple[int, ...], Any]:
    """EdgeTAM's RepViT image encoder, tiny: its stage widths and the timm wrapper config."""
    from transformers import TimmWrapperConfig

    dims = (8, 16, 32, 64)
    return dims, TimmWrapperConfig(
        architecture="repvit_m1",
        model_args={
            "in_chans": 3,
            "features_only": True,
            "out_indices": [0, 1, 2, 3],
            "embed_dim": dims,
            "depth": (1, 1, 1, 1),
        },
    )
