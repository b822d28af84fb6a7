"""The ``promptseg`` command: a thin shell over the library.

Exit status: 0 on success (also when nothing matched), 2 for bad input or arguments, 3 when a backend
cannot run here (missing package or weights), 1 for anything else. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptseg._version import __version__
from promptseg.errors import (
    BackendUnavailable,
    ConfigError,
    FormatError,
    InputError,
    PromptsegError,
    QueryError,
)

__all__ = ["backend_rows", "main"]

EXIT_OK, EXIT_ERROR, EXIT_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3
_IMAGE_SUFFIXES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
}


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, our prefix, exit 2 like argparse
        self.print_usage(sys.stderr)
        sys.stderr.write(f"promptseg: error: {message}\n")
        raise SystemExit(EXIT_INPUT)


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="promptseg",
        description="Conversational image segmentation: plain words in, boxes and masks out.",
    )
    parser.add_argument("--version", action="version", version=f"promptseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)

    seg = sub.add_parser("segment", help="find every object matching a prompt in an image")
    seg.add_argument("image", help="image file (JPEG, PNG, WebP, BMP, TIFF)")
    seg.add_argument(
        "prompt",
        help="what to find, in plain words: 'people', 'the bottle', 'the third cup from the left', "
        "'people without a helmet', 'all chairs except the red one'",
    )
    seg.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    seg.add_argument("--out", metavar="PATH", help="write the image with masks, boxes and labels drawn on it")
    seg.add_argument(
        "--no-legend",
        dest="legend",
        action="store_false",
        help="in --out, leave out the panel that explains why each object was chosen",
    )
    seg.add_argument("--backend", default="offline", help="backend name (see 'promptseg backends')")
    seg.add_argument("--threshold", type=_unit_float, default=None, help="minimum score, 0-1")
    seg.add_argument(
        "--masks",
        default=None,
        metavar="METHOD",
        help="box-to-mask method of the offline backend: color (default), grabcut, ellipse, box, "
        "u2net (slow, needs its weights) or none",
    )
    seg.add_argument(
        "--mask-format",
        choices=("rle", "polygon", "png", "none"),
        default="rle",
        help="how masks are written in --json (default: COCO RLE)",
    )
    seg.add_argument("--max-pixels", type=_positive_int, default=None, help="refuse larger images")
    _add_parser_flag(seg)
    _add_option_flag(seg)
    seg.set_defaults(run=_cmd_segment)

    sh = sub.add_parser(
        "shell",
        help="a conversation about one image: prompts, boxes and points, features computed once",
        description="Type prompts in plain words, or /box, /point, /refine, /save, /history, /help, /quit.",
    )
    sh.add_argument("image", help="image file (JPEG, PNG, WebP, BMP, TIFF)")
    sh.add_argument("--backend", default="offline", help="backend name (see 'promptseg backends')")
    sh.add_argument(
        "--masker",
        default=None,
        metavar="BACKEND",
        help="a box/point-promptable backend for /box, /point and /refine when --backend takes none "
        "(sam, sam2, edgetam)",
    )
    sh.add_argument("--max-pixels", type=_positive_int, default=None, help="refuse larger images")
    _add_parser_flag(sh)
    _add_option_flag(sh)
    sh.set_defaults(run=_cmd_shell)

    tr = sub.add_parser(
        "track",
        help="follow everything a prompt names through a video, a folder of frames, a webcam or a stream",
        description="Objects are detected on keyframes, followed in between, and keep their ids through "
        "occlusions; the prompt's modifiers ('the person on the left') apply on every frame.",
    )
    tr.add_argument("source", help="video file, folder of frames, webcam index (0), or rtsp:// / http:// URL")
    tr.add_argument(
        "prompt", help="what to track: 'people', 'cars except the red one', 'the person on the left'"
    )
    tr.add_argument(
        "--jsonl", metavar="PATH", help="write one JSON object per frame (track ids, boxes, masks)"
    )
    tr.add_argument(
        "--mot", metavar="PATH", help="write MOT Challenge text (frame,id,left,top,width,height,...)"
    )
    tr.add_argument("--video", metavar="PATH", help="write an annotated MP4 with one colour per track")
    tr.add_argument(
        "--summary", metavar="PATH", help="write a JSON summary: tracks, first/last frame, counts"
    )
    tr.add_argument("--backend", default="offline", help="backend name (see 'promptseg backends')")
    tr.add_argument("--threshold", type=_unit_float, default=None, help="minimum detector score, 0-1")
    tr.add_argument(
        "--masks", default="color", metavar="METHOD", help="box-to-mask method (color, grabcut, box, none)"
    )
    tr.add_argument(
        "--keyframe-interval",
        type=_positive_int,
        default=5,
        metavar="N",
        help="detector every N frames at most",
    )
    tr.add_argument("--max-frames", type=_positive_int, default=None, metavar="N", help="stop after N frames")
    tr.add_argument("--overwrite", action="store_true", help="replace output files that exist")
    tr.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    _add_parser_flag(tr)
    _add_option_flag(tr)
    tr.set_defaults(run=_cmd_track)

    lb = sub.add_parser(
        "label",
        help="draft every image of a folder into a resumable labelling project (review queue included)",
        description="Rerun the same command to resume: every image is labelled exactly once.",
    )
    lb.add_argument("dir", help="folder of images (searched recursively; other files are ignored)")
    lb.add_argument("--prompt", required=True, help="what to label, e.g. 'people and chairs'")
    lb.add_argument(
        "--project", required=True, metavar="PROJ", help="project folder (created if new; rerun to resume)"
    )
    lb.add_argument("--backend", default="offline", help="backend name (see 'promptseg backends')")
    lb.add_argument("--workers", type=_positive_int, default=2, help="worker processes (default: 2)")
    lb.add_argument(
        "--accept", type=_unit_float, default=0.8, help="auto-accept drafts scoring at least this (0.8)"
    )
    lb.add_argument(
        "--reject", type=_unit_float, default=0.3, help="auto-reject drafts scoring below this (0.3)"
    )
    lb.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    lb.set_defaults(run=_cmd_label)

    ex = sub.add_parser(
        "export",
        help="write a labelling project's reviewed annotations as a dataset (COCO, YOLO, VOC, Label Studio)",
    )
    ex.add_argument("project", help="project folder made by 'promptseg label'")
    ex.add_argument("--format", required=True, choices=("coco", "yolo", "yolo-detect", "voc", "labelstudio"))
    ex.add_argument("--out", required=True, metavar="DIR", help="folder to write (images are copied into it)")
    ex.add_argument(
        "--states",
        default="accepted",
        help="review states to export, comma-separated (default: accepted; e.g. accepted,pending)",
    )
    ex.add_argument(
        "--split",
        default=None,
        metavar="TRAIN,VAL,TEST",
        help="deterministic split ratios, e.g. 0.8,0.1,0.1 (default: one set)",
    )
    ex.set_defaults(run=_cmd_export)

    rv = sub.add_parser(
        "review",
        help="serve the browser review page of a labelling project; needs promptseg[label]",
        description="Walk the review queue in a browser: accept, reject, relabel, move or resize boxes, "
        "refine masks and draw missed objects, by mouse or keyboard ('?' on the page lists the keys).",
    )
    rv.add_argument("project", help="project folder made by 'promptseg label'")
    rv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    rv.add_argument("--port", type=_positive_int, default=8700, help="port to listen on (default: 8700)")
    rv.add_argument("--user", default=None, help="name recorded with every decision (default: your login)")
    rv.add_argument(
        "--refiner",
        default="color",
        help="box -> mask refiner for 'refine' (default: color; or grabcut, ...)",
    )
    rv.add_argument(
        "--token", default=None, help="require this bearer token for the API (default: $PROMPTSEG_API_TOKEN)"
    )
    rv.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    rv.set_defaults(run=_cmd_review)

    ls = sub.add_parser(
        "labelstudio",
        help="Label Studio both ways: tasks with pre-annotations, reviews back in, an ML backend",
        description="Review a project's drafts in Label Studio: 'export' writes tasks.json (the drafts as "
        "predictions) and config.xml (the labeling config); 'import' applies Label Studio's JSON export "
        "to the project as reviewed annotations; 'ml-backend' serves pre-annotations to Label Studio.",
    )
    ls_sub = ls.add_subparsers(dest="ls_command", required=True, metavar="{export,import,ml-backend}")
    lse = ls_sub.add_parser("export", help="write tasks.json and config.xml for a Label Studio project")
    lse.add_argument("project", help="project folder made by 'promptseg label'")
    lse.add_argument("out", help="folder to write tasks.json and config.xml into")
    lse.add_argument(
        "--states",
        type=lambda v: [s.strip() for s in v.split(",") if s.strip()],
        default=["accepted", "pending"],
        help="review states offered as predictions (default: accepted,pending)",
    )
    lse.add_argument("--masks", choices=("brush", "polygon", "none"), default="brush", help="mask regions")
    lse.add_argument(
        "--image-prefix",
        default=None,
        help="put before each image path in data.image (default: /data/local-files/?d=, for Label "
        "Studio's local files storage with the project's image folder as document root)",
    )
    lse.set_defaults(run=_cmd_labelstudio_export)
    lsi = ls_sub.add_parser("import", help="apply a Label Studio JSON export to the project as reviews")
    lsi.add_argument("project", help="project folder made by 'promptseg label'")
    lsi.add_argument("export", help="the JSON file Label Studio exported (Export -> JSON)")
    lsi.add_argument("--who-prefix", default="labelstudio", help="decisions are logged as PREFIX:<annotator>")
    lsi.set_defaults(run=_cmd_labelstudio_import)
    lsm = ls_sub.add_parser(
        "ml-backend", help="serve pre-annotations to Label Studio (/health /setup /predict)"
    )
    lsm.add_argument("--backend", default="offline", help="backend name (see 'promptseg backends')")
    lsm.add_argument(
        "--prompt", default=None, help="what to find (default: each label of the project's labeling config)"
    )
    lsm.add_argument("--image-root", default=None, help="folder that /data/local-files/?d= paths are under")
    lsm.add_argument("--label-studio-url", default=None, help="Label Studio's address, to fetch uploads")
    lsm.add_argument("--api-key", default=None, help="Label Studio token (default: $LABEL_STUDIO_API_KEY)")
    lsm.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    lsm.add_argument("--port", type=_positive_int, default=9090, help="port to listen on (default: 9090)")
    _add_option_flag(lsm)
    lsm.set_defaults(run=_cmd_labelstudio_ml)

    bk = sub.add_parser("backends", help="list the backends, what they can do, and whether they run here")
    bk.add_argument("--json", action="store_true", help="print as JSON")
    bk.set_defaults(run=_cmd_backends)

    sv = sub.add_parser("serve", help="serve the HTTP API (OpenAPI docs at /docs); needs promptseg[server]")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=_positive_int, default=8000, help="port to listen on (default: 8000)")
    sv.add_argument("--backend", default="offline", help="backend name (see 'promptseg backends')")
    sv.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' on /v1 (default: $PROMPTSEG_API_TOKEN, which keeps it "
        "out of the process list)",
    )
    sv.add_argument(
        "--max-upload-mb", type=_positive_int, default=20, metavar="N", help="largest upload in MiB (20)"
    )
    sv.add_argument("--max-pixels", type=_positive_int, default=None, help="refuse larger images")
    _add_option_flag(sv)
    sv.set_defaults(run=_cmd_serve)
    return parser


def _add_parser_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parser",
        default="rules",
        metavar="SPEC",
        help="how prompts are read: rules (default, offline), gemini[:MODEL] or openai[:MODEL] "
        "(a language model; $GEMINI_API_KEY, $OPENAI_API_KEY, $PROMPTSEG_LLM_BASE_URL)",
    )


def _add_option_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_option,
        help="a backend option, repeatable: -o device=cuda -o dtype=bfloat16 -o weights=file:/models/sam3",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INPUT
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    try:
        code: int = args.run(args)
        return code
    except (InputError, ConfigError, QueryError, FormatError) as exc:
        return _fail(exc, EXIT_INPUT, args.debug)
    except BackendUnavailable as exc:
        return _fail(exc, EXIT_UNAVAILABLE, args.debug)
    except PromptsegError as exc:
        return _fail(exc, EXIT_ERROR, args.debug)
    except KeyboardInterrupt:
        sys.stderr.write("promptseg: interrupted\n")
        return 130
    except Exception as exc:  # a bug of ours: still one line, with a way to see more
        if args.debug:
            raise
        return _fail(exc, EXIT_ERROR, False, hint=" (internal error; rerun with --debug for the traceback)")


def _cmd_segment(args: argparse.Namespace) -> int:
    from promptseg._segment import segment
    from promptseg.backends.registry import load_backend
    from promptseg.formats.result import to_json
    from promptseg.image import load_image
    from promptseg.query.engine import load_parser

    out = Path(args.out) if args.out else None
    if out is not None:
        _check_output_path(out)
    image = load_image(args.image, max_pixels=args.max_pixels)  # bad images fail before any model loads
    options: dict[str, Any] = dict(args.option)
    if args.masks is not None:
        options["masks"] = args.masks
    parser = load_parser(args.parser)
    backend = load_backend(args.backend, **options)
    det = segment(image, args.prompt, backend=backend, threshold=args.threshold, parser=parser)

    for note in det.meta.get("notes", []):
        sys.stderr.write(f"promptseg: note: {note}\n")
    if out is not None:
        from promptseg.render import annotate

        _write_image(annotate(image, det, legend=args.legend), out)
    if args.json:
        doc = to_json(
            det, image_path=args.image, prompt=args.prompt, backend=args.backend, mask_format=args.mask_format
        )
        sys.stdout.write(json.dumps(doc, allow_nan=False) + "\n")
    else:
        _print_summary(det, args.prompt)
        if out is not None:
            sys.stdout.write(f"wrote {out}\n")
    return EXIT_OK


def _cmd_track(args: argparse.Namespace) -> int:
    import signal

    from promptseg.video.outputs import Outputs, open_outputs
    from promptseg.video.sources import open_source
    from promptseg.video.track import VideoQuery

    wanted = {k: getattr(args, k) for k in ("jsonl", "mot", "video", "summary")}
    video_query = VideoQuery(
        args.prompt,
        backend=args.backend,
        threshold=args.threshold,
        parser=args.parser,
        masks=args.masks,
        keyframe_interval=args.keyframe_interval,
        **dict(args.option),
    )
    frames = open_source(args.source, max_frames=args.max_frames)
    meta = {"source": str(args.source), "prompt": args.prompt, "backend": args.backend}
    fps = frames.stats.fps or 25.0
    # SIGTERM (a kill) ends the run like Ctrl-C: every output is closed, valid to the last frame
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    done = 0
    start = time.perf_counter()
    last_report = 0.0
    try:
        with frames, Outputs(open_outputs(**wanted, fps=fps, meta=meta, overwrite=args.overwrite)) as outputs:
            for frame in frames:
                step = video_query.update(frame)
                outputs.write(step.frame, step.detections)
                done += 1
                if step.change is not None and not args.quiet:
                    sys.stderr.write(f"\rframe {frame.index}: {step.change}\n")
                now = time.perf_counter()
                if not args.quiet and now - last_report >= 1.0:
                    last_report = now
                    rate = done / (now - start)
                    sys.stderr.write(
                        f"\rframe {frame.index + 1} · {rate:.1f} fps · {len(step.detections)} objects"
                        f" · {frames.stats.corrupt} corrupt   "
                    )
                    sys.stderr.flush()
    except KeyboardInterrupt:
        sys.stderr.write(f"\npromptseg: stopped after {done} frames; the outputs are complete up to there\n")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    elapsed = time.perf_counter() - start
    stats = frames.stats
    if not args.quiet:
        sys.stderr.write("\r" + " " * 70 + "\r")
    notes = "".join(f"; {n}" for n in stats.notes)
    sys.stdout.write(
        f"{done} frames in {elapsed:.1f} s ({done / max(elapsed, 1e-9):.1f} fps), "
        f"{stats.corrupt} corrupt skipped, {stats.reconnects} reconnects{notes}\n"
    )
    for path in wanted.values():
        if path:
            sys.stdout.write(f"wrote {path}\n")
    return EXIT_OK


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _cmd_label(args: argparse.Namespace) -> int:
    from promptseg.labeling import run_label

    return run_label(args)


def _cmd_review(args: argparse.Namespace) -> int:
    from promptseg.labeling.review import run_review

    return run_review(args)


def _cmd_labelstudio_export(args: argparse.Namespace) -> int:
    from promptseg.labeling.labelstudio import run_export_tasks

    return run_export_tasks(args)


def _cmd_labelstudio_import(args: argparse.Namespace) -> int:
    from promptseg.labeling.labelstudio import run_import_reviews

    return run_import_reviews(args)


def _cmd_labelstudio_ml(args: argparse.Namespace) -> int:
    from promptseg.labeling.labelstudio import run_ml_backend

    return run_ml_backend(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from promptseg import datasets
    from promptseg.labeling import Project

    with Project.open(args.project) as project:
        dataset = project.to_dataset([s.strip() for s in args.states.split(",") if s.strip()])
        root = project.root
    data: Any = dataset
    if args.split:
        try:
            ratios = tuple(float(v) for v in args.split.split(","))
        except ValueError:
            raise ConfigError(f"--split: expected ratios such as 0.8,0.1,0.1, got {args.split!r}") from None
        data = datasets.split(dataset, ratios)
    written: list[Path]
    if args.format == "coco":
        written = datasets.export_coco(data, args.out, image_root=root)
    elif args.format in ("yolo", "yolo-detect"):
        detect = args.format == "yolo-detect"
        written = [
            datasets.export_yolo(data, args.out, task="detect" if detect else "segment", image_root=root)
        ]
    elif args.format == "voc":
        written = datasets.export_voc(data, args.out, image_root=root)
    else:
        written = datasets.export_labelstudio(data, args.out, image_prefix=f"{root}/")
    objects = sum(len(item.detections) for item in dataset.items)
    sys.stdout.write(f"{len(dataset.items)} images, {objects} objects -> {args.out}\n")
    for path in written:
        sys.stdout.write(f"wrote {path}\n")
    return EXIT_OK


def _cmd_shell(args: argparse.Namespace) -> int:
    from promptseg.session import Session
    from promptseg.shell import run_shell

    session = Session(
        args.image,
        args.backend,
        masker=args.masker,
        max_pixels=args.max_pixels,
        parser=args.parser,
        **dict(args.option),
    )
    interactive = sys.stdin.isatty()
    run_shell(session, sys.stdin, sys.stdout, source=args.image, prompt="promptseg> " if interactive else "")
    return EXIT_OK


def _cmd_backends(args: argparse.Namespace) -> int:
    from promptseg.backends.registry import check_backend, get_spec, list_backends

    if args.json:
        sys.stdout.write(json.dumps(backend_rows(), indent=2) + "\n")
        return EXIT_OK
    statuses = [check_backend(name) for name in list_backends()]
    width = max(len(s.name) for s in statuses)
    pad = " " * (width + 15)
    for s in statuses:
        spec = get_spec(s.name)
        mark = "ready" if s.available else "unavailable"
        sys.stdout.write(f"{s.name:<{width}}  {mark:<11}  {s.description}\n")
        sys.stdout.write(f"{pad}can: {', '.join(sorted(spec.capabilities))}; licence: {spec.license}\n")
        if not s.available:
            sys.stdout.write(f"{pad}why: {s.reason}\n")
    return EXIT_OK


def backend_rows() -> list[dict[str, Any]]:
    """Every backend as ``promptseg backends --json`` prints it (also ``GET /v1/backends``)."""
    from promptseg.backends.registry import check_backend, get_spec, list_backends

    rows = []
    for s in (check_backend(name) for name in list_backends()):
        spec = get_spec(s.name)
        rows.append(
            {
                "name": s.name,
                "available": s.available,
                "reason": s.reason,
                "description": s.description,
                "capabilities": sorted(spec.capabilities),
                "extra": spec.extra,
                "weights": dict(spec.weights),
                "license": spec.license,
                "preprocessing": spec.preprocessing,
            }
        )
    return rows


def _cmd_serve(args: argparse.Namespace) -> int:
    from promptseg._deps import require

    for module in ("fastapi", "uvicorn", "python_multipart"):
        require(module, extra="server", purpose="'promptseg serve'")
    import uvicorn

    from promptseg.backends.registry import load_backend
    from promptseg.server import create_app

    token = args.token or os.environ.get("PROMPTSEG_API_TOKEN") or None
    backend = load_backend(args.backend, **dict(args.option))  # a missing model fails before binding
    app = create_app(
        backend=backend, token=token, max_upload_bytes=args.max_upload_mb * 2**20, max_pixels=args.max_pixels
    )
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.stderr.write(
            f"promptseg: note: serving on {args.host} with no token: anyone who can reach this port can "
            "use it; set PROMPTSEG_API_TOKEN\n"
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.debug else "info")
    return EXIT_OK


def _print_summary(det: Any, prompt: str) -> None:
    if len(det) == 0:
        sys.stdout.write(f"{det.meta.get('explanation') or f'nothing matched {prompt!r}'}\n")
        return
    sys.stdout.write(f"{len(det)} match{'es' if len(det) != 1 else ''} for {prompt!r}:\n")
    why = det.attributes.get("explanation")
    for i in range(len(det)):
        x1, y1, x2, y2 = (round(float(v)) for v in det.xyxy[i])
        score = f"{float(det.scores[i]):.2f}" if det.scores is not None else "-"
        area = f"  mask {int(det.masks[i].sum())} px" if det.masks is not None else ""
        sys.stdout.write(f"  {det.labels[i]:<16} {score}  box ({x1}, {y1}, {x2}, {y2}){area}\n")
        if why is not None:
            sys.stdout.write(f"    {why[i]}\n")


def _check_output_path(path: Path) -> None:
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        raise ConfigError(f"--out must end in one of {', '.join(sorted(_IMAGE_SUFFIXES))}, got {str(path)!r}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write {str(path)!r}: the folder {str(parent)!r} does not exist")
    if path.is_dir():
        raise ConfigError(f"cannot write {str(path)!r}: it is a folder")


def _write_image(pixels: Any, path: Path) -> None:
    from PIL import Image

    fmt = _IMAGE_SUFFIXES[path.suffix.lower()]
    # Write next to the target, then rename: an interrupted run never leaves half an image.
    fd, tmp = tempfile.mkstemp(
        prefix=".promptseg-", suffix=path.suffix, dir=path.parent if str(path.parent) else "."
    )
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(pixels).save(f, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fail(exc: BaseException, code: int, debug: bool, hint: str = "") -> int:
    if debug:
        logging.exception("promptseg failed")
    message = " ".join(str(exc).split()) or type(exc).__name__
    sys.stderr.write(f"promptseg: error: {message}{hint}\n")
    return code


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. device=cuda), got {text!r}")
    value: Any = raw
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        value = lowered == "true"
    elif lowered in ("none", "null"):
        value = None
    else:
        for convert in (int, float):
            try:
                value = convert(raw)
                break
            except ValueError:
                continue
    return key.strip(), value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
