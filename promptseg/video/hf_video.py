"""SAM 2, EdgeTAM and SAM 3 video tracking over transformers' streaming inference sessions.

Each tracker feeds frames one at a time to a transformers video model (``Sam2VideoModel``,
``EdgeTamVideoModel`` or ``Sam3VideoModel``) through its inference session, and keeps that session's
memory bank bounded: after every frame it drops what the model will never read again.

- :class:`Sam2VideoTracker` (SAM 2.1 and EdgeTAM video checkpoints): objects come from box prompts
  (:meth:`~Sam2VideoTracker.add_boxes`, or ``boxes=`` for the first frame) and/or from a ``detect``
  callback run on keyframes, whose unmatched boxes become new objects. So a text detector (the offline
  backend, SAM 3 image, OWLv2) can name the objects and SAM 2's memory can follow them.
- :class:`Sam3VideoTracker`: text prompts; SAM 3 finds and tracks every instance itself.

What the model reads back (transformers 5.23, ``_gather_memory_frame_outputs`` and
``_get_object_pointers``): for frame ``t`` the spatial memories of frames ``t-1 .. t-(num_maskmem-1)``,
the object pointers of frames ``t-1 .. t-(max_object_pointers_in_encoder-1)`` (streaming), and the
outputs of the conditioning frames (prompted frames, and SAM 3's re-conditioned ones). Nothing else
of earlier frames is read: their preprocessed pixels, their decoded masks, the per-frame bookkeeping.
So a tracker keeps, per object, the conditioning outputs and the last ``memory_frames`` outputs
(default: the model's whole reading window, 15 for the released configs, which gives masks identical
to an unpruned session), and only the memory tensors of those: ``maskmem_features``,
``maskmem_pos_enc``, ``object_pointer`` and ``object_score_logits``.

One exception: SAM 3 re-conditions its tracks (every 16th frame), and transformers then reads object
pointers from *every* conditioning frame, a number that grows with the video, where the original
SAM 2 / SAM 3 code reads them only from the ``max_cond_frame_num`` (4) its memory attention selects.
The trackers keep those 4 (and any inside the window), as the original does; so once a SAM 3 track
has more, its masks follow the original implementation rather than transformers' unbounded one.

Example:
    >>> from promptseg.video.hf_video import Sam2VideoTracker
    >>> tracker = Sam2VideoTracker(boxes={1: [40, 60, 200, 310]}, labels={1: "cup"})  # doctest: +SKIP
    >>> for frame in source:                                                         # doctest: +SKIP
    ...     det = tracker.update(frame)   # det.track_ids, det.masks (N, H, W), det.scores
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from promptseg._deps import require
from promptseg.backends._hf import HF_EXTRA, load_pretrained
from promptseg.backends.prompts import visual_prompts
from promptseg.errors import BackendUnavailable, ConfigError, InputError, MissingDependencyError
from promptseg.image import check_rgb
from promptseg.ops.boxes import box_iou, mask_to_xyxy
from promptseg.text.words import split_concepts
from promptseg.types import BoolArray, Detections, FloatArray, ImageSize, UInt8Array
from promptseg.video.types import Frame
from promptseg.weights import resolve_weights

try:
    import torch
except ImportError:  # the extra's message, not a bare ImportError
    require("torch", extra=HF_EXTRA, purpose="video tracking with SAM 2, EdgeTAM or SAM 3")
    raise

__all__ = ["Sam2VideoTracker", "Sam3VideoTracker", "SessionStats", "measure_memory"]

Detector = Callable[[UInt8Array], Detections]
"""A text (or any) detector run on keyframes: ``(H, W, 3)`` uint8 RGB -> boxes in that frame."""

# The session internals pruned here were read in transformers 5.23.0 (the version the tests run on);
# the project allows transformers>=5.0,<6. Rather than trusting a version number, every tracker checks
# the layout of its session when it starts (_check_layout) and refuses, naming what is missing, when a
# transformers release has moved something: a silent mismatch would let memory grow without bound.
_TESTED_TRANSFORMERS = "5.23.0"
_SESSION_ATTRIBUTES = (
    "processed_frames",  # preprocessed pixels per frame index (a dict since transformers 5)
    "output_dict_per_obj",  # obj_idx -> {"cond_frame_outputs": {t: ...}, "non_cond_frame_outputs": {t: ...}}
    "frames_tracked_per_obj",  # obj_idx -> {t: {"reverse": bool}}
    "point_inputs_per_obj",  # obj_idx -> {t: prompt}
    "mask_inputs_per_obj",  # obj_idx -> {t: mask}
    "obj_ids",
    "_obj_id_to_idx",
    "_obj_idx_to_id",
    "cache",
)
_SAM3_ATTRIBUTES = (
    "obj_id_to_tracker_score_frame_wise",  # t -> {obj_id: score}; only [t] of the current frame is read
    "suppressed_obj_ids",  # t -> {obj_id}; likewise
    "unmatched_frame_inds",  # obj_id -> [t, ...]; only its length, and only outside streaming
    "overlap_pair_to_frame_inds",  # (obj_id, obj_id) -> [t, ...]; likewise
    "obj_id_to_score",
    "obj_id_to_last_occluded",
    "obj_first_frame_idx",
    "trk_keep_alive",
    "removed_obj_ids",
    "obj_id_to_prompt_id",
    "prompts",
)
_MEMORY_KEYS = frozenset({"maskmem_features", "maskmem_pos_enc", "object_pointer", "object_score_logits"})
"""What the model reads back from a stored frame output once the frame is behind it."""

_SAM2_MODELS = {"sam2_video": ("Sam2VideoModel", "SAM 2"), "edgetam_video": ("EdgeTamVideoModel", "EdgeTAM")}
_VIDEO_KIND = {"sam2": "sam2_video", "edgetam": "edgetam_video", "sam3": "sam3_video"}


@dataclass(frozen=True)
class SessionStats:
    """What a tracker's inference session holds now (counts, not process memory).

    Attributes:
        frames: frames the model has processed.
        objects: objects in the session.
        frame_outputs: stored per-object frame outputs, conditioning ones included, over all objects.
        conditioning_outputs: of which outputs of conditioning (prompted or re-conditioned) frames.
        processed_frames: preprocessed frames held.
        frame_records: other per-frame entries (tracked-frame marks, per-frame prompts, SAM 3's
            per-frame scores and suppression sets, its unmatched and overlap frame lists).
        tensors: distinct tensors reachable from the session.
        tensor_bytes: their size in bytes.
    """

    frames: int
    objects: int
    frame_outputs: int
    conditioning_outputs: int
    processed_frames: int
    frame_records: int
    tensors: int
    tensor_bytes: int


class _StreamingTracker:
    """What both trackers share: loading, the session, bounded memory, frame checks, stats."""

    DEFAULT_WEIGHTS: ClassVar[str]
    _DEFAULT_NAME: ClassVar[str]
    _LAYOUT: ClassVar[tuple[str, ...]] = _SESSION_ATTRIBUTES  # the session internals _prune relies on

    def __init__(
        self,
        *,
        weights: str | None,
        device: str | None,
        dtype: str | None,
        memory_frames: int | None,
        keep_history: bool,
        offload: bool,
        max_objects: int,
        forget_after: int | None,
        name: str | None,
    ) -> None:
        self.name = name or self._DEFAULT_NAME
        if memory_frames is not None and (
            isinstance(memory_frames, bool) or not isinstance(memory_frames, int) or memory_frames < 0
        ):
            raise ConfigError(
                f"memory_frames must be an int >= 0 (or None: the model's window), got {memory_frames!r}"
            )
        _check_count(max_objects, "max_objects", minimum=1)
        if forget_after is not None:
            _check_count(forget_after, "forget_after", minimum=1)
        weights = weights or self.DEFAULT_WEIGHTS
        model_type = _model_type(weights, self.name)
        model_class, processor_class = self._classes(weights, model_type)
        loaded = load_pretrained(
            model_class,
            processor_class,
            weights,
            backend=self.name,
            device=device,
            dtype=dtype,
            model_types=(model_type,),
        )
        self._model = loaded.model
        self._processor = loaded.processor
        self._device = loaded.device
        self._dtype = loaded.dtype
        config = self._memory_config()
        window = max(int(config.num_maskmem) - 1, int(config.max_object_pointers_in_encoder) - 1, 0)
        self._window = window
        self._memory_frames = window if memory_frames is None else int(memory_frames)
        self._max_cond = int(config.max_cond_frame_num)
        self._keep_history = bool(keep_history)
        on_gpu = not str(self._device).startswith("cpu")
        self._offload = bool(offload) and on_gpu
        state_device = "cpu" if self._offload else self._device
        self._session = self._processor.init_video_session(
            inference_device=self._device,
            inference_state_device=state_device,
            video_storage_device=state_device,
            dtype=self._dtype,
        )
        self._state_device = state_device
        _check_layout(self._session, self._LAYOUT, self.name)
        if not self._keep_history:
            self._session.processed_frames = _FrameStore()
        self._max_objects = int(max_objects)
        self._forget_after = forget_after
        self._step = 0  # session frame index of the next frame the model runs on
        self._size: ImageSize | None = None
        self._last_seen: dict[int, int] = {}
        self._provenance = {
            **loaded.provenance,
            "memory_frames": self._memory_frames,
            "memory_window": window,
            "keep_history": self._keep_history,
            "offload": self._offload,
        }

    def _classes(self, weights: str, model_type: str) -> tuple[str, str]:
        raise NotImplementedError

    def _memory_config(self) -> Any:
        """The config holding ``num_maskmem``, ``max_object_pointers_in_encoder``, ``max_cond_frame_num``."""
        return self._model.config

    @property
    def model(self) -> Any:
        """The transformers video model (read-only use: hooks, inspection)."""
        return self._model

    @property
    def memory_frames(self) -> int:
        """Non-conditioning frames kept per object (besides the conditioning frames)."""
        return self._memory_frames

    @property
    def memory_window(self) -> int:
        """How many past frames the model reads: ``max(num_maskmem, max_object_pointers_in_encoder) - 1``.
        With ``memory_frames`` at least this, masks are those of an unpruned session."""
        return self._window

    def session_stats(self) -> SessionStats:
        """Count what the session holds (walks it: call it now and then, not on every frame)."""
        s = self._session
        outputs = cond = 0
        for per_obj in s.output_dict_per_obj.values():
            cond += len(per_obj["cond_frame_outputs"])
            outputs += len(per_obj["cond_frame_outputs"]) + len(per_obj["non_cond_frame_outputs"])
        records = sum(
            len(d)
            for attr in ("frames_tracked_per_obj", "point_inputs_per_obj", "mask_inputs_per_obj")
            for d in getattr(s, attr).values()
        )
        for attr in ("obj_id_to_tracker_score_frame_wise", "suppressed_obj_ids"):
            records += len(getattr(s, attr, {}))
        for attr in ("unmatched_frame_inds", "overlap_pair_to_frame_inds"):
            records += sum(len(v) for v in getattr(s, attr, {}).values())
        seen: dict[int, int] = {}
        _collect_tensors(vars(s), seen, depth=0)
        return SessionStats(
            frames=self._step,
            objects=len(s.obj_ids),
            frame_outputs=outputs,
            conditioning_outputs=cond,
            processed_frames=dict.__len__(s.processed_frames) if s.processed_frames is not None else 0,
            frame_records=records,
            tensors=len(seen),
            tensor_bytes=sum(seen.values()),
        )

    def _check_frame(self, frame: Frame) -> UInt8Array:
        if not isinstance(frame, Frame):
            raise InputError(
                f"{type(self).__name__}.update takes a promptseg.video.types.Frame, got "
                f"{type(frame).__name__}; wrap an image as Frame(index, time, image)"
            )
        image = check_rgb(frame.image, purpose=f"video tracker {self.name!r}")
        size = (int(image.shape[0]), int(image.shape[1]))
        if self._size is None:
            self._size = size
        elif size != self._size:
            raise InputError(
                f"frame {frame.index} is {size[1]}x{size[0]}, but this stream's frames are "
                f"{self._size[1]}x{self._size[0]}; use one tracker per stream, or resize the frames"
            )
        return image

    def _prune(self, step: int) -> None:
        """Drop what the model will never read again, after the frame ``step`` (see the module doc)."""
        s = self._session
        oldest = step + 1 - self._memory_frames  # the next frame reads back to step + 1 - window
        for per_obj in s.output_dict_per_obj.values():
            non_cond, cond = per_obj["non_cond_frame_outputs"], per_obj["cond_frame_outputs"]
            for outputs in (non_cond, cond):
                out = outputs.get(step)
                if out is None:
                    continue
                if self._offload:
                    for key in ("maskmem_features", "maskmem_pos_enc"):
                        # transformers 5.23 stores these two where they were computed (the GPU), not
                        # on the session's inference_state_device; the model moves them back to read
                        if isinstance(out.get(key), torch.Tensor):
                            out[key] = out[key].to(self._state_device, non_blocking=True)
                if not self._keep_history:
                    for key in [k for k in out if k not in _MEMORY_KEYS]:  # masks: 4 MB an object at 1024
                        del out[key]
            if self._keep_history:
                continue
            for t in [t for t in non_cond if t < oldest]:
                del non_cond[t]
            if self._max_cond > 0 and len(cond) > self._max_cond:
                # streaming only moves forward, so the model selects the most recent ones from now on
                recent = set(sorted(cond)[-self._max_cond :])
                for t in [t for t in cond if t not in recent and t < oldest]:
                    del cond[t]
        if self._keep_history:
            return
        for attr in ("frames_tracked_per_obj", "point_inputs_per_obj", "mask_inputs_per_obj"):
            for per_frame in getattr(s, attr).values():
                _drop_before(per_frame, step)
        if s.processed_frames:
            _drop_before(s.processed_frames, step)

    def _forget(self, step: int) -> list[int]:
        """Ids of objects unseen for more than ``forget_after`` frames (their session state is freed)."""
        if self._forget_after is None:
            return []
        return [oid for oid, seen in self._last_seen.items() if step - seen > self._forget_after]

    def _meta(self, frame: Frame, notes: list[str]) -> dict[str, Any]:
        return {**self._provenance, "frame_index": frame.index, "frame_time": frame.time, "notes": notes}


class Sam2VideoTracker(_StreamingTracker):
    """SAM 2.1 or EdgeTAM video tracking of prompted and detected objects, with a bounded memory bank.

    The checkpoint's ``model_type`` picks the model: ``sam2_video`` (SAM 2.1, the Hub's
    ``facebook/sam2.1-hiera-*``) or ``edgetam_video`` (EdgeTAM, which needs ``timm``).

    Args:
        weights: weights spec of a video checkpoint (``hf:``, ``file:`` or a name under
            ``$PROMPTSEG_MODELS``); default :attr:`DEFAULT_WEIGHTS`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or None/``"auto"``.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or None/``"auto"``.
        boxes: objects to track from the first frame: ``{track_id: [x1, y1, x2, y2]}``, or ``(N, 4)``
            xyxy pixels (ids 1..N).
        labels: their labels: one for all, one per box, or ``{track_id: label}`` (default ``"object"``).
        detect: a detector run on keyframes (``(H, W, 3)`` uint8 RGB -> :class:`Detections` of that
            frame); each of its boxes that matches no tracked object becomes a new object.
        detect_every: run ``detect`` on every n-th frame, starting with the first.
        match_iou: box IoU from which a detection is an object already tracked (compared with the
            object's last mask box and with the last detector box it was matched to).
        max_objects: most objects tracked at once; detections beyond it wait for a free slot.
        forget_after: drop an object not seen (presence below 0.5 or an empty mask) for this many
            frames, freeing its memory and its slot (None: never).
        memory_frames: past frames kept per object besides the conditioning (prompted) frames; None:
            the model's reading window (:attr:`memory_window`), which changes no mask. Fewer save
            memory at the cost of the model seeing fewer past frames.
        keep_history: keep everything, as transformers does (memory grows with the video): for
            comparisons only.
        offload: on a GPU, keep the session's state and frames in CPU memory.
        score_threshold: report an object when its presence probability (sigmoid of the model's
            object score) is at least this; 0 reports every tracked object on every frame.
        mask_threshold: mask logit above which a pixel is on the object.
        name: the name recorded in ``meta``.

    Raises:
        MissingDependencyError: when torch, transformers (or, for EdgeTAM, timm) is missing.
        BackendUnavailable: when the weights are missing, are not a SAM 2 / EdgeTAM video checkpoint,
            or transformers' session has another layout than the one this module prunes.
        ConfigError: for bad settings; InputError: for bad boxes or labels.

    Example:
        >>> detector = load_backend("offline")                                        # doctest: +SKIP
        >>> tracker = Sam2VideoTracker(detect=lambda im: detector.detect(im, "people"))  # doctest: +SKIP
        >>> det = tracker.update(frame)                                                  # doctest: +SKIP
    """

    DEFAULT_WEIGHTS: ClassVar[str] = "hf:facebook/sam2.1-hiera-tiny"
    _DEFAULT_NAME: ClassVar[str] = "sam2"

    def __init__(
        self,
        *,
        weights: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        boxes: Mapping[int, Sequence[float]] | Any = None,
        labels: str | Sequence[str] | Mapping[int, str] | None = None,
        detect: Detector | None = None,
        detect_every: int = 15,
        match_iou: float = 0.5,
        max_objects: int = 32,
        forget_after: int | None = None,
        memory_frames: int | None = None,
        keep_history: bool = False,
        offload: bool = False,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.0,
        name: str | None = None,
    ) -> None:
        if detect is not None and not callable(detect):
            raise ConfigError(f"detect must be a callable image -> Detections, got {type(detect).__name__}")
        _check_count(detect_every, "detect_every", minimum=1)
        _check_unit(match_iou, "match_iou")
        _check_unit(score_threshold, "score_threshold")
        if isinstance(mask_threshold, bool) or not isinstance(mask_threshold, (int, float)):
            raise ConfigError(f"mask_threshold must be a number (a mask logit), got {mask_threshold!r}")
        self._detect = detect
        self._detect_every = int(detect_every)
        self._match_iou = float(match_iou)
        self._score_threshold = float(score_threshold)
        self._mask_threshold = float(mask_threshold)
        self._labels: dict[int, str] = {}
        self._anchor: dict[int, FloatArray] = {}  # the last prompt or detector box of each object
        self._last_box: dict[int, FloatArray] = {}  # its last non-empty mask's box
        self._pending: dict[int, FloatArray] = {}  # boxes to add on the next frame
        self._frames = 0  # frames seen, whether or not the model ran
        self._next_id = 1
        super().__init__(
            weights=weights,
            device=device,
            dtype=dtype,
            memory_frames=memory_frames,
            keep_history=keep_history,
            offload=offload,
            max_objects=max_objects,
            forget_after=forget_after,
            name=name,
        )
        self._provenance.update(detect_every=self._detect_every if detect else None)
        if boxes is not None:
            self.add_boxes(boxes, labels)

    def __repr__(self) -> str:
        p = self._provenance
        return (
            f"Sam2VideoTracker(weights={p['weights']!r}, model={p['model']!r}, device={p['device']!r}, "
            f"memory_frames={self._memory_frames}, objects={len(self._labels)})"
        )

    def _classes(self, weights: str, model_type: str) -> tuple[str, str]:
        if model_type not in _SAM2_MODELS:
            raise BackendUnavailable(
                _wrong_type(self.name, weights, model_type, ("sam2_video", "edgetam_video"))
            )
        if model_type == "edgetam_video":
            require("timm", extra=HF_EXTRA, purpose=f"video tracker {self.name!r} (EdgeTAM's RepViT encoder)")
        return _SAM2_MODELS[model_type][0], "Sam2VideoProcessor"

    @property
    def track_ids(self) -> list[int]:
        """Ids of the objects tracked now (and of boxes waiting for the next frame)."""
        return sorted(self._labels)

    def add_boxes(
        self,
        boxes: Mapping[int, Sequence[float]] | Any,
        labels: str | Sequence[str] | Mapping[int, str] | None = None,
    ) -> list[int]:
        """Start tracking objects from boxes on the next frame given to :meth:`update`.

        Args:
            boxes: ``{track_id: [x1, y1, x2, y2]}``, or ``(N, 4)`` (or ``(4,)``) xyxy pixels in that
                frame, which get fresh ids.
            labels: one label for all, one per box, or ``{track_id: label}`` (default ``"object"``).

        Returns:
            The track ids, in the order of the boxes.

        Raises:
            InputError: for bad boxes or labels, or an id already tracked.
            ConfigError: when the objects would exceed ``max_objects``.
        """
        ids: list[int] = []
        raw = boxes
        if isinstance(boxes, Mapping):
            ids = [int(i) for i in boxes]
            raw = [boxes[i] for i in boxes]
            taken = sorted(set(ids) & set(self._labels))
            if taken:
                raise InputError(f"track ids {taken} are already in use; pick other ids, or omit them")
        prompts = visual_prompts((1 << 30, 1 << 30), boxes=raw)  # checked here, clipped to each frame
        if not ids:
            ids = list(range(self._next_id, self._next_id + len(prompts)))
        if isinstance(labels, Mapping):
            labels = [str(labels.get(i, "object")) for i in ids]
        names = visual_prompts((1 << 30, 1 << 30), boxes=raw, labels=labels).labels
        if len(self._labels) + len(ids) > self._max_objects:
            raise ConfigError(
                f"{len(ids)} more objects would make {len(self._labels) + len(ids)}, above max_objects="
                f"{self._max_objects}; raise max_objects or set forget_after"
            )
        assert prompts.boxes is not None  # visual_prompts returns boxes when given boxes
        self._next_id = max(self._next_id, *ids) + 1  # ids are never reused, not even after forgetting
        for oid, box, label in zip(ids, prompts.boxes, names, strict=True):
            self._pending[oid] = box
            self._anchor[oid] = box
            self._labels[oid] = str(label)
        return ids

    def update(self, frame: Frame) -> Detections:
        """Track every object into ``frame``.

        Args:
            frame: the next frame of the stream (all of one size).

        Returns:
            The objects present in the frame (presence at least ``score_threshold``), by track id:
            ``masks`` ``(N, H, W)`` bool, ``xyxy`` each mask's box (the last box seen when the mask is
            empty), ``scores`` the presence probability, ``labels``, ``track_ids``, and
            ``attributes["visible"]`` (the mask is not empty). ``meta``: provenance, ``frame_index``,
            ``frame_time``, ``notes``.

        Raises:
            InputError: for a frame that is not a :class:`Frame` of RGB pixels, a frame of another
                size, or a ``detect`` answer for another image size.
        """
        image = self._check_frame(frame)
        h, w = image.shape[:2]
        notes: list[str] = []
        if self._detect is not None and self._frames % self._detect_every == 0:
            self._add_detections(image, notes)
        self._frames += 1
        if not self._labels:
            return _empty((h, w), self._meta(frame, notes))
        step = self._step
        with torch.inference_mode():
            inputs = self._processor(images=image, return_tensors="pt", input_data_format="channels_last")
            if self._pending:
                ids = list(self._pending)
                clip = np.array([w, h, w, h], np.float32)
                boxes = [np.minimum(self._pending[i], clip).tolist() for i in ids]
                self._processor.add_inputs_to_inference_session(
                    self._session, frame_idx=step, obj_ids=ids, input_boxes=[boxes], original_size=(h, w)
                )
                for oid in ids:
                    self._last_seen[oid] = step
                self._pending.clear()
            out = self._model(
                inference_session=self._session, frame=inputs["pixel_values"][0], frame_idx=step
            )
            masks = self._processor.post_process_masks(
                [out.pred_masks.float()], [[h, w]], mask_threshold=self._mask_threshold, binarize=True
            )[0][:, 0]
            masks_np: BoolArray = masks.cpu().numpy().astype(bool)
            probs = torch.sigmoid(out.object_score_logits.float()).reshape(-1).cpu().numpy()
        ids = [int(i) for i in out.object_ids]
        self._prune(step)
        self._step += 1
        det = self._to_detections(ids, masks_np, probs.astype(np.float32), step, (h, w), frame, notes)
        gone = self._forget(step)
        if gone:
            _remove_objects(self._session, gone)
            for oid in gone:
                for table in (self._labels, self._anchor, self._last_box, self._last_seen):
                    table.pop(oid, None)
        return det

    def _to_detections(
        self,
        ids: list[int],
        masks: BoolArray,
        probs: FloatArray,
        step: int,
        size: ImageSize,
        frame: Frame,
        notes: list[str],
    ) -> Detections:
        xyxy = mask_to_xyxy(masks)
        visible: BoolArray = np.any(masks.reshape(len(ids), -1), axis=1)
        for i, oid in enumerate(ids):
            if visible[i]:
                self._last_box[oid] = xyxy[i]
                if probs[i] >= 0.5:
                    self._last_seen[oid] = step
            else:
                xyxy[i] = self._last_box.get(oid, self._anchor.get(oid, xyxy[i]))
        keep = probs >= self._score_threshold
        return Detections(
            xyxy=xyxy[keep],
            image_size=size,
            labels=np.array([self._labels[i] for i in ids], dtype=np.str_)[keep],
            scores=probs.clip(0.0, 1.0)[keep],
            masks=masks[keep],
            track_ids=np.array(ids, np.int64)[keep],
            attributes={"visible": visible[keep]},
            meta=self._meta(frame, notes),
        )

    def _add_detections(self, image: UInt8Array, notes: list[str]) -> None:
        """Run ``detect`` and queue its boxes that match no tracked object as new objects."""
        assert self._detect is not None
        found = self._detect(image)
        if not isinstance(found, Detections):
            raise InputError(f"detect must return Detections, got {type(found).__name__}")
        if found.image_size != image.shape[:2]:
            raise InputError(
                f"detect returned Detections of a {found.image_size} image for a {image.shape[:2]} frame"
            )
        if not len(found):
            return
        order = (
            np.argsort(-found.scores, kind="stable") if found.scores is not None else np.arange(len(found))
        )
        tracked = [oid for oid in self._labels if oid not in self._pending]
        new: list[int] = []
        for j in order:
            box = found.xyxy[j]
            best, best_iou = None, self._match_iou
            for oid in tracked:
                refs = [b for b in (self._last_box.get(oid), self._anchor.get(oid)) if b is not None]
                iou = float(box_iou(box[None], np.stack(refs)).max()) if refs else 0.0
                if iou >= best_iou:
                    best, best_iou = oid, iou
            if best is not None:
                self._anchor[best] = box
            elif len(self._labels) + len(new) < self._max_objects and not any(
                float(box_iou(box[None], found.xyxy[k][None])[0, 0]) >= self._match_iou for k in new
            ):
                new.append(int(j))
            elif len(self._labels) + len(new) >= self._max_objects:
                notes.append(f"max_objects={self._max_objects} reached: a detection was not tracked")
        if new:
            ids = self.add_boxes(found.xyxy[new], [str(found.labels[k]) for k in new])
            notes.append(f"detect added object{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}")


class Sam3VideoTracker(_StreamingTracker):
    """SAM 3 video: every instance of the concepts a text prompt names, found and tracked.

    SAM 3 runs its detector on every frame, matches detections to the objects it tracks and starts
    tracking the new ones itself; this class bounds its memory bank and per-frame bookkeeping as
    :class:`Sam2VideoTracker` does, and caps the number of objects.

    Args:
        prompts: a prompt ("people and bicycles") or several; each is split into concepts, and every
            concept is looked for on every frame.
        weights: weights spec of a ``sam3_video`` checkpoint (default :attr:`DEFAULT_WEIGHTS`).
        device, dtype, memory_frames, keep_history, offload, forget_after, name: as for
            :class:`Sam2VideoTracker`. SAM 3 re-conditions objects on confident detections (every 16th
            frame); only the ``max_cond_frame_num`` (4) most recent conditioning frames are kept, the
            ones its memory attention selects.
        max_objects: most objects tracked at once (SAM 3's ``max_num_objects``).
        score_threshold: report an object when its tracker score is at least this.

    Raises:
        MissingDependencyError, BackendUnavailable, ConfigError: as :class:`Sam2VideoTracker`.
        QueryError: for a prompt that names nothing.

    Example:
        >>> tracker = Sam3VideoTracker("people and bicycles")     # doctest: +SKIP
        >>> det = tracker.update(frame)                           # doctest: +SKIP
    """

    DEFAULT_WEIGHTS: ClassVar[str] = "hf:facebook/sam3"
    _DEFAULT_NAME: ClassVar[str] = "sam3"
    _LAYOUT: ClassVar[tuple[str, ...]] = _SESSION_ATTRIBUTES + _SAM3_ATTRIBUTES

    def __init__(
        self,
        prompts: str | Sequence[str],
        *,
        weights: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_objects: int = 32,
        forget_after: int | None = None,
        memory_frames: int | None = None,
        keep_history: bool = False,
        offload: bool = False,
        score_threshold: float = 0.0,
        name: str | None = None,
    ) -> None:
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError(f"prompts must be a string or strings, got {prompts!r:.80}")
        self._concepts = list(dict.fromkeys(c for t in texts for c in split_concepts(t)))
        _check_unit(score_threshold, "score_threshold")
        self._score_threshold = float(score_threshold)
        super().__init__(
            weights=weights,
            device=device,
            dtype=dtype,
            memory_frames=memory_frames,
            keep_history=keep_history,
            offload=offload,
            max_objects=max_objects,
            forget_after=forget_after,
            name=name,
        )
        self._model.max_num_objects = self._max_objects  # read on every frame by the planning phase
        self._processor.add_text_prompt(self._session, self._concepts)
        self._provenance.update(prompt=texts[0] if len(texts) == 1 else texts, concepts=self._concepts)

    def __repr__(self) -> str:
        p = self._provenance
        return (
            f"Sam3VideoTracker({self._concepts!r}, weights={p['weights']!r}, device={p['device']!r}, "
            f"memory_frames={self._memory_frames})"
        )

    def _classes(self, weights: str, model_type: str) -> tuple[str, str]:
        if model_type != "sam3_video":
            raise BackendUnavailable(_wrong_type(self.name, weights, model_type, ("sam3_video",)))
        return "Sam3VideoModel", "Sam3VideoProcessor"

    def _memory_config(self) -> Any:
        return self._model.tracker_model.config

    def update(self, frame: Frame) -> Detections:
        """Find and track every instance in ``frame``.

        Args:
            frame: the next frame of the stream (all of one size).

        Returns:
            The instances shown in the frame (SAM 3 hides empty and suppressed ones), by track id:
            ``masks`` ``(N, H, W)`` bool, ``xyxy`` their boxes, ``scores`` the tracker's score (the
            detection score on an object's first frame), ``labels`` the concept,
            ``attributes["detection_score"]``. ``meta`` as :meth:`Sam2VideoTracker.update`.

        Raises:
            InputError: for a frame that is not a :class:`Frame` of RGB pixels, or of another size.
        """
        image = self._check_frame(frame)
        h, w = image.shape[:2]
        step = self._step
        with torch.inference_mode():
            inputs = self._processor(images=image, return_tensors="pt", input_data_format="channels_last")
            out = self._model(
                inference_session=self._session, frame=inputs["pixel_values"][0], frame_idx=step
            )
            post = self._processor.postprocess_outputs(self._session, out, original_sizes=[[h, w]])
        ids = [int(i) for i in post["object_ids"].tolist()]
        tracker_scores = out.obj_id_to_tracker_score or {}
        det_scores = out.obj_id_to_score or {}
        scores = np.array([tracker_scores.get(i, det_scores.get(i, 0.0)) for i in ids], np.float32).clip(0, 1)
        s = self._session
        labels = np.array([s.prompts[s.obj_id_to_prompt_id[i]] for i in ids], dtype=np.str_)
        masks: BoolArray = post["masks"].cpu().numpy().astype(bool).reshape(len(ids), h, w)
        for oid in ids:
            self._last_seen[oid] = step
        for oid in s.obj_ids:
            self._last_seen.setdefault(oid, step)
        self._prune(step)
        self._prune_sam3(step)
        self._step += 1
        gone = self._forget(step)
        for oid in gone:
            s.remove_object(oid)
            self._last_seen.pop(oid, None)
        if gone:
            _drop_object_records(s)
        keep = scores >= self._score_threshold
        return Detections(
            xyxy=mask_to_xyxy(masks)[keep],
            image_size=(h, w),
            labels=labels[keep],
            scores=scores[keep],
            masks=masks[keep],
            track_ids=np.array(ids, np.int64)[keep],
            attributes={"detection_score": np.array([det_scores.get(i, 0.0) for i in ids], np.float32)[keep]},
            meta=self._meta(frame, []),
        )

    def _prune_sam3(self, step: int) -> None:
        """SAM 3's per-frame bookkeeping, deep-copied on every frame by transformers (so its cost
        grows with the video too): keep the current frame's entries, and of the unmatched and overlap
        frame lists (only their lengths count, and only outside streaming) the last few."""
        if self._keep_history:
            return
        s, m = self._session, self._model
        for attr in ("obj_id_to_tracker_score_frame_wise", "suppressed_obj_ids"):
            _drop_before(getattr(s, attr), step)
        for attr, limit in (
            ("unmatched_frame_inds", int(m.hotstart_unmatch_thresh)),
            ("overlap_pair_to_frame_inds", int(m.hotstart_dup_thresh)),
        ):
            for frames in getattr(s, attr).values():
                del frames[: max(len(frames) - limit, 0)]


def measure_memory(
    tracker: Sam2VideoTracker | Sam3VideoTracker,
    frames: Sequence[UInt8Array],
    checkpoints: Iterable[int] = (1000, 10000),
) -> dict[str, Any]:
    """Run ``tracker`` on ``frames`` looped until the last checkpoint, recording resident memory.

    Args:
        tracker: a tracker with its objects set up (prompted, or with a ``detect`` callback).
        frames: ``(H, W, 3)`` uint8 RGB frames of one size, played in a loop.
        checkpoints: frame counts (1-based) at which to record, e.g. ``(1000, 10000)``.

    Returns:
        ``{"rss_mb": {n: MB}, "session": {n: SessionStats}, "seconds": {n: s}, "frames": last}``:
        the process's resident set size after frame ``n`` (after a garbage collection), what the
        session holds then, and the seconds since the start.

    Raises:
        ConfigError: for no frames or no positive checkpoints.
    """
    import gc

    marks = sorted({int(n) for n in checkpoints if int(n) > 0})
    if not frames or not marks:
        raise ConfigError("measure_memory needs frames and at least one positive checkpoint")
    rss: dict[int, float] = {}
    stats: dict[int, SessionStats] = {}
    seconds: dict[int, float] = {}
    start = time.perf_counter()
    for n in range(1, marks[-1] + 1):
        image = frames[(n - 1) % len(frames)]
        tracker.update(Frame(index=n - 1, time=(n - 1) / 30.0, image=image))
        if n in marks:
            gc.collect()
            rss[n] = _rss_bytes() / 2**20
            stats[n] = tracker.session_stats()
            seconds[n] = time.perf_counter() - start
    return {"rss_mb": rss, "session": stats, "seconds": seconds, "frames": marks[-1]}


def _rss_bytes() -> int:
    """Resident set size of this process: psutil when installed, else Linux's /proc."""
    try:
        import psutil
    except ImportError:
        statm = Path("/proc/self/statm")
        if not statm.is_file():
            raise MissingDependencyError(
                "measure_memory needs psutil on this system: pip install psutil"
            ) from None
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def _model_type(weights: str, name: str) -> str:
    """The ``model_type`` in a checkpoint's config.json, which picks the model class."""
    folder = resolve_weights(weights, purpose=f"video tracker {name!r}")
    config = folder / "config.json"
    if not config.is_file():
        raise BackendUnavailable(
            f"video tracker {name!r}: weights {weights!r} resolve to {folder}, which has no config.json; "
            "point it at a folder saved with save_pretrained (or a Hub id)"
        )
    try:
        return str(json.loads(config.read_text()).get("model_type", "?"))
    except (ValueError, AttributeError):
        raise BackendUnavailable(f"video tracker {name!r}: {config} is not a JSON object") from None


