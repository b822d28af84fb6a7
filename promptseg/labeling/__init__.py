"""A labelling project: draft every image of a folder with a prompt, resumably, then review the drafts.

State lives in one SQLite file, ``PROJ/project.db`` (WAL mode; drafting writes from its parent process
only, and the review page and the Label Studio import write one decision per transaction):

- ``images``: one row per image file (``path`` relative to the image folder, POSIX separators), with
  ``status`` ``pending`` | ``done`` | ``failed``, the failure reason, and once drafted its ``sha256``,
  ``width``, ``height``, ``seconds`` and ``drafted_at``.
- ``annotations``: one row per object: ``label``, ``score``, ``box_xyxy`` (JSON ``[x1, y1, x2, y2]``,
  absolute pixels), ``mask_rle`` (JSON COCO RLE from :func:`promptseg.ops.masks.to_rle`), ``source``
  ``model`` | ``human``, provenance (``model``, ``backend``, ``prompt``), and the review state
  ``accepted`` | ``rejected`` | ``pending`` with ``decided_by`` / ``decided_at``.
- ``decisions``: every change made after drafting (who, when, which field, old -> new).
- ``settings`` (key -> JSON value: prompt, backend, accept, reject, root) and ``schema_version``.

Crash safety: an image's annotations and its ``done`` mark are written in one transaction, and
:meth:`Project.record_result` refuses an image that is already done, so killing a run at any moment
never leaves half an image, and a rerun drafts exactly the images that are not done (failed ones are
retried: a failure may have been transient).

Review routing: a model draft with ``score >= accept`` is accepted and one with ``score < reject`` is
rejected (``decided_by = "auto:threshold"``); the rest wait in :meth:`Project.queue`, least confident
first. :meth:`Project.set_thresholds` re-routes model drafts that no human has decided.

:func:`label` runs the drafting: with ``workers >= 2`` a process pool (the backend loaded once per worker
by the pool initializer), with ``workers=1`` in this process; results are written by this process only.
Processes beat threads for the offline backend (measured on 2 cores: 2 processes with one onnxruntime
thread each ~20.7 images/s, 2 threads sharing one backend ~16.4, a plain loop ~16.4), because the
prompt resolution and mask refinement after the detector hold the GIL.

Reviewing: :mod:`promptseg.labeling.review` (``promptseg review``, a browser page) and
:mod:`promptseg.labeling.labelstudio` (``promptseg labelstudio``: tasks with the drafts as predictions
and the labeling config, a Label Studio JSON export applied back as reviews, and an ML backend).
"""

from promptseg.labeling._project import IMAGE_SUFFIXES, Annotation, Project
from promptseg.labeling._run import LabelSummary, label, run_label

__all__ = ["IMAGE_SUFFIXES", "Annotation", "LabelSummary", "Project", "label", "run_label"]
