"""Lossless compression (simulacra.tasks.compress): rANS over an autoregressive model's quantized
conditionals.

* round trip: decoding gives back exactly the array (values, dtype, shape) for every
  autoregressive network, binary and multi-level, channels-last images too;
* length: the file's words hold Σ −log2 of the quantized probabilities within two words, and
  that sum is the model's NLL within the quantization's tiny loss;
* quantization: integer weights ≥ 1 summing to 2^24, as constriction uses them;
* determinism: a fresh process at another thread count decodes exactly;
* refusals: another model (checksum), truncated, corrupted, foreign files; data off the grid;
* the CLI: compress / decompress round trip, and one error line, exit 2, nothing written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from coding_cases import decode_in_fresh_process, grid_data, perturbed
from simulacra.cli import main
from simulacra.data.info import DataInfo
from simulacra.errors import CapabilityError, DataError
from simulacra.models.zoo import build_model
from simulacra.tasks.compress import PRECISION, compress, decompress, quantize

BINARY = DataInfo((1, 4, 4), "binary", levels=2)
LEVELS = DataInfo((6,), "unit", levels=5)

CASES = [
    ("nade", {"hidden": 12}, BINARY),
    ("made", {"hidden": [16], "num_masks": 3}, BINARY),
    ("made", {"hidden": [16], "num_masks": 1, "likelihood": "categorical"}, LEVELS),
    ("pixelcnn", {"channels": 4, "blocks": 1, "kernel_size": 3}, BINARY),
    ("transformer", {"dim": 8, "layers": 1, "heads": 2}, DataInfo((9,), "binary", levels=2)),
]


_model = perturbed
_data = grid_data


@pytest.mark.parametrize("name,kwargs,info", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_round_trip_and_length(name: str, kwargs: dict, info: DataInfo) -> None:
    model = _model(name, kwargs, info)
    x = _data(info)
    result = compress(model, x, batch_size=16)  # 3 batches, the last one short
    y = decompress(model, result.data)
    assert y.dtype == x.dtype and y.shape == x.shape and np.array_equal(x, y)
    # the words hold the ideal length of the quantized tables, within two 32-bit words
    assert abs(result.payload_bits - result.ideal_bits) <= 64
    # and the quantized tables lose next to nothing against the model (one mask of a MADE)
    if result.header["mask"] is None:
        levels = info.levels - 1
        with torch.no_grad():
            nll_bits = float(-model.log_prob(torch.from_numpy(x).float() / levels).sum()) / np.log(2)
        assert result.ideal_bits == pytest.approx(nll_bits, rel=1e-4, abs=0.05)


def test_float_and_channels_last_arrays_come_back_exactly() -> None:
    info = DataInfo((3, 5, 5), "unit", levels=4)
    model = _model("made", {"hidden": [8], "num_masks": 1, "likelihood": "categorical"}, info)
    grid = np.random.default_rng(0).integers(0, 4, (7, 5, 5, 3))
    x = (grid / 3).astype(np.float32)  # channels last, floats k/3
    y = decompress(model, compress(model, x, channels_last=True).data)
    assert y.dtype == np.float32 and np.array_equal(x, y)
    with pytest.raises(DataError, match="grid of 4 values"):
        compress(model, x + np.float32(0.01), channels_last=True)


def test_quantize_weights_are_positive_integers_summing_to_the_precision() -> None:
    p = np.array([[0.5, 0.5], [1.0, 0.0], [1e-12, 1 - 1e-12], [0.2, 0.3]])  # the last one unnormalized
    w = quantize(p)
    assert w.dtype == np.int64 and (w >= 1).all() and (w.sum(1) == 2**PRECISION).all()
    assert w[0].tolist() == [2**23, 2**23] and w[1].tolist() == [2**24 - 1, 1] and w[2, 0] == 1
    assert abs(w[3, 0] / 2**24 - 0.4) < 1e-6


def test_wrong_model_truncated_and_corrupted_files_are_refused() -> None:
    name, kwargs, info = CASES[0]
    model, other = _model(name, kwargs, info), _model(name, kwargs, info, seed=1)
    blob = compress(model, _data(info)).data
    with pytest.raises(DataError, match="another model"):
        decompress(other, blob)
    with pytest.raises(DataError, match="truncated"):
        decompress(model, blob[:-5])
    for at in (len(blob) // 2, len(blob) - 40, 20):  # in the words, near the end, in the header
        damaged = bytearray(blob)
        damaged[at] ^= 0x10
        with pytest.raises(DataError, match="corrupted"):
            decompress(model, bytes(damaged))
    with pytest.raises(DataError, match="not a simulacra compressed file"):
        decompress(model, b"PK\x03\x04" + blob[4:])


def test_models_that_cannot_code_say_why() -> None:
    rnade = build_model({"name": "rnade", "hidden": 4, "components": 2}, DataInfo((3,), "real"))
    with pytest.raises(CapabilityError, match="discrete likelihood"):
        compress(rnade, np.zeros((2, 3), np.float32))
    ae = build_model({"name": "ae", "latent_dim": 2, "hidden": [4]}, BINARY)
    with pytest.raises(CapabilityError, match="autoregressive models .* and, by bits-back coding, for VAEs"):
        compress(ae, _data(BINARY))


def test_a_fresh_process_at_another_thread_count_decodes_exactly(tmp_path: Path) -> None:
    """A NADE's file and a hierarchical VAE's (bits-back coding) decoded in a new process at 2 threads."""
    cases = [
        ({"name": "nade", "hidden": 64}, DataInfo((1, 8, 8), "binary", levels=2), 300, {"batch_size": 128}),
        ({"name": "hvae", "groups": 2, "latent_dim": 2, "hidden": 4}, BINARY, 50, {"latent_bits": 8}),
    ]
    files, arrays = [], []
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for spec, info, n, settings in cases:
            model, x = (
                _model(spec["name"], {k: v for k, v in spec.items() if k != "name"}, info),
                _data(info, n),
            )
            files.append((spec, info, model, compress(model, x, **settings).data))
            arrays.append(x)
    finally:
        torch.set_num_threads(before)
    for x, y in zip(arrays, decode_in_fresh_process(files, tmp_path), strict=True):
        assert np.array_equal(x, y)


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def made_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A MADE trained for two steps on 8x8 binary images, and the images as .npy."""
    root = tmp_path_factory.mktemp("compress")
    x = (np.random.default_rng(0).random((60, 8, 8)) < 0.3).astype(np.uint8)
    np.save(root / "bits.npy", x)
    args = ["train", "made", "--data", str(root / "bits.npy"), "--steps", "2", "--batch-size", "16"]
    assert main([*args, "--out", str(root / "run"), "--no-eval", "--no-progress"]) == 0
    return root / "run", root / "bits.npy"