def _wrong_type(name: str, weights: str, model_type: str, expected: tuple[str, ...]) -> str:
    want = " or ".join(repr(t) for t in expected)
    hint = ""
    if model_type in _VIDEO_KIND:
        hint = f" ({model_type!r} is an image-only checkpoint, without the memory modules tracking needs)"
    elif model_type in _VIDEO_KIND.values():
        hint = f"; a {model_type!r} checkpoint tracks with the other tracker class"
    return f"video tracker {name!r}: weights {weights!r} hold a {model_type!r} checkpoint, not {want}{hint}"


def _check_layout(session: Any, attributes: Sequence[str], name: str) -> None:
    """Refuse a session whose internals are not those :meth:`_StreamingTracker._prune` prunes."""
    missing = [a for a in attributes if not hasattr(session, a)]
    if not missing and not isinstance(session.processed_frames, (dict, type(None))):
        missing = ["processed_frames as a dict"]
    if missing:
        import transformers

        raise BackendUnavailable(
            f"video tracker {name!r}: transformers {transformers.__version__}'s "
            f"{type(session).__name__} lacks {', '.join(missing)}, which bounding its memory needs "
            f"(checked with transformers {_TESTED_TRANSFORMERS}); install that version: "
            f"pip install 'transformers=={_TESTED_TRANSFORMERS}'"
        )


