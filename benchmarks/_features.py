"""The feature network the benchmark scripts score images with."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def feature_network(path: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """(network, record): the network saved at ``path``, else the shipped MNIST classifier; the
    record names it (file, sha256, and the shipped one's test accuracy) for the results' JSON."""
    from simulacra.metrics.fid import load_feature_classifier, shipped_feature_network

    if path is None:
        net, shipped = shipped_feature_network("mnist")
        return net, {
            "network": "shipped: simulacra/metrics/networks/mnist.safetensors",
            "sha256": shipped["sha256"],
            "test_accuracy": shipped["test_accuracy"],
        }
    return load_feature_classifier(path), {
        "network": str(path),
        "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
    }