def test_cli_round_trip(made_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = made_run
    assert main(["compress", str(run), "--data", str(data), "-o", str(tmp_path / "x.sim")]) == 0
    assert main(["decompress", str(run), str(tmp_path / "x.sim"), "-o", str(tmp_path / "x.npy")]) == 0
    x, y = np.load(data), np.load(tmp_path / "x.npy")
    assert y.dtype == x.dtype and np.array_equal(x, y)


def test_cli_refusals_leave_nothing(
    made_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = made_run
    sim = tmp_path / "x.sim"
    assert main(["compress", str(run), "--data", str(data), "--limit", "5", "-o", str(sim)]) == 0
    blob = sim.read_bytes()
    other = tmp_path / "other"
    args = ["train", "made", "--data", str(data), "--steps", "1", "--seed", "3", "--out", str(other)]
    assert main([*args, "--no-eval", "--no-progress"]) == 0
    damaged = bytearray(blob)
    damaged[len(blob) // 2] ^= 1
    files = {"truncated": blob[: len(blob) - 7], "corrupted": bytes(damaged), "another model": blob}
    for reason, content in files.items():
        (tmp_path / "in.sim").write_bytes(content)
        capsys.readouterr()
        which = other if reason == "another model" else run
        code = main(["decompress", str(which), str(tmp_path / "in.sim"), "-o", str(tmp_path / "out.npy")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error:") and reason in err[0]
        assert not (tmp_path / "out.npy").exists()
