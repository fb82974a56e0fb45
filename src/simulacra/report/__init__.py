"""What a run shows: pictures chosen by capability and held-out metrics, written after training.

The layer above training, metrics, tasks and pictures: it composes them for a finished run, so
the CLI and a script that called :func:`simulacra.train.fit` write the same files.
"""

from simulacra.report.pictures import report_pictures, save_samples
from simulacra.report.run import (
    EvaluationPlan,
    held_out_split,
    plan_evaluation,
    run_metrics,
    write_run_report,
)

__all__ = [
    "EvaluationPlan",
    "held_out_split",
    "plan_evaluation",
    "report_pictures",
    "run_metrics",
    "save_samples",
    "write_run_report",
]
