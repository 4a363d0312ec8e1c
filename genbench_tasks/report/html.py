"""Page scaffolding shared by the run report and the history page: inline CSS, escaping, cells, badges."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from genbench_tasks.report.data import Stat

CSS = """
:root{--fg:#1d2433;--muted:#5d6677;--line:#dde1e8;--bg:#fff;--soft:#f5f7fa;--accent:#0b5cad}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:1320px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:30px 0 10px;padding-bottom:4px;
border-bottom:2px solid var(--line)}h3{font-size:15px;margin:18px 0 8px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.meta{display:flex;flex-wrap:wrap;gap:6px 16px;color:var(--muted);font-size:13px;margin:6px 0 4px}
.meta b{color:var(--fg);font-weight:600}
nav.toc{font-size:13px;margin:10px 0 0;display:flex;flex-wrap:wrap;gap:4px 14px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px;min-width:40%}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:right;vertical-align:top}
th{background:var(--soft);font-weight:600;white-space:nowrap}
td.l,th.l{text-align:left}
.nw{white-space:nowrap}.scroll{overflow-x:auto;max-width:100%}
.pair{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}.pair>div{flex:0 1 auto;min-width:0}
.pair table{min-width:0}
tbody tr:nth-child(even){background:#fafbfc}
.stat{white-space:nowrap}.ci{display:block;color:var(--muted);font-size:11px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
white-space:nowrap;border:1px solid transparent}
.v-regression,.s-failed,.s-failed-validation,.s-error,.vs-variance-increase{background:#fde2e1;color:#9b1c1c;border-color:#f5b5b2}
.v-improvement,.s-passed,.s-success,.s-succeeded{background:#dcf5e3;color:#176437;border-color:#a9e0bb}
.v-inconclusive{background:#e8eefc;color:#1f3f8f;border-color:#b9c9f0}
.v-no-change,.vs-no-change{background:#eef0f3;color:#4a5160;border-color:#d9dde3}
.v-insufficient-data,.vs-insufficient-data,.s-partial,.s-running,.s-unknown{background:#fff4d6;color:#7a5400;
border-color:#f1d690}
tr.row-regression td{background:#fff6f5}tr.row-improvement td{background:#f5fcf7}
.charts{display:flex;flex-wrap:wrap;gap:14px}
.chart-box{border:1px solid var(--line);border-radius:6px;padding:6px;background:#fff}
.warn{background:#fff8e6;border:1px solid #f1d690;border-radius:6px;padding:8px 12px;margin:10px 0}
.warn ul{margin:4px 0 0;padding-left:20px}
.muted{color:var(--muted)}.small{font-size:12px}
footer{margin-top:36px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:8px}
code{background:var(--soft);padding:0 4px;border-radius:3px;font-size:12px}
"""


def e(text: object) -> str:
    """Escape any value for HTML text or attribute context."""
    return escape("" if text is None else str(text), quote=True)


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


def stat_cell(s: Stat | None) -> str:
    if s is None or s.mean is None:
        return '<td class="stat">–</td>'
    std = f" ± {fmt(s.std)}" if s.std is not None else ""
    ci = ""
    if s.ci_low is not None and s.ci_high is not None:
        ci = f"[{fmt(s.ci_low)}, {fmt(s.ci_high)}]"
    n = f" n={s.n}" if s.n is not None else ""
    sub = f'<span class="ci">{e(ci + n)}</span>' if (ci or n) else ""
    return f'<td class="stat">{e(fmt(s.mean) + std)}{sub}</td>'


def badge(text: str, kind: str = "s") -> str:
    """``kind``: ``v`` verdict, ``vs`` stability verdict, ``s`` status."""
    return f'<span class="badge {kind}-{css_token(text)}">{e(text)}</span>'


def table(headers: Sequence[tuple[str, bool]], rows: Iterable[str], css_class: str = "") -> str:
    """``headers``: (text, left-aligned); ``rows``: prebuilt ``<tr>`` strings."""
    head = "".join(f'<th class="{"l" if left else ""}">{e(h)}</th>' for h, left in headers)
    cls = f' class="{e(css_class)}"' if css_class else ""
    return f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def page(title: str, body: str, *, base_href: str | None = None, footer: str = "") -> str:
    """A complete, self-contained HTML document (inline CSS; no scripts, no external resources).

    Deterministic for the same inputs (no render timestamp), so re-publishing an unchanged run is a no-op.
    """
    base = f'<base href="{e(base_href)}">' if base_href else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{base}<title>{e(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}<footer>genbench report. {e(footer)}</footer></main></body></html>\n"
    )
