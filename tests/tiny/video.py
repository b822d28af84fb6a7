"""Tiny video checkpoints that track: SAM 2 and EdgeTAM video models, and SAM 3 video, on small configs.

The ``video=True`` checkpoints of :mod:`tests.tiny.sam` load, and their image part works, but their
memory modules cannot run a second frame: transformers hard-wires the memory attention's key/value
width to 64 and splits each object pointer into ``hidden / 64`` memory tokens, so the memory encoder
must give 64 channels and the decoder width must be a multiple of 64 above it. The builders here keep
those two facts (decoder width 128, memory 64 channels) and shrink everything else, so a frame takes a
few tens of milliseconds on a CPU. Their answers are noise; tests check plumbing, ids and memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.tiny._common import make_folder
from tests.tiny.sam import sam2_feature_sizes, tiny_hiera_vision, tiny_repvit_backbone
from tests.tiny.sam3 import tiny_sam3_detector

__all__ = [
    "SAM2_VIDEO_SIZE",
    "SAM3_VIDEO_SIZE",
    "build_tiny_edgetam_video",
    "build_tiny_sam2_video",
    "build_tiny_sam3_video",
]

SAM2_VIDEO_SIZE = 128
"""Side of the square the tiny SAM 2 and EdgeTAM video models see, in pixels."""

SAM3_VIDEO_SIZE = 112
"""Side of the square the tiny SAM 3 video model sees (8x8 patches of 14 pixels)."""

_HIDDEN = 128  # decoder and FPN width: a multiple of the 64 memory channels, as in the real models
_MEMORY = 64  # memory channels: transformers fixes the memory attention's key/value width at 64


def build_tiny_sam2_video(path: str | Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``Sam2VideoModel`` and its ``Sam2VideoProcessor`` into ``path``.

    Args:
        path: the folder to write (created if missing).
        seed: torch seed of the random weights; the same seed gives the same weights.

    Returns:
        ``path``, ready for ``Sam2VideoTracker(weights=f"file:{path}")``.
    """
    import torch
    from transformers import (
        Sam2VideoConfig,
        Sam2VideoMaskDecoderConfig,
        Sam2VideoModel,
        Sam2VideoPromptEncoderConfig,
    )

    folder = make_folder(path)
    config = Sam2VideoConfig(
        vision_config=tiny_hiera_vision(SAM2_VIDEO_SIZE, _HIDDEN),
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(**_sam2_prompt_sizes()),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(**_decoder_sizes()),
        **_memory_sizes(SAM2_VIDEO_SIZE, SAM2_VIDEO_SIZE // 16),
    )
    torch.manual_seed(seed)
    _objects_appear(Sam2VideoModel(config).eval()).save_pretrained(folder)
    _sam2_video_processor().save_pretrained(folder)
    return folder


def build_tiny_edgetam_video(path: str | Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised tiny ``EdgeTamVideoModel`` (a 4-block RepViT from timm) and its
    ``Sam2VideoProcessor`` into ``path``; arguments and result as :func:`build_tiny_sam2_video`.
    Needs ``timm``, as the real EdgeTAM does."""
    import torch
    from transformers import (
        EdgeTamMaskDecoderConfig,
        EdgeTamPromptEncoderConfig,
        EdgeTamVideoConfig,
        EdgeTamVideoModel,
        EdgeTamVisionConfig,
    )

    folder = make_folder(path)
    dims, backbone = tiny_repvit_backbone()
    config = EdgeTamVideoConfig(
        vision_config=EdgeTamVisionConfig(
            backbone_config=backbone,
            backbone_channel_list=list(dims[::-1]),
            backbone_feature_sizes=sam2_feature_sizes(SAM2_VIDEO_SIZE),
            fpn_hidden_size=_HIDDEN,
        ),
        prompt_encoder_config=EdgeTamPromptEncoderConfig(**_sam2_prompt_sizes()),
        mask_decoder_config=EdgeTamMaskDecoderConfig(**_decoder_sizes()),
        perceiver_resampler_num_latents=16,
        perceiver_resampler_num_latents_2d=16,  # a 4x4 grid of windows
        perceiver_resampler_hidden_size=_MEMORY,
        perceiver_resampler_mlp_intermediate_size=64,
        perceiver_resampler_attention_head_dim=_MEMORY,  # the positional encoding is added per head
        perceiver_resampler_num_layers=1,
        memory_attention_rope_k_sizes=[4, 4],
        **_memory_sizes(SAM2_VIDEO_SIZE, SAM2_VIDEO_SIZE // 16),
    )
    torch.manual_seed(seed)
    _objects_appear(EdgeTamVideoModel(config).eval()).save_pretrained(folder)
    _sam2_video_processor().save_pretrained(folder)
    return folder


def build_tiny_sam3_video(path: str | Path, *, seed: int = 0, recondition_every: int = 0) -> Path:
    """Save a randomly initialised tiny ``Sam3VideoModel`` (detector + tracker) and its
    ``Sam3VideoProcessor`` (with a small CLIP tokenizer) into ``path``.

    Random weights score every detection about 0.25, so the thresholds are lowered: the first frame
    starts one object per detection query above 0.1, and any detection later matches a track (an
    association IoU of 0), so no more objects start. Arguments and result as
    :func:`build_tiny_sam2_video`.

    Args:
        recondition_every: when above 0, SAM 3 re-conditions every track on a matched detection every
            this many frames (the real default is every 16th frame, on confident detections, which random
            weights never give), so each object gets a new conditioning frame that often.
    """
    import copy

    import torch
    from transformers import (
        Sam2VideoVideoProcessor,
        Sam3TrackerVideoConfig,
        Sam3TrackerVideoMaskDecoderConfig,
        Sam3TrackerVideoPromptEncoderConfig,
        Sam3VideoConfig,
        Sam3VideoModel,
        Sam3VideoProcessor,
    )

    folder = make_folder(path)
    size, patch = SAM3_VIDEO_SIZE, 14
    parts = tiny_sam3_detector(size, hidden=_HIDDEN, words=_SAM3_WORDS)
    grid = parts.grid
    tracker = Sam3TrackerVideoConfig(
        vision_config=copy.deepcopy(parts.vision),
        prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(
            hidden_size=_HIDDEN, image_size=size, patch_size=patch, mask_input_channels=4
        ),
        mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(**_decoder_sizes()),
        **_memory_sizes(size, grid),
    )
    config = Sam3VideoConfig(
        detector_config=parts.config,
        tracker_config=tracker,
        low_res_mask_size=grid * 4,
        score_threshold_detection=0.1,
        new_det_thresh=0.1,
        assoc_iou_thresh=0.0,
        **(
            {
                "recondition_every_nth_frame": recondition_every,
                "high_conf_thresh": 0.1,
                "high_iou_thresh": 0.0,
            }
            if recondition_every > 0
            else {}
        ),
    )
    torch.manual_seed(seed)
    model = Sam3VideoModel(config).eval()
    _objects_appear(model.tracker_model)
    model.save_pretrained(folder)
    pixels = {"height": size, "width": size}
    video_processor = Sam2VideoVideoProcessor(size=pixels, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = Sam3VideoProcessor(parts.image_processor, video_processor, parts.tokenizer, target_size=size)
    processor.save_pretrained(folder)
    return folder


# Words the tiny SAM 3 tokenizer knows whole; anything else falls back to single bytes.
_SAM3_WORDS = "person people bicycle bike car dog cat cup bag the of and"


def _objects_appear(model: Any) -> Any:
    """Bias the object-score head towards "the object is here": random weights score about 0, and
    below 0 the video models blank the mask (``NO_OBJ_SCORE``), so every mask would be empty."""
    import torch

    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(2.0)
    return model


def _decoder_sizes() -> dict[str, int]:
    return {
        "hidden_size": _HIDDEN,
        "mlp_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "iou_head_hidden_dim": 32,
    }


def _sam2_prompt_sizes() -> dict[str, int]:
    return {"hidden_size": _HIDDEN, "image_size": SAM2_VIDEO_SIZE, "patch_size": 16, "mask_input_channels": 4}


def _memory_sizes(image_size: int, grid: int) -> dict[str, Any]:
    # the memory modules, small except for the two widths transformers fixes (see the module docstring)
    return {
        "image_size": image_size,
        "memory_attention_hidden_size": _HIDDEN,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_attention_rope_feat_sizes": [grid, grid],
        "memory_encoder_hidden_size": _HIDDEN,
        "memory_encoder_output_channels": _MEMORY,
        "mask_downsampler_embed_dim": _HIDDEN,
        "memory_fuser_embed_dim": _HIDDEN,
        "memory_fuser_intermediate_dim": 64,
    }


def _sam2_video_processor() -> Any:
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    size = {"height": SAM2_VIDEO_SIZE, "width": SAM2_VIDEO_SIZE}
    image_processor = Sam2ImageProcessor(
        size=size, mask_size={"height": SAM2_VIDEO_SIZE // 4, "width": SAM2_VIDEO_SIZE // 4}
    )
    return Sam2VideoProcessor(
        image_processor, Sam2VideoVideoProcessor(size=size), target_size=SAM2_VIDEO_SIZE
    )
