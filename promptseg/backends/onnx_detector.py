"""Closed-vocabulary ONNX detectors (COCO-80): PP-PicoDet and YOLOX, run with onnxruntime.

Each detector turns an RGB image into candidate boxes with a score per class; the caller chooses
which classes it wants, so a box whose best class is "cup" can still answer a prompt for "bottle"
when its bottle score is high enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from promptseg.errors import BackendUnavailable
from promptseg.image import check_rgb
from promptseg.ops.boxes import clip_xyxy
from promptseg.ops.nms import nms
from promptseg.types import FloatArray, IntArray, UInt8Array

__all__ = ["DETECTORS", "DetectorConfig", "OnnxDetector", "RawDetections", "select_classes"]


@dataclass(frozen=True)
class DetectorConfig:
    """What it takes to run and decode one detector: preprocessing and licence facts as data.

    Attributes:
        name: short name ("picodet-s").
        weights: default weights spec (see :mod:`promptseg.weights`).
        head: output layout, ``"picodet"`` (GFL heads with DFL boxes) or ``"yolox"``.
        input_size: square network input side in pixels.
        strides: feature strides of the heads, finest first.
        letterbox: keep the aspect ratio and pad (YOLOX) instead of stretching (PicoDet).
        bgr: feed BGR channels instead of RGB.
        mean, std: per-channel normalisation of 0-255 values, in the fed channel order.
        interpolation: cv2 interpolation flag used by the model's training pipeline.
        reg_max: DFL bins per box side minus one (PicoDet).
        license: the weights' licence.
        source: where the weights come from.
    """

    name: str
    weights: str
    head: Literal["picodet", "yolox"]
    input_size: int
    strides: tuple[int, ...]
    letterbox: bool
    bgr: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: int
    reg_max: int = 0
    license: str = ""
    source: str = ""


DETECTORS: dict[str, DetectorConfig] = {
    "picodet-s": DetectorConfig(
        name="picodet-s",
        weights="picodet-s-coco/picodet_s_416_coco.onnx",
        head="picodet",
        input_size=416,
        strides=(8, 16, 32, 64),
        letterbox=False,
        bgr=False,
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375),
        interpolation=cv2.INTER_CUBIC,  # PaddleDetection's eval Resize uses interp=2
        reg_max=7,
        license="Apache-2.0",
        source="PaddleDetection PP-PicoDet-S 416 (via github.com/hpc203/picodet-onnxruntime)",
    ),
    "yolox-nano": DetectorConfig(
        name="yolox-nano",
        weights="yolox-nano-coco/yolox_nano.onnx",
        head="yolox",
        input_size=416,
        strides=(8, 16, 32),
        letterbox=True,
        bgr=True,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        interpolation=cv2.INTER_LINEAR,
        license="Apache-2.0",
        source="Megvii YOLOX-Nano (via github.com/skpawar1305/rs_yolox)",
    ),
}

_YOLOX_PAD = 114.0


@dataclass(frozen=True)
class RawDetections:
    """Decoded detector output in image pixels, after NMS.

    Attributes:
        xyxy: ``(K, 4)`` float32 boxes, image pixels.
        scores: ``(K,)`` float32 scores of ``class_ids``.
        class_ids: ``(K,)`` int64 indices into the detector's class list.
    """

    xyxy: FloatArray
    scores: FloatArray
    class_ids: IntArray


class OnnxDetector:
    """A COCO-80 ONNX detector.

    Args:
        model_path: the ``.onnx`` file.
        config: how to feed and decode it (one of :data:`DETECTORS`).
        threads: onnxruntime intra-op threads (None: onnxruntime's default, all cores).

    Raises:
        BackendUnavailable: when the file is not a model this config can run.
    """

    def __init__(self, model_path: str | Path, config: DetectorConfig, *, threads: int | None = None) -> None:
        self.config = config
        options = ort.SessionOptions()
        options.log_severity_level = 3  # PicoDet's export has initialisers in its inputs: silence that
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors: translate here
            raise BackendUnavailable(
                f"cannot load the {config.name} detector from {model_path}: {_first_line(exc)}"
            ) from None
        inputs = self._session.get_inputs()
        self._input_name = inputs[0].name
        expected = [1, 3, config.input_size, config.input_size]
        if list(inputs[0].shape) != expected:
            raise BackendUnavailable(
                f"{model_path} takes input {inputs[0].shape}, but the {config.name} config expects {expected}"
            )
        self._anchors = _anchor_points(config.input_size, config.strides, config.head)

    def preprocess(self, image: UInt8Array) -> tuple[NDArray[np.float32], tuple[float, float]]:
        """Resize and normalise an ``(H, W, 3)`` RGB uint8 image into a ``(1, 3, S, S)`` float32 batch.

        Returns:
            The batch and ``(sx, sy)``, the factors that map network pixels back to image pixels.
        """
        image = check_rgb(image, purpose=f"the {self.config.name} detector")
        c = self.config
        h, w = image.shape[:2]
        s = c.input_size
        src = image[:, :, ::-1] if c.bgr else image
        canvas: NDArray[np.float32]
        if c.letterbox:
            r = min(s / h, s / w)
            nh, nw = max(1, round(h * r)), max(1, round(w * r))
            canvas = np.full((s, s, 3), _YOLOX_PAD, np.float32)
            canvas[:nh, :nw] = cv2.resize(np.ascontiguousarray(src), (nw, nh), interpolation=c.interpolation)
            scale = (w / nw, h / nh)
        else:
            canvas = cv2.resize(np.ascontiguousarray(src), (s, s), interpolation=c.interpolation).astype(
                np.float32
            )
            scale = (w / s, h / s)
        if c.mean != (0.0, 0.0, 0.0) or c.std != (1.0, 1.0, 1.0):
            canvas = ((canvas - np.asarray(c.mean, np.float32)) / np.asarray(c.std, np.float32)).astype(
                np.float32, copy=False
            )
        return canvas.transpose(2, 0, 1)[None].astype(np.float32, copy=False), scale

    def candidates(self, image: UInt8Array) -> tuple[FloatArray, NDArray[np.float32]]:
        """Every anchor's box and class scores, before thresholding and NMS.

        Returns:
            ``(A, 4)`` float32 xyxy boxes in image pixels (clipped) and ``(A, C)`` float32 scores in [0, 1].
        """
        batch, (sx, sy) = self.preprocess(image)
        outputs = self._session.run(None, {self._input_name: batch})
        if self.config.head == "picodet":
            xyxy, scores = _decode_picodet(outputs, self._anchors, self.config)
        else:
            xyxy, scores = _decode_yolox(outputs[0][0], self._anchors, self.config.strides)
        xyxy = xyxy * np.array([sx, sy, sx, sy], np.float32)
        return clip_xyxy(xyxy, image.shape[:2]), scores

    def detect(
        self,
        image: UInt8Array,
        *,
        class_ids: Sequence[int] | None = None,
        threshold: float = 0.35,
        iou_threshold: float = 0.6,
        max_detections: int = 100,
    ) -> RawDetections:
        """Detect objects of the given classes.

        A candidate box yields one detection per requested class whose score reaches ``threshold``
        (not only for its best class); NMS then runs per class.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            class_ids: the classes wanted (None: all).
            threshold: minimum class score.
            iou_threshold: NMS IoU above which the lower-scoring box of the same class is dropped.
            max_detections: keep at most this many, by score.
        """
        xyxy, scores = self.candidates(image)
        return select_classes(
            xyxy,
            scores,
            class_ids,
            threshold=threshold,
            iou_threshold=iou_threshold,
            max_detections=max_detections,
        )


def select_classes(
    xyxy: FloatArray,
    scores: NDArray[np.float32],
    class_ids: Sequence[int] | None,
    *,
    threshold: float = 0.35,
    iou_threshold: float = 0.6,
    max_detections: int = 100,
) -> RawDetections:
    """Threshold and NMS over candidates from :meth:`OnnxDetector.candidates`.

    Args:
        xyxy: ``(A, 4)`` candidate boxes.
        scores: ``(A, C)`` class scores.
        class_ids: the classes wanted (None: all).
        threshold, iou_threshold, max_detections: as in :meth:`OnnxDetector.detect`.
    """
    wanted = np.arange(scores.shape[1]) if class_ids is None else np.asarray(list(class_ids), np.int64)
    if wanted.size == 0:
        return RawDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    sub = scores[:, wanted]
    rows, cols = np.nonzero(sub >= threshold)
    boxes, confs, cls = xyxy[rows], sub[rows, cols], wanted[cols]
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, confs, cls = boxes[valid], confs[valid], cls[valid]
    keep = nms(boxes, confs, iou_threshold=iou_threshold, class_ids=cls)[:max_detections]
    return RawDetections(boxes[keep], confs[keep].astype(np.float32), cls[keep].astype(np.int64))


def _anchor_points(size: int, strides: tuple[int, ...], head: str) -> list[NDArray[np.float32]]:
    points = []
    for stride in strides:
        n = -(-size // stride)  # PicoDet's stride-64 map is ceil(416 / 64) = 7 wide
        ys, xs = np.mgrid[0:n, 0:n]
        # PicoDet measures distances from cell centres; YOLOX adds offsets to the cell's corner.
        offset = 0.5 if head == "picodet" else 0.0
        points.append(np.stack([xs.ravel() + offset, ys.ravel() + offset], axis=1).astype(np.float32))
    return points


def _decode_picodet(
    outputs: list[Any], anchors: list[NDArray[np.float32]], config: DetectorConfig
) -> tuple[FloatArray, NDArray[np.float32]]:
    levels = len(config.strides)
    bins = np.arange(config.reg_max + 1, dtype=np.float32)
    boxes, scores = [], []
    for i, stride in enumerate(config.strides):
        cls = np.asarray(outputs[i][0], np.float32)  # (A, 80), sigmoid already applied
        reg = np.asarray(outputs[levels + i][0], np.float32).reshape(-1, 4, config.reg_max + 1)
        reg = np.exp(reg - reg.max(axis=2, keepdims=True))
        dist = (reg / reg.sum(axis=2, keepdims=True)) @ bins * stride  # (A, 4): left, top, right, bottom
        centre = anchors[i] * stride
        boxes.append(np.concatenate([centre - dist[:, :2], centre + dist[:, 2:]], axis=1))
        scores.append(cls)
    return np.concatenate(boxes).astype(np.float32), np.concatenate(scores)


def _decode_yolox(
    raw: NDArray[np.float32], anchors: list[NDArray[np.float32]], strides: tuple[int, ...]
) -> tuple[FloatArray, NDArray[np.float32]]:
    per_anchor = np.concatenate(
        [np.full(len(a), s, np.float32) for a, s in zip(anchors, strides, strict=True)]
    )[:, None]
    grid = np.concatenate(anchors)
    centre = (raw[:, :2] + grid) * per_anchor
    half = np.exp(raw[:, 2:4]) * per_anchor / 2
    xyxy = np.concatenate([centre - half, centre + half], axis=1)
    scores = raw[:, 4:5] * raw[:, 5:]  # objectness x class, both already sigmoid
    return xyxy.astype(np.float32), scores.astype(np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
