"""Drafting a folder into a project: worker processes, the single writer, progress and the summary."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from promptseg.errors import ConfigError, InputError
from promptseg.labeling._project import DB_NAME, Project
from promptseg.types import Detections

__all__ = ["LabelSummary", "label", "run_label"]


@dataclass
class LabelSummary:
    """What one :func:`label` run did (only the images it drafted, not earlier runs')."""

    images_done: int = 0
    objects: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    already_done: int = 0
    interrupted: bool = False

    @property
    def images_per_second(self) -> float:
        drafted = self.images_done + len(self.failures)
        return drafted / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [
            f"{self.images_done} images labelled, {self.objects} objects, {len(self.failures)} failed, "
            f"{self.already_done} already done; {self.seconds:.1f} s ({self.images_per_second:.1f} images/s)"
            + (" - interrupted, rerun to resume" if self.interrupted else "")
        ]
        lines += [f"  failed: {path}: {reason}" for path, reason in self.failures]
        return "\n".join(lines)


_WORKER: dict[str, Any] = {}


def _init_worker(backend: str, options: dict[str, Any], prompt: str, root: str, watch_parent: bool) -> None:
    """Load the backend once for this process; a pool worker also ignores Ctrl-C and dies with its parent."""
    from promptseg.backends.registry import load_backend

    if watch_parent:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
        parent = os.getppid()

        def watch() -> None:  # a SIGKILLed parent cannot stop its pool: leave instead of lingering
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    _WORKER.update(backend=load_backend(backend, **options), prompt=prompt, root=Path(root))


def _draft(image: str) -> tuple[str, Detections | None, str | None, float, str | None]:
    """Draft one image: (image, detections, failure reason, seconds, sha256)."""
    from promptseg._segment import segment

    start = time.perf_counter()
    try:
        path = _WORKER["root"] / image
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        det = segment(path, _WORKER["prompt"], backend=_WORKER["backend"])
        return image, det, None, time.perf_counter() - start, sha
    except Exception as exc:  # one bad image must not stop the batch: its reason is recorded
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return image, None, f"{type(exc).__name__}: {reason}", time.perf_counter() - start, None


def label(
    folder: str | os.PathLike[str],
    prompt: str,
    project: str | os.PathLike[str],
    *,
    backend: str = "offline",
    workers: int = 2,
    progress: bool = True,
    accept: float = 0.8,
    reject: float = 0.3,
    backend_options: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
) -> LabelSummary:
    """Draft every not-yet-done image under ``folder`` into the project at ``project`` (created if new).

    Rerunning resumes: done images are skipped, pending and failed ones drafted. A prompt or backend
    different from the project's is refused. Ctrl-C stops cleanly: finished images are kept and the
    summary says ``interrupted``. ``accept``/``reject`` only apply when the project is created.
    """
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if (Path(project) / DB_NAME).exists():
        proj = Project.open(project)
        s = proj.settings
        if (s["prompt"], s["backend"]) != (prompt, backend):
            proj.close()
            raise ConfigError(
                f"project {project} labels {s['prompt']!r} with backend {s['backend']!r}, "
                f"not {prompt!r} with {backend!r}; use a new project folder for a new prompt"
            )
    else:
        proj = Project.create(project, prompt=prompt, backend=backend, accept=accept, reject=reject)
    out = sys.stderr if stream is None else stream
    with proj:
        proj.add_images(folder)
        todo = proj.pending()
        summary = LabelSummary(already_done=proj.counts()["images"]["done"])
        bar = _Progress(len(todo), out) if progress else None
        options = dict(backend_options or {})
        start = time.perf_counter()
        try:
            for image, det, reason, seconds, sha in _results(
                todo, backend, options, prompt, str(proj.root), workers
            ):
                if det is not None:
                    if proj.record_result(image, det, seconds, sha256=sha):
                        summary.images_done += 1
                        summary.objects += len(det)
                else:
                    proj.record_failure(image, reason or "unknown error")
                    summary.failures.append((image, reason or "unknown error"))
                if bar:
                    bar.update(summary.images_done + len(summary.failures))
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            summary.seconds = time.perf_counter() - start
            if bar:
                bar.close()
    return summary


def _results(
    todo: list[str], backend: str, options: dict[str, Any], prompt: str, root: str, workers: int
) -> Iterator[tuple[str, Detections | None, str | None, float, str | None]]:
    if not todo:
        return
    if workers == 1 or len(todo) == 1:
        _init_worker(backend, options, prompt, root, watch_parent=False)
        try:
            for image in todo:
                yield _draft(image)
        finally:
            _WORKER.clear()
        return
    if backend.startswith("offline") and "threads" not in options:  # one onnxruntime thread per core
        options["threads"] = max(1, (os.cpu_count() or 1) // workers)
    import multiprocessing

    with _pool(workers, multiprocessing.get_context("spawn"), (backend, options, prompt, root, True)) as pool:
        queue = iter(todo)
        running: set[Future[Any]] = {pool.submit(_draft, image) for image in islice(queue, 2 * workers)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                running.update(pool.submit(_draft, image) for image in islice(queue, 1))
                yield future.result()


@contextmanager
def _pool(workers: int, context: Any, initargs: tuple[Any, ...]) -> Iterator[ProcessPoolExecutor]:
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=initargs)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: do not wait for queued images
        raise
    pool.shutdown(wait=True)


class _Progress:
    """A one-line ``\\r`` progress bar with rate and ETA (on a terminal or not: it is one line)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream, self.start, self._last = total, stream, time.perf_counter(), 0.0
        self.update(0, force=True)

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < 0.1 and done < self.total:
            return
        self._last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f"{(self.total - done) / rate:.0f}s" if rate > 0 else "?"
        filled = int(30 * done / self.total) if self.total else 30
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} images {rate:.1f}/s ETA {eta} "
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def run_label(args: Any) -> int:
    """The ``promptseg label`` command: 0 when every image is labelled, 1 when some failed, 130 on Ctrl-C.

    ``args`` has ``dir``, ``prompt``, ``project``, ``backend``, ``workers``, ``accept``, ``reject`` and
    ``quiet`` (no progress bar); the summary goes to stdout.
    """
    summary = label(
        args.dir,
        args.prompt,
        args.project,
        backend=args.backend,
        workers=args.workers,
        progress=not args.quiet,
        accept=args.accept,
        reject=args.reject,
    )
    print(summary)
    if summary.interrupted:
        return 130
    return 1 if summary.failures else 0
