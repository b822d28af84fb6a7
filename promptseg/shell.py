"""``promptseg shell IMAGE``: a conversation about one image in the terminal.

Each line is a prompt in plain words, or a command starting with ``/``::

    people                      find every match (reuses the image features after the first line)
    the third cup from the left modifiers: colour, size, position, order, count, relations, "except"
    only the left one           a follow-up on the last answer (also "and the chairs too",
                                "not that one", "the other bottle", "not the red one")
    /box X1 Y1 X2 Y2            a mask for a box
    /point X,Y [X,Y ...]        a mask from points; write -X,Y for a point NOT on the object
    /refine N X,Y [-X,Y ...]    redraw instance N of the last answer with extra points
    /save PATH                  write the last answer drawn on the image (.png/.jpg) or as JSON (.json)
    /history                    every turn, with its time
    /help, /quit

A line that fails prints one ``error:`` line and the conversation goes on.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import IO

from promptseg.errors import PromptsegError
from promptseg.session import Session
from promptseg.types import Detections

__all__ = ["run_shell"]

_HELP = __doc__.split("::", 1)[1].split("A line that fails")[0].strip("\n") if __doc__ else ""


def run_shell(session: Session, lines: IO[str], out: IO[str], *, source: str = "", prompt: str = "") -> int:
    """Read lines from ``lines`` until ``/quit`` or the end, answering on ``out``.

    Args:
        session: the conversation.
        lines: the input (``sys.stdin`` in the terminal).
        out: where answers go.
        source: the image path, for JSON output.
        prompt: the prompt string shown before each line (empty when input is not a terminal).

    Returns:
        The number of lines that failed.
    """
    h, w = session.image.shape[:2]
    out.write(f"{source or 'image'}: {w}x{h}, backend {session.backend.name!r}; /help for commands\n")
    failures = 0
    while True:
        if prompt:
            out.write(prompt)
            out.flush()
        line = lines.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit", "/q"):
            break
        try:
            _answer(session, line, out, source)
        except (PromptsegError, ValueError, OSError) as exc:
            failures += 1
            out.write(f"error: {' '.join(str(exc).split())}\n")
        out.flush()
    return failures


def _answer(session: Session, line: str, out: IO[str], source: str) -> None:
    if not line.startswith("/"):
        _show(session, session.ask(line), line, out)
        return
    command, *args = shlex.split(line)
    handler = _COMMANDS.get(command)
    if handler is None:
        raise ValueError(f"unknown command {command!r}; /help lists them")
    handler(session, args, out, source)


def _cmd_box(session: Session, args: list[str], out: IO[str], source: str) -> None:
    if len(args) != 4:
        raise ValueError("/box needs four numbers: X1 Y1 X2 Y2")
    box = [_number(a) for a in args]
    _show(session, session.predict(boxes=[box]), f"box {box}", out)


def _cmd_point(session: Session, args: list[str], out: IO[str], source: str) -> None:
    points, labels = _points(args, "/point")
    _show(session, session.predict(points=points, point_labels=labels), "points", out)


def _cmd_refine(session: Session, args: list[str], out: IO[str], source: str) -> None:
    if len(args) < 2:
        raise ValueError("/refine needs an instance number and points: /refine 0 120,80 -200,40")
    index = int(args[0])
    points, labels = _points(args[1:], "/refine")
    _show(session, session.refine(index, points=points, point_labels=labels), f"refine #{index}", out)


def _cmd_save(session: Session, args: list[str], out: IO[str], source: str) -> None:
    if len(args) != 1:
        raise ValueError("/save needs one path ending in .png, .jpg or .json")
    last = session.last
    if last is None:
        raise ValueError("nothing to save yet: ask for something first")
    path = Path(args[0])
    if path.suffix.lower() == ".json":
        from promptseg.formats.result import to_json

        prompt = session.history[-1].request
        doc = to_json(last, image_path=source or None, prompt=prompt, backend=session.backend.name)
        path.write_text(json.dumps(doc, allow_nan=False) + "\n")
    elif path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        from PIL import Image

        from promptseg.render import annotate

        Image.fromarray(annotate(session.image, last)).save(path)
    else:
        raise ValueError(f"/save writes .png, .jpg or .json, not {path.suffix or 'no suffix'}")
    out.write(f"wrote {path}\n")


def _cmd_history(session: Session, args: list[str], out: IO[str], source: str) -> None:
    for i, turn in enumerate(session.history):
        out.write(f"{i:>3}  {turn.seconds * 1000:7.1f} ms  {len(turn.result):>3} found  {turn.request}\n")


def _cmd_help(session: Session, args: list[str], out: IO[str], source: str) -> None:
    out.write(_HELP + "\n")


_COMMANDS: dict[str, Callable[[Session, list[str], IO[str], str], None]] = {
    "/box": _cmd_box,
    "/point": _cmd_point,
    "/points": _cmd_point,
    "/refine": _cmd_refine,
    "/save": _cmd_save,
    "/history": _cmd_history,
    "/help": _cmd_help,
}


def _show(session: Session, det: Detections, what: str, out: IO[str]) -> None:
    took = session.history[-1].seconds * 1000
    for note in det.meta.get("notes", []):
        out.write(f"note: {note}\n")
    if len(det) == 0:
        why = det.meta.get("explanation") or f"nothing matched {what!r}"
        out.write(f"{why} ({took:.0f} ms)\n")
        return
    out.write(f"{len(det)} found for {what!r} ({took:.0f} ms):\n")
    explanations = det.attributes.get("explanation")
    for i in range(len(det)):
        x1, y1, x2, y2 = (round(float(v)) for v in det.xyxy[i])
        score = f"{float(det.scores[i]):.2f}" if det.scores is not None else "  - "
        area = f"  mask {int(det.masks[i].sum())} px" if det.masks is not None else ""
        out.write(f"  #{i:<2} {det.labels[i]:<14} {score}  box ({x1}, {y1}, {x2}, {y2}){area}\n")
        if explanations is not None:
            out.write(f"       {explanations[i]}\n")


def _points(args: list[str], command: str) -> tuple[list[list[float]], list[int]]:
    if not args:
        raise ValueError(f"{command} needs points written X,Y (or -X,Y for a point not on the object)")
    points, labels = [], []
    for arg in args:
        negative = arg.startswith("-")
        parts = arg.lstrip("-").split(",")
        if len(parts) != 2:
            raise ValueError(f"{command}: {arg!r} is not a point; write X,Y or -X,Y")
        points.append([_number(parts[0]), _number(parts[1])])
        labels.append(0 if negative else 1)
    return points, labels


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
