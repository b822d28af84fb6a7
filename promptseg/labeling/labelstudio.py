"""Label Studio both ways: export a project's drafts as pre-annotated tasks, import the reviews back,
and serve promptseg as a Label Studio ML backend.

Export (:func:`export_tasks`) writes ``tasks.json`` and ``config.xml``. Each done image is one task::

    {"data": {"image": <image_prefix + path>, "promptseg_image": <path>, "promptseg_ids": [ids]},
     "predictions": [{"model_version": ..., "score": <mean>, "result": [...]}]}

Region ids: the rectangle of project annotation ``N`` has result id ``psN`` and its mask ``psNm``
(polygon parts after the first ``psNm1``, ``psNm2``...), so a region the person kept, moved or relabelled
maps back to annotation ``N``, and its rectangle and mask pair up. Label Studio keeps region ids when a
region is edited and gives new regions random ids. ``promptseg_ids`` lists the annotations offered in the
task: Label Studio's JSON export gives ``predictions`` as ids only, so the offer travels in ``data``.

Import (:func:`import_reviews`) reads a Label Studio JSON export. Per task, the latest non-cancelled
annotation is the person's review: a region ``psN`` accepts annotation ``N`` with its label, box (from
the rectangle; from the mask when only the mask is left) and mask (when a mask region is present; else
the stored mask stays); an offered annotation with no region left is rejected; any other region is a new
``human`` annotation that keeps the region's Label Studio id (``external_id = "<who_prefix>:<id>"``), so a
later export of the same Label Studio project corrects it, or rejects it if the person deleted it,
instead of adding it again. Tasks without an annotation are left alone. Re-importing the same export
changes nothing: unchanged decisions by the same person are skipped.

The ML backend (:func:`create_ml_backend_app`) speaks Label Studio's protocol (``label_studio/ml/
api_connector.py``): ``GET /health``; ``POST /setup`` with ``{"project", "schema", "hostname",
"access_token", "extra_params"}`` answered by ``{"model_version"}``; ``POST /predict`` with ``{"tasks":
[task], "label_config", "project", "params"}`` answered by ``{"results": [{"result", "score",
"model_version"}]}``, one per task, in order.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from xml.sax.saxutils import quoteattr

import numpy as np

from promptseg.datasets.exports import _load_json, _write_json
from promptseg.datasets.labelstudio import read_region, region_results
from promptseg.errors import ConfigError, FormatError, InputError
from promptseg.ops.boxes import mask_to_xyxy

if TYPE_CHECKING:  # pragma: no cover
    from promptseg.labeling._project import Annotation, Project
    from promptseg.types import BoolArray

from promptseg.labeling._ml_backend import create_ml_backend_app, run_ml_backend

__all__ = [
    "ReviewImport",
    "create_ml_backend_app",
    "export_tasks",
    "import_reviews",
    "labeling_config",
    "run_export_tasks",
    "run_import_reviews",
    "run_ml_backend",
]

BOX_NAME: Final = "label"
"""``name`` of the ``RectangleLabels`` tag (``from_name`` of the rectangles)."""
MASK_NAME: Final = "mask"
"""``name`` of the ``BrushLabels`` / ``PolygonLabels`` tag (``from_name`` of the masks)."""
IMAGE_NAME: Final = "image"
"""``name`` of the ``Image`` tag (``to_name`` of every result); its value is ``$image``."""
DEFAULT_PREFIX: Final = "/data/local-files/?d="
_REGION_ID: Final = re.compile(r"^ps(\d+)(m\d*)?$")

MaskKind = Literal["brush", "polygon"]


def labeling_config(labels: Iterable[str], *, masks: MaskKind | None = "brush") -> str:
    """Label Studio's labeling config XML for the tasks :func:`export_tasks` writes.

    An ``Image`` tag ``image`` (``$image``), a ``RectangleLabels`` tag ``label`` and, unless ``masks`` is
    None, a ``BrushLabels`` or ``PolygonLabels`` tag ``mask``, each with one ``Label`` per name.

    Example:
        >>> print(labeling_config(["cup"], masks=None))  # doctest: +NORMALIZE_WHITESPACE
        <View>
          <Image name="image" value="$image" zoom="true"/>
          <RectangleLabels name="label" toName="image">
            <Label value="cup"/>
          </RectangleLabels>
        </View>
    """
    if masks not in ("brush", "polygon", None):
        raise ConfigError(f"masks must be 'brush', 'polygon' or None, got {masks!r}")
    names = list(dict.fromkeys(str(n).strip() for n in labels if str(n).strip()))
    if not names:
        raise InputError("a labeling config needs at least one label name")
    items = "".join(f"\n    <Label value={quoteattr(n)}/>" for n in names)
    lines = [
        "<View>",
        f'  <Image name="{IMAGE_NAME}" value="$image" zoom="true"/>',
        f'  <RectangleLabels name="{BOX_NAME}" toName="{IMAGE_NAME}">{items}\n  </RectangleLabels>',
    ]
    if masks is not None:
        tag = "BrushLabels" if masks == "brush" else "PolygonLabels"
        lines.append(f'  <{tag} name="{MASK_NAME}" toName="{IMAGE_NAME}">{items}\n  </{tag}>')
    return "\n".join([*lines, "</View>"]) + "\n"


def export_tasks(
    project: Project,
    out_dir: str | os.PathLike[str],
    *,
    states: Sequence[str] = ("accepted", "pending"),
    masks: MaskKind | None = "brush",
    image_prefix: str = DEFAULT_PREFIX,
    labels: Iterable[str] = (),
) -> list[Path]:
    """Write ``out_dir/tasks.json`` (one pre-annotated task per done image) and ``out_dir/config.xml``.

    Args:
        project: the labelling project.
        out_dir: the folder to write (created).
        states: review states whose annotations are offered as ``predictions``.
        masks: how masks are offered: ``"brush"`` (exact RLE), ``"polygon"`` or None (boxes only).
        image_prefix: put before each image's relative path in ``data.image``. The default serves
            the project's image folder through Label Studio's local files: start Label Studio with
            ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
            ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<the project's image folder>``.
        labels: label names to offer besides those the project uses.

    Returns:
        ``[tasks.json, config.xml]``.

    Example:
        >>> export_tasks(Project.open("proj"), "ls")  # doctest: +SKIP
    """
    from promptseg.ops.masks import from_rle

    if masks not in ("brush", "polygon", None):
        raise ConfigError(f"masks must be 'brush', 'polygon' or None, got {masks!r}")
    dataset = project.to_dataset(states)
    by_id = {a.id: a for a in project.annotations()}
    tasks = []
    for item in dataset.items:
        results: list[dict[str, Any]] = []
        ids: list[int] = []
        scores = []
        for aid in item.detections.attributes["annotation_id"].tolist():
            ann = by_id[int(aid)]
            mask = None if ann.mask_rle is None or masks is None else from_rle(ann.mask_rle)
            results += region_results(
                ann.label,
                ann.box_xyxy,
                mask,
                (item.height, item.width),
                region_id=f"ps{ann.id}",
                mask_id=f"ps{ann.id}m",
                masks=masks,
                from_name=BOX_NAME,
                mask_from_name=MASK_NAME,
                to_name=IMAGE_NAME,
                score=1.0 if ann.score is None else ann.score,
            )
            ids.append(ann.id)
            scores.append(1.0 if ann.score is None else float(ann.score))
        data = {"image": image_prefix + item.path, "promptseg_image": item.path, "promptseg_ids": ids}
        task: dict[str, Any] = {"data": data}
        if results:
            version = _model_version(project)
            task["predictions"] = [
                {"model_version": version, "score": float(np.mean(scores)), "result": results}
            ]
        tasks.append(task)
    out = Path(out_dir)
    _write_json(out / "tasks.json", tasks)
    names = sorted({*project.labels(), *labels}) or [str(project.settings.get("prompt", "object"))]
    (out / "config.xml").write_text(labeling_config(names, masks=masks), encoding="utf-8")
    return [out / "tasks.json", out / "config.xml"]


def _model_version(project: Project) -> str:
    s = project.settings
    return f"promptseg:{s.get('backend', '?')}"


@dataclass(frozen=True)
class ReviewImport:
    """What :func:`import_reviews` did: task counts, then annotation counts by outcome."""

    tasks: int
    reviewed: int
    accepted: int
    corrected: int
    rejected: int
    added: int
    unchanged: int

    def __str__(self) -> str:
        return (
            f"{self.reviewed} of {self.tasks} tasks reviewed: {self.accepted} accepted "
            f"({self.corrected} corrected), {self.rejected} rejected, {self.added} added, "
            f"{self.unchanged} unchanged"
        )


@dataclass
class _Region:
    label: str
    box: list[float] | None = None
    mask: BoolArray | None = None


def import_reviews(
    project: Project, export_json: str | os.PathLike[str], *, who_prefix: str = "labelstudio"
) -> ReviewImport:
    """Apply a Label Studio JSON export's reviews to the project (see the module docs for the rules).

    The whole file is read and checked before anything is written, so a bad file changes nothing.
    Decisions are made by ``f"{who_prefix}:{completed_by}"`` (the annotator's email, else user id).

    Raises:
        FormatError: a file that does not parse, naming the file, task and field.
        InputError: a task for an image this project does not have, or a region that does not fit it.

    Example:
        >>> import_reviews(Project.open("proj"), "project-1-at-2026.json")  # doctest: +SKIP
    """
    path = Path(export_json)
    tasks = _load_json(path)
    if not isinstance(tasks, list):
        raise FormatError(
            f"{path}: expected a JSON list of tasks (Label Studio's JSON export), got {_kind(tasks)}"
        )
    plans = [plan for t, task in enumerate(tasks) if (plan := _plan_task(project, path, t, task, who_prefix))]
    counts = dict.fromkeys(("accepted", "corrected", "rejected", "added", "unchanged"), 0)
    for image, who, offered, regions in plans:
        current = {a.id: a for a in project.annotations(image)}
        for aid in offered:
            if aid not in regions and aid in current:
                if current[aid].review_state == "rejected" and current[aid].decided_by == who:
                    counts["unchanged"] += 1
                else:
                    project.decide(aid, "rejected", who=who)
                    counts["rejected"] += 1
        for key, region in regions.items():
            box = region.box if region.box is not None else _mask_box(region.mask)
            if isinstance(key, int):
                outcome = _accept(project, current[key], region, box, who)
                counts[outcome] += 1
                counts["accepted"] += outcome == "corrected"
            else:  # a region the person drew: found again by its Label Studio id on a later import
                external = f"{who_prefix}:{key}"
                project.add_annotation(
                    image, region.label, box, who=who, mask=region.mask, external_id=external
                )
                counts["added"] += 1
    return ReviewImport(tasks=len(tasks), reviewed=len(plans), **counts)


def _plan_task(
    project: Project, path: Path, t: int, task: Any, who_prefix: str
) -> tuple[str, str, list[int], dict[int | str, _Region]] | None:
    where = f"{path}: task {t}"
    if not isinstance(task, Mapping) or not isinstance(task.get("data"), Mapping):
        raise FormatError(f"{where}: expected an object with 'data', got {_kind(task)}")
    where = f"{path}: task {task.get('id', t)}"
    data = task["data"]
    image = data.get("promptseg_image")
    if not isinstance(image, str):
        raise FormatError(
            f"{where}: data.promptseg_image must name the project image, got {image!r:.60}; "
            "import tasks written by export_tasks"
        )
    anns = task.get("annotations") or []
    if not isinstance(anns, list) or not all(isinstance(a, Mapping) for a in anns):
        raise FormatError(f"{where}: annotations must be a list of objects")
    done = [a for a in anns if not a.get("was_cancelled")]
    if not done:
        return None
    ann = max(enumerate(done), key=lambda ia: (str(ia[1].get("updated_at") or ""), ia[0]))[1]
    try:
        row = project.image(image)
    except InputError:
        raise InputError(
            f"{where}: data.promptseg_image {image!r} is not in project {project.path}"
        ) from None
    if row["status"] != "done":
        raise InputError(f"{where}: image {image!r} is not drafted ({row['status']})")
    size = (int(row["height"]), int(row["width"]))
    known = {a.id for a in project.annotations(image)}
    offered = data.get("promptseg_ids", [])
    if not isinstance(offered, list) or not all(isinstance(i, int) for i in offered):
        raise FormatError(f"{where}: data.promptseg_ids must be a list of annotation ids")
    drawn = project.find_external(image, f"{who_prefix}:")  # regions of earlier imports, by their LS id
    offered = [i for i in offered if i in known] + [i for i in drawn.values() if i not in offered]
    results = ann.get("result")
    if not isinstance(results, list):
        raise FormatError(f"{where}: annotation {ann.get('id')} result must be a list")
    regions: dict[int | str, _Region] = {}
    for k, r in enumerate(results):
        rw = f"{where}: annotation {ann.get('id')} result[{k}]"
        parsed = read_region(r, size, rw)
        if parsed is None:
            continue
        kind, label, shape = parsed
        rid = str(r.get("id", f"#{k}"))
        match = _REGION_ID.match(rid)
        key: int | str = (
            int(match.group(1))
            if match and int(match.group(1)) in known
            else drawn.get(f"{who_prefix}:{rid}", rid)
        )
        region = regions.setdefault(key, _Region(label))
        if kind == "rectanglelabels":
            region.label = label  # the rectangle's label wins over its mask's
            region.box = shape
        else:
            region.mask = shape if region.mask is None else region.mask | shape
    for key, region in regions.items():
        if region.box is None and (region.mask is None or not region.mask.any()):
            raise InputError(f"{where}: region {key} has an empty mask and no rectangle")
    return image, _who(ann, who_prefix, where), offered, regions


def _who(ann: Mapping[str, Any], prefix: str, where: str) -> str:
    by = ann.get("completed_by")
    if isinstance(by, Mapping):
        by = by.get("email") or by.get("id")
    if by is None or str(by).strip() == "":
        raise FormatError(f"{where}: annotation {ann.get('id')} has no completed_by")
    return f"{prefix}:{by}"


def _accept(project: Project, current: Annotation, region: _Region, box: list[float], who: str) -> str:
    from promptseg.ops.masks import to_rle

    same_box = [round(v, 2) for v in box] == list(current.box_xyxy)
    same_mask = region.mask is None or dict(to_rle(region.mask)) == current.mask_rle
    same = region.label == current.label and same_box and same_mask
    if same and current.review_state == "accepted" and current.decided_by == who:
        return "unchanged"
    project.decide(current.id, "accepted", who=who, label=region.label, box=box, mask=region.mask)
    return "accepted" if same else "corrected"


def _mask_box(mask: BoolArray | None) -> list[float]:
    if mask is None:  # _plan_task refuses a region with neither box nor mask
        raise InputError("a region needs a rectangle or a mask")
    return [float(v) for v in mask_to_xyxy(mask[None])[0]]


def _kind(value: Any) -> str:
    return type(value).__name__


def run_export_tasks(args: Any) -> int:
    """``promptseg labelstudio export``: write tasks.json and config.xml; prints one line; returns 0.

    ``args`` has ``project`` (folder), ``out`` (folder), ``states`` (list of review states), ``masks``
    (``"brush"`` | ``"polygon"`` | ``"none"``) and ``image_prefix`` (str or None for the default).
    """
    from promptseg.labeling._project import Project

    masks = None if args.masks in (None, "none") else args.masks
    prefix = DEFAULT_PREFIX if args.image_prefix is None else args.image_prefix
    with Project.open(args.project) as project:
        paths = export_tasks(project, args.out, states=tuple(args.states), masks=masks, image_prefix=prefix)
        count = len(json.loads(paths[0].read_text(encoding="utf-8")))
    print(f"wrote {count} tasks to {paths[0]} and the labeling config to {paths[1]}")
    return 0


def run_import_reviews(args: Any) -> int:
    """``promptseg labelstudio import``: apply a Label Studio JSON export; prints the summary on one line.

    ``args`` has ``project`` (folder), ``export`` (the JSON file) and ``who_prefix`` (str). Returns 0;
    a bad file raises :class:`~promptseg.errors.FormatError` / :class:`~promptseg.errors.InputError`,
    which the CLI prints on one line with exit status 2.
    """
    from promptseg.labeling._project import Project

    with Project.open(args.project) as project:
        summary = import_reviews(project, args.export, who_prefix=args.who_prefix)
    print(summary)
    return 0
