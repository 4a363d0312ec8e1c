"""Page rendering shared by the run report and the history page: the Jinja2 environment over
``report/templates/`` (autoescaped), the number formats and the inline CSS."""

from __future__ import annotations

import html
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from genbench_tasks.labels import display_name
from genbench_tasks.report.data import metric_label


def css_token(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "unknown"


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "–"
    if abs(v) >= 10:
        return f"{v:.2f}"
    return f"{v:.{digits}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def interval(iv: Any) -> str:
    """``estimate [low, high]`` of an interval with ``estimate``/``low``/``high`` (``–`` for None)."""
    if iv is None:
        return "–"
    ci = f" [{fmt(iv.low)}, {fmt(iv.high)}]" if iv.low is not None and iv.high is not None else ""
    return f"{fmt(iv.estimate)}{ci}"


def _escape(value: Any) -> Markup:
    """Every ``{{ }}`` value: markup (macros, charts) as is, anything else escaped for text or attributes."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("genbench_tasks.report", "templates"),
        autoescape=True,
        finalize=_escape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        css_token=css_token,
        display_name=display_name,
        fmt=fmt,
        fmt_p=fmt_p,
        interval=interval,
        metric_label=metric_label,
    )
    env.globals["css"] = Markup(env.loader.get_source(env, "report.css")[0])
    return env


def render(template: str, **context: Any) -> str:
    """A complete, self-contained HTML document (inline CSS; no scripts, no external resources).

    Deterministic for the same inputs (no render timestamp), so re-publishing an unchanged run is a no-op.
    """
    return environment().get_template(template).render(**context)


def markup(fragment: str) -> Markup:
    """A trusted, already-escaped fragment (the SVG charts) for a template."""
    return Markup(fragment)
