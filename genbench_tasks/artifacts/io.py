"""The one writer, the one reader and the one file lock for every artifact file.

``write_model`` writes a pydantic model as JSON atomically (temp file in the same directory, fsync,
``os.replace``, then fsync of the directory), so a reader sees the old file or the new one, never a torn
one. ``read_model`` is ``Model.model_validate_json`` with a one-line :class:`ArtifactError`.
``update_model`` is a locked read-modify-write for files that several processes update (the run manifest).
``file_lock`` is the package's one inter-process lock (``filelock`` when installed, else ``fcntl``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from genbench_tasks.errors import GenbenchError

M = TypeVar("M", bound=BaseModel)


class ArtifactError(GenbenchError):
    """An artifact file is missing, unreadable or does not match its model."""


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened/fsynced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_model(path: str | Path, model: BaseModel, *, indent: int | None = 2) -> Path:
    """Atomically write ``model`` as JSON (aliases used, so a file reads back with its own model)."""
    return write_text(path, model.model_dump_json(indent=indent, by_alias=True) + "\n")


def write_jsonl(path: str | Path, models: Iterable[BaseModel]) -> Path:
    """Atomically write one JSON line per model."""
    return write_text(path, "".join(m.model_dump_json(by_alias=True) + "\n" for m in models))


def jsonl_line(model: BaseModel) -> str:
    """One JSONL line (newline included, unset optional fields left out) for files appended to step by
    step (a training run's metrics)."""
    return model.model_dump_json(by_alias=True, exclude_none=True) + "\n"


def read_model(path: str | Path, model: type[M]) -> M:
    """``model.model_validate_json`` of the file; :class:`ArtifactError` (one line) when absent or invalid."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path} not found") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ArtifactError(f"{path}: not a valid {model.__name__} ({_first_error(exc)})") from None


def read_optional(path: str | Path, model: type[M], warnings: list[str] | None = None) -> M | None:
    """Like :func:`read_model`, but None when the file is absent; an invalid file is None plus a warning
    (appended to ``warnings`` when given, else raised)."""
    if not Path(path).is_file():
        return None
    try:
        return read_model(path, model)
    except ArtifactError as exc:
        if warnings is None:
            raise
        warnings.append(str(exc))
        return None


def read_jsonl(path: str | Path, model: type[M], *, torn_tail: bool = False) -> list[M]:
    """One model per non-blank line. ``torn_tail``: a file appended to line by line (a killed writer may
    leave its last line cut short), so an unparsable last line is dropped instead of raising."""
    path = Path(path)
    out = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                out.append(model.model_validate_json(line))
            except ValidationError as exc:
                if torn_tail and n == len(lines):
                    break
                raise ArtifactError(
                    f"{path}:{n}: not a valid {model.__name__} ({_first_error(exc)})"
                ) from None
    return out


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    more = f"; {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
    return f"{loc + ': ' if loc else ''}{err['msg']}{more}"


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Exclusive inter-process lock held on the lock file ``path`` (created with its parents)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock comes with the orchestration extras
        import fcntl

        with open(path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    with FileLock(str(path)):
        yield


def lock_path(path: str | Path) -> Path:
    """The lock file that guards updates of ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def update_model(path: str | Path, model: type[M], update: Callable[[M | None], M]) -> M:
    """Locked read-modify-write: ``update(current or None)`` is written atomically and returned."""
    path = Path(path)
    with file_lock(lock_path(path)):
        current = read_model(path, model) if path.is_file() else None
        new = update(current)
        write_model(path, new)
        return new


def build_dir_once(dest: Path, build: Callable[[Path], dict]) -> Path:
    """``dest``, built once: ``build(tmp)`` fills a temp dir beside it (returning what ``.complete`` records),
    which is then renamed into place, all under a file lock (concurrent callers wait, then reuse it)."""
    if (dest / ".complete").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest.parent / f".{dest.name}.lock"):
        if (dest / ".complete").is_file():
            return dest
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
        try:
            record = build(tmp)
            write_text(tmp / ".complete", json.dumps(record))
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