class _FrameStore(dict):  # type: ignore[type-arg]
    """The session's preprocessed frames, keeping only those put in since the last prune, but with
    the length of the whole stream: SAM 3 runs its tracker outside streaming mode, where
    ``len(processed_frames)`` (``num_frames``) bounds the object pointers it reads back."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def __setitem__(self, frame_idx: int, pixels: Any) -> None:
        super().__setitem__(frame_idx, pixels)
        self.seen = max(self.seen, int(frame_idx) + 1)

    def __len__(self) -> int:
        return self.seen


def _remove_objects(session: Any, obj_ids: Sequence[int]) -> None:
    """Remove objects from a SAM 2 / EdgeTAM session, renumbering the others' indices (as SAM 3's
    ``remove_object`` does; the SAM 2 session has no such method)."""
    gone = set(obj_ids)
    keep = [oid for oid in session.obj_ids if oid not in gone]
    old = {oid: session._obj_id_to_idx[oid] for oid in keep}
    for attr in (
        "point_inputs_per_obj",
        "mask_inputs_per_obj",
        "output_dict_per_obj",
        "frames_tracked_per_obj",
    ):
        table = getattr(session, attr)
        setattr(session, attr, {new: table[old[oid]] for new, oid in enumerate(keep)})
    session._obj_id_to_idx = OrderedDict((oid, i) for i, oid in enumerate(keep))
    session._obj_idx_to_id = OrderedDict((i, oid) for i, oid in enumerate(keep))
    session.obj_ids = keep
    session.obj_with_new_inputs = [oid for oid in session.obj_with_new_inputs if oid not in gone]


def _drop_object_records(session: Any) -> None:
    """Drop SAM 3's per-object records of objects no longer in the session."""
    alive = set(session.obj_ids)
    for attr in ("obj_id_to_score", "obj_id_to_last_occluded", "trk_keep_alive", "obj_first_frame_idx"):
        table = getattr(session, attr)
        for oid in [k for k in table if k not in alive]:
            del table[oid]
    for oid in [k for k in session.unmatched_frame_inds if k not in alive]:
        del session.unmatched_frame_inds[oid]
    pairs = session.overlap_pair_to_frame_inds
    for pair in [p for p in pairs if not set(p) <= alive]:
        del pairs[pair]
    session.removed_obj_ids &= alive


def _drop_before(per_frame: dict[int, Any], step: int) -> None:
    for t in [t for t in per_frame if t < step]:
        del per_frame[t]


def _collect_tensors(value: Any, seen: dict[int, int], depth: int) -> None:
    """Every tensor reachable through mappings, sequences and the session's cache object."""
    if depth > 8:
        return
    if isinstance(value, torch.Tensor):
        seen[id(value)] = value.element_size() * value.nelement()
    elif isinstance(value, Mapping):
        for v in value.values():
            _collect_tensors(v, seen, depth + 1)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            _collect_tensors(v, seen, depth + 1)
    elif hasattr(value, "_vision_features"):  # the session's feature cache
        _collect_tensors(vars(value), seen, depth + 1)


def _empty(size: ImageSize, meta: dict[str, Any]) -> Detections:
    return Detections.empty(size, with_masks=True).replace(
        track_ids=np.zeros(0, np.int64), attributes={"visible": np.zeros(0, bool)}, meta=meta
    )


def _check_count(value: Any, name: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_unit(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
