"""Patch primitives for the verl CPU layer: every patch names what it touches in verl and checks that it is
there with the expected shape before changing anything, so a verl release that moved or renamed it fails with
one line naming the release and the patch (``genbench check-config`` runs the same checks offline)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from genbench_tasks.errors import GenbenchError

Kind = Literal["module", "function", "class", "dict", "attribute"]


class VerlCPULayerError(GenbenchError):
    """The installed verl does not have what a CPU-layer patch expects (one line: version, patch, name)."""


@dataclass(frozen=True)
class Target:
    """A name in verl: ``module`` + dotted ``attr`` inside it (empty: the module itself), its kind, and for
    functions/methods the parameters it must accept (in any order)."""

    module: str
    attr: str = ""
    kind: Kind = "attribute"
    params: tuple[str, ...] = ()

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.attr}" if self.attr else self.module

    def resolve(self) -> Any:
        """The object, or :class:`LookupError` saying what is missing or has another shape."""
        try:
            obj: Any = importlib.import_module(self.module)
        except ImportError as exc:
            raise LookupError(f"module {self.module} does not import ({type(exc).__name__}: {exc})") from exc
        for part in filter(None, self.attr.split(".")):
            if not hasattr(obj, part):
                raise LookupError(f"{self.qualname} does not exist")
            obj = getattr(obj, part)
        self._check_kind(obj)
        return obj

    def _check_kind(self, obj: Any) -> None:
        ok = {
            "module": inspect.ismodule,
            "function": callable,
            "class": inspect.isclass,
            "dict": lambda o: isinstance(o, dict),
            "attribute": lambda o: True,
        }[self.kind]
        if not ok(obj):
            raise LookupError(f"{self.qualname} is a {type(obj).__name__}, expected a {self.kind}")
        if self.params:
            try:
                accepted = inspect.signature(obj).parameters
            except (TypeError, ValueError) as exc:
                raise LookupError(f"{self.qualname} has no inspectable signature") from exc
            missing = [p for p in self.params if p not in accepted]
            if missing:
                raise LookupError(
                    f"{self.qualname}{inspect.signature(obj)} lacks parameter(s) {', '.join(missing)}"
                )


@dataclass(frozen=True)
class Patch:
    """One change to verl (or to torch on verl's behalf): ``apply`` receives the resolved targets in order."""

    name: str
    why: str
    targets: Sequence[Target]
    apply: Callable[..., None]
    extra_check: Callable[..., str | None] | None = field(default=None)  # -> problem or None

    def resolve(self, version: str) -> list[Any]:
        objs = []
        for target in self.targets:
            try:
                objs.append(target.resolve())
            except LookupError as exc:
                raise VerlCPULayerError(
                    f"verl {version}: CPU layer patch '{self.name}' cannot apply: {exc}"
                ) from exc
        problem = self.extra_check(*objs) if self.extra_check else None
        if problem:
            raise VerlCPULayerError(f"verl {version}: CPU layer patch '{self.name}' cannot apply: {problem}")
        return objs


@dataclass
class PatchResult:
    name: str
    ok: bool
    detail: str = ""


def check_patches(patches: Sequence[Patch], version: str) -> list[PatchResult]:
    """Resolve every patch's targets without applying anything; one result per patch."""
    results = []
    for patch in patches:
        try:
            patch.resolve(version)
            results.append(PatchResult(patch.name, True, ", ".join(t.qualname for t in patch.targets)))
        except VerlCPULayerError as exc:
            results.append(PatchResult(patch.name, False, str(exc)))
    return results


def apply_patches(patches: Sequence[Patch], version: str) -> None:
    """Check and apply each patch in order (a later patch may import what an earlier one prepared, e.g. the
    FSDP engines need the CPU platform); the first failing check raises."""
    for patch in patches:
        patch.apply(*patch.resolve(version))
