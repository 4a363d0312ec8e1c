"""Dataset validation: manifest integrity, Great Expectations suites and row checks per dataset, reference
solutions in the sandbox, cross-split leak/contamination/near-duplicate checks, reports.

Great Expectations is imported only when a validation runs (the Airflow DAG imports this package).
"""

from genbench_tasks.artifacts.validation import (
    CrossCheckResult,
    DatasetResult,
    FailedExpectation,
    ValidationReport,
)
from genbench_tasks.validation.contamination import (
    TextItem,
    heldout_leak_check,
    near_duplicate_check,
    ngram_contamination_check,
    normalize_prompt,
    word_tokens,
)
from genbench_tasks.validation.manifest import check_manifest
from genbench_tasks.validation.validate import expected_rows, read_dataset, validate_dataset_dir

__all__ = [
    "CrossCheckResult",
    "DatasetResult",
    "FailedExpectation",
    "TextItem",
    "ValidationReport",
    "expected_rows",
    "check_manifest",
    "heldout_leak_check",
    "near_duplicate_check",
    "ngram_contamination_check",
    "normalize_prompt",
    "read_dataset",
    "validate_dataset_dir",
    "word_tokens",
]
