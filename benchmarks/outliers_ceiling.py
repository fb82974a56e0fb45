"""How well can any per-example score separate §29's semantic outlier sets from MNIST digits 0-4?
A supervised reference (issue 17): a classifier that is *shown the outliers*.

``benchmarks/outliers_mnist.py`` scores the 0-4 test digits against test digits 5-9 and against
the same 0-4 test digits flipped left-right, with scores computed from models of the 0-4 digits
alone. No such score can do better than the best possible test that knows both sets. This script
estimates that best test: the project's feature classifier
(:func:`simulacra.metrics.fid.train_feature_classifier`, its default recipe) trained as a
two-class classifier on *training* digits 0-4 (class 0) against the same shift applied to training
digits (class 1: training digits 5-9, or training digits 0-4 flipped), then scored (the logit of
class 1) on exactly §29's evaluation sets (the first ``--examples`` test digits 0-4, and the first
``--examples`` test digits 5-9 or those same 0-4 digits flipped). Its held-out AUROC, with DeLong's
standard error, is what a detector that has seen the outliers reaches: far above what an
unsupervised score can be expected to reach, and, for a set where it stays below a target, evidence
that the target asks more than the two sets allow (a flipped 0 or a vertical 1 is itself).

    python benchmarks/outliers_ceiling.py --epochs 5 --threads 1   # results/outliers-ceiling.json

Needs ``mnist.npz`` (``--data-dir``, default ../shared/data).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import write_record  # noqa: E402


def shifted_sets(x: np.ndarray, y: np.ndarray, shift: str) -> tuple[np.ndarray, np.ndarray]:
    """(inliers, outliers) uint8 (N, 28, 28) of ``shift`` ("digits 5-9" or "flipped") from one
    split: digits 0-4, and digits 5-9 or the same 0-4 digits flipped left-right."""
    low = x[y < 5]
    if shift == "digits 5-9":
        return low, x[y >= 5]
    return low, np.ascontiguousarray(low[:, :, ::-1])


def as_images(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.float32) / 255).reshape(-1, 1, 28, 28)


def main(argv: list[str] | None = None) -> int:
    from simulacra.metrics.detection import detection_report
    from simulacra.metrics.fid import train_feature_classifier

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--examples", type=int, default=1000, help="test examples per set, as in §29")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "outliers-ceiling.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with np.load(args.data_dir / "mnist.npz") as f:
        x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    rows = []
    for shift in ("digits 5-9", "flipped"):
        inliers, outliers = shifted_sets(x_train, y_train, shift)
        x = as_images(np.concatenate([inliers, outliers]))
        labels = torch.cat([torch.zeros(len(inliers)), torch.ones(len(outliers))]).long()
        started = time.process_time()
        net = train_feature_classifier(
            x, labels, epochs=args.epochs, num_classes=2, generator=torch.Generator().manual_seed(args.seed)
        )
        seconds = time.process_time() - started
        test_in, test_out = shifted_sets(x_test, y_test, shift)
        with torch.no_grad():
            logit_in = net(as_images(test_in[: args.examples]))
            logit_out = net(as_images(test_out[: args.examples]))
        score_in = (logit_in[:, 1] - logit_in[:, 0]).numpy()
        score_out = (logit_out[:, 1] - logit_out[:, 0]).numpy()
        report = detection_report(score_in, score_out).to_dict()
        accuracy = float(((score_in < 0).sum() + (score_out > 0).sum()) / (len(score_in) + len(score_out)))
        rows.append(
            {"ood": shift, **report, "accuracy": accuracy, "train_images": len(x), "cpu_seconds": seconds}
        )
        print(
            f"{shift}: AUROC {report['auroc']:.4f} ± {report['auroc_stderr']:.4f}, "
            f"FPR95 {report['fpr95']:.3f}, accuracy {accuracy:.3f} ({seconds / 60:.1f} CPU min)"
        )
    write_record(
        {
            "benchmark": "supervised reference for §29's semantic outlier sets (a classifier shown the outliers)",
            "epochs": args.epochs,
            "examples_per_set": args.examples,
            "seed": args.seed,
            "rows": rows,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
