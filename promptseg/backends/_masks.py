"""Box to mask, for backends that find boxes: a refiner, a SAM-family model, or no masks at all.

A text-to-box detector (OWLv2, Grounding DINO, Florence-2, the offline COCO detector) names a
:class:`Masker` by one string, ``masks=``:

- ``"color"``, ``"grabcut"``, ``"u2net"``, ``"ellipse"``, ``"box"``: a :mod:`promptseg.refine` refiner
  draws each mask inside its box (milliseconds a box; see that module's table).
- ``"sam"``, ``"sam2"``, ``"edgetam"`` (any registered backend taking box and point prompts): that
  model, prompted with the boxes (one image encoding, then a cheap decoder pass).
- ``"none"``: boxes only.

The masker also answers box (and, with a SAM-family model, point) prompts on its own
(:meth:`Masker.predict`), so the detector that owns it can refine an answer in a
:class:`~promptseg.session.Session`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np

from promptseg.backends.base import Promptable
from promptseg.backends.prompts import visual_prompts
from promptseg.backends.registry import get_spec, list_backends, load_backend
from promptseg.errors import ConfigError, InputError, UnknownBackendError
from promptseg.image import check_rgb
from promptseg.refine import BoxRefiner, list_refiners, load_refiner
from promptseg.types import BoolArray, Detections, FloatArray, UInt8Array
from promptseg.weights import resolve_weights

__all__ = ["DEFAULT_U2NET_WEIGHTS", "NO_MASKS", "Masker", "load_masker"]

NO_MASKS = "none"
"""The ``masks`` value that asks for boxes only."""

DEFAULT_U2NET_WEIGHTS = "u2net/u2net.onnx"
"""Weights of the ``"u2net"`` refiner when ``mask_weights`` is not given (under ``$PROMPTSEG_MODELS``)."""


class Masker:
    """One box-to-mask method, built by :func:`load_masker`.

    Attributes:
        method: the ``masks`` value it was built from (``"color"``, ``"sam2"``, ``"none"``).
        provenance: facts for ``meta``: ``mask_method``, and ``mask_weights`` / ``mask_model`` when a
            model draws the masks.
    """

    def __init__(
        self,
        method: str,
        *,
        refiner: BoxRefiner | None = None,
        model: Promptable | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self._refiner = refiner
        self._model = model
        self.provenance: dict[str, Any] = {"mask_method": method, **(provenance or {})}

    @property
    def draws_masks(self) -> bool:
        """False for ``masks="none"``."""
        return self._refiner is not None or self._model is not None

    @property
    def takes_points(self) -> bool:
        """Whether :meth:`predict` takes point prompts (a SAM-family model does, refiners do not)."""
        return self._model is not None and "points" in self._model.capabilities

    def masks(
        self, image: UInt8Array, xyxy: FloatArray, labels: Sequence[str]
    ) -> tuple[BoolArray | None, FloatArray | None]:
        """Masks of the objects in the boxes.

        Args:
            image: ``(H, W, 3)`` uint8 RGB (already checked).
            xyxy: ``(N, 4)`` float32 boxes in the image's pixels, inside the image.
            labels: ``(N,)`` labels, passed to the model so its answer reads well.

        Returns:
            ``(masks, mask_scores)``: ``(N, H, W)`` bool masks, or None for ``"none"``; and ``(N,)``
            float32 scores when a model rates its own masks (SAM's predicted IoU), else None.

        Raises:
            InputError: when the model answers with a different number of masks than boxes.
        """
        h, w = image.shape[:2]
        if not self.draws_masks:
            return None, None
        if len(xyxy) == 0:
            return np.zeros((0, h, w), bool), (None if self._model is None else np.zeros(0, np.float32))
        if self._refiner is not None:
            return self._refiner.refine(image, xyxy), None
        assert self._model is not None  # draws_masks: a refiner or a model
        det = self._model.predict(image, boxes=xyxy, labels=list(labels))
        if det.masks is None or len(det) != len(xyxy):
            raise InputError(
                f"mask model {self.method!r} answered {len(det)} instances "
                f"({'with' if det.masks is not None else 'without'} masks) for {len(xyxy)} boxes"
            )
        return det.masks, det.scores

    def predict(
        self,
        image: UInt8Array,
        *,
        boxes: Any = None,
        points: Any = None,
        point_labels: Any = None,
        labels: Any = None,
        owner: str = "this backend",
    ) -> Detections:
        """One mask per visual prompt (see :class:`~promptseg.backends.base.Promptable`).

        A SAM-family model answers boxes and points; a refiner answers boxes only, drawing each mask
        inside its box.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            boxes: ``(N, 4)`` xyxy pixels.
            points: ``(N, K, 2)`` xy pixels (SAM-family models only).
            point_labels: ``(N, K)`` 1 = on the object, 0 = not on it.
            labels: one label, or ``(N,)`` labels (default ``"object"``).
            owner: the backend's name, for messages.

        Raises:
            ConfigError: for ``masks="none"``, or point prompts to a refiner.
            InputError: for prompts :func:`~promptseg.backends.prompts.visual_prompts` refuses.
        """
        image = check_rgb(image, purpose=f"backend {owner!r}")
        if not self.draws_masks:
            raise ConfigError(f"backend {owner!r} was built with masks='none', so it draws no masks")
        if self._model is not None:
            return self._model.predict(
                image, boxes=boxes, points=points, point_labels=point_labels, labels=labels
            )
        if points is not None or point_labels is not None:
            raise ConfigError(
                f"backend {owner!r} draws masks with the {self.method!r} refiner, which takes box prompts "
                "only; build it with masks='sam' (or 'sam2', 'edgetam') for point prompts"
            )
        prompts = visual_prompts(image.shape[:2], boxes=boxes, labels=labels)
        assert prompts.boxes is not None  # visual_prompts guarantees boxes when no points are given
        masks, _ = self.masks(image, prompts.boxes, prompts.labels.tolist())
        reasons = np.array(
            [f"{self.method} mask drawn inside the box prompt {_box_text(b)}" for b in prompts.boxes], np.str_
        )
        return Detections(
            xyxy=prompts.boxes,
            image_size=(int(image.shape[0]), int(image.shape[1])),
            labels=prompts.labels,
            masks=masks,
            attributes={"reason": reasons},
            meta={**self.provenance, "prompt": f"{len(prompts)} box prompt(s)", "notes": []},
        )


def load_masker(
    method: str,
    *,
    weights: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    owner: str = "this backend",
) -> Masker:
    """Build the box-to-mask method named by ``masks=``.

    Args:
        method: a refiner name (:func:`promptseg.refine.list_refiners`), ``"none"``, or the registry
            name of a backend that takes box prompts (``"sam"``, ``"sam2"``, ``"edgetam"``).
        weights: weights spec for ``"u2net"`` (default :data:`DEFAULT_U2NET_WEIGHTS`) or for the
            model (default: its registry default); refused for methods that take none.
        device: the model's device (as the detector's); refiners run on the CPU.
        dtype: the model's dtype.
        owner: the name of the backend that owns the masker, for messages.

    Raises:
        ConfigError: for an unknown method (the message lists the valid ones), weights given to a
            method that takes none, or a backend that cannot take box prompts.
        BackendUnavailable: when the model's or U²-Net's weights or packages are missing.
    """
    if not isinstance(method, str):
        raise ConfigError(f"masks must be a string such as 'color', 'sam' or 'none', got {method!r}")
    if method == NO_MASKS or method in list_refiners():
        if weights is not None and method != "u2net":
            raise ConfigError(
                f"mask_weights is only used by masks='u2net' or a mask model, not masks={method!r}"
            )
        if method == NO_MASKS:
            return Masker(method)
        if method == "u2net":
            spec = weights or DEFAULT_U2NET_WEIGHTS
            path = resolve_weights(spec, purpose=f"backend {owner!r} (u2net masks)")
            return Masker(
                method, refiner=load_refiner(method, weights=path), provenance={"mask_weights": spec}
            )
        return Masker(method, refiner=load_refiner(method))
    models = [n for n in list_backends() if {"boxes", "points"} <= get_spec(n).capabilities]
    if method not in models:
        choices = (
            f"a refiner ({', '.join(list_refiners())}), a mask model ({', '.join(models)}) or {NO_MASKS!r}"
        )
        try:
            get_spec(method)
        except UnknownBackendError:
            close = difflib.get_close_matches(method, [*list_refiners(), *models, NO_MASKS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown masks method {method!r}{hint}; use {choices}") from None
        raise ConfigError(
            f"masks={method!r}: backend {method!r} is not a box-and-point mask model; use {choices}"
        )
    model = load_backend(method, weights=weights, device=device, dtype=dtype)
    if not isinstance(model, Promptable):
        raise ConfigError(f"masks={method!r}: backend {method!r} has no predict(image, boxes=...) method")
    return Masker(
        method, model=model, provenance={"mask_weights": weights or get_spec(method).weights.get("model")}
    )


def _box_text(box: Any) -> str:
    return "[" + ", ".join(f"{float(v):.0f}" for v in box) + "]"
