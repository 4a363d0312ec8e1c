"""The artifact contract: where every file of a run lives and what it holds.

* :mod:`~genbench_tasks.artifacts.layout` -- paths: :class:`RunLayout` (a run directory), :class:`CellDir`
  (one ``eval/<label>/seed=<n>`` or ``train/...`` cell), :class:`WorkLayout` (the nightly's work dir),
  :class:`PublishedLayout` (keys under the S3 prefix).
* :mod:`~genbench_tasks.artifacts.io` -- the one atomic writer (``write_model``), reader (``read_model``) and
  file lock (``file_lock``, ``update_model``) for all of them.
* one model per file kind: ``run.RunManifest`` (``manifest.json``), ``datasets.DatasetManifest``
  (``data/datasets.json``), ``validation.ValidationReport``, ``training.TrainManifest`` and
  ``evaluation.EvalManifest`` (a cell's ``manifest.json``), ``training.TrainStep`` (``metrics.jsonl``),
  ``evaluation.EvalMetrics`` (``metrics.json``),
  ``evaluation.SampleLine`` (``samples.<family>.jsonl``), ``summary.StudySummary`` (``summary.json``),
  ``comparison.ComparisonFile`` (``comparison.json``), ``verdicts.Detection`` (``verdicts.json``),
  ``cells.CellSpec`` (a cell's ``cell.json``) and ``cells.CellDone`` (its ``_SUCCESS``).
* :mod:`~genbench_tasks.artifacts.metrics` -- the metric registry (name, direction, minimum effect, label)
  and ``RunMetrics``.

Imports only pydantic, ``errors`` and the settings models of ``profiles``: every other layer builds on it.
Submodules are imported directly (``from genbench_tasks.artifacts.summary import StudySummary``).
"""
