"""Fetching datasets for users with a network: MNIST and binarized MNIST.

:func:`download` writes ``mnist.npz`` or ``binarized_mnist.npz`` into the data folder
(``$SIMULACRA_DATA`` or ``~/.simulacra/data`` by default), where :func:`load_dataset
<simulacra.data.load_dataset>` finds them. :func:`fetch` streams one URL to a temporary file
next to its destination, verifies a checksum and renames the file into place, so an interrupted
or corrupt download never leaves a file that looks complete. Nothing here runs at import.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simulacra.data.files import default_data_dir, read_idx
from simulacra.errors import DataError, UnknownNameError

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# The well-known md5 sums of LeCun's files.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

BINARIZED_MNIST_MIRRORS: tuple[str, ...] = (
    "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",
)

DOWNLOADABLE: tuple[str, ...] = ("binarized-mnist", "mnist")

_CHUNK = 1 << 20


def _md5() -> hashlib._Hash:
    return hashlib.md5(usedforsecurity=False)


def _digests(path: Path) -> dict[str, str]:
    hashes = {"sha256": hashlib.sha256(), "md5": _md5()}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {k: h.hexdigest() for k, h in hashes.items()}


def _mismatches(digests: dict[str, str], sha256: str | None, md5: str | None) -> list[str]:
    out = []
    for algo, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None and digests[algo] != expected.lower():
            out.append(f"expected {algo} {expected.lower()}, got {digests[algo]}")
    return out


def fetch(
    url: str,
    path: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = False,
) -> Path:
    """Download ``url`` to ``path`` atomically, verifying its checksum(s).

    The bytes stream to a hidden temporary file in ``path``'s folder, hashed on the way, and
    are renamed to ``path`` only when every given checksum matches. A file already at ``path``
    is kept (no download) when a checksum is given and matches.

    Args:
        url: any URL urllib opens (``https://``, ``http://``, ``file://``).
        path: destination file; its folder is created.
        sha256, md5: expected hex digests (either, both or none).
        progress: write the bytes received so far to stderr.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        DataError: the download failed, or a checksum differs (the message names the expected
            and actual digests; no file is left behind).
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and (sha256 or md5) and not _mismatches(_digests(path), sha256, md5):
        return path
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        hashes = {"sha256": hashlib.sha256(), "md5": _md5()}
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                for h in hashes.values():
                    h.update(chunk)
                done += len(chunk)
                if progress:
                    size = f" / {int(total) / 1e6:.1f}" if total else ""
                    print(f"\r{path.name}: {done / 1e6:.1f}{size} MB", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
        wrong = _mismatches({k: h.hexdigest() for k, h in hashes.items()}, sha256, md5)
        if wrong:
            raise DataError(f"checksum mismatch for {url}: {'; '.join(wrong)}; the download was discarded")
        os.replace(tmp, path)
    except DataError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DataError(f"cannot download {url}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _from_mirrors(name: str, mirrors: Sequence[str], dest: Path, *, md5: str | None, progress: bool) -> Path:
    """``name`` fetched from the first mirror (a base URL) that serves it with the right checksum."""
    errors = []
    for base in mirrors:
        url = base if base.endswith("/") else base + "/"
        try:
            return fetch(url + name, dest / name, md5=md5, progress=progress)
        except DataError as err:
            errors.append(str(err))
    raise DataError(f"could not download {name} from any mirror: {' | '.join(errors)}")


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` to a temporary name, then an atomic rename to ``path``."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path


def read_amat(path: Path) -> np.ndarray:
    """Binarized MNIST images (N, 784) uint8 from one of Larochelle's ``.amat`` files.

    The originals are text, one image of 784 values 0/1 per line; some copies are MATLAB v5
    files with the images in variable ``X`` (read with scipy).
    """
    with open(path, "rb") as f:
        head = f.read(16)
    try:
        if head.startswith(b"MATLAB"):
            from scipy.io import loadmat

            x = np.asarray(loadmat(path)["X"])
        else:
            x = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, KeyError, OSError) as err:
        raise DataError(f"cannot read {str(path)!r} as binarized MNIST (.amat): {err}") from None
    if x.ndim != 2 or x.shape[1] != 784 or x.shape[0] == 0:
        raise DataError(f"{str(path)!r}: expected binarized MNIST images (N, 784); got shape {x.shape}")
    if not np.isin(x, (0, 1)).all():
        raise DataError(f"{str(path)!r}: expected values 0 and 1 only")
    return x.astype(np.uint8)


def _mnist(dest: Path, mirrors: Sequence[str], progress: bool) -> Path:
    target = dest / "mnist.npz"
    if target.is_file():
        return target
    files = {
        name: _from_mirrors(name, mirrors, dest, md5=md5, progress=progress)
        for name, md5 in MNIST_MD5.items()
    }
    arrays = {
        "x_train": read_idx(files["train-images-idx3-ubyte.gz"], ndim=3),
        "y_train": read_idx(files["train-labels-idx1-ubyte.gz"], ndim=1),
        "x_test": read_idx(files["t10k-images-idx3-ubyte.gz"], ndim=3),
        "y_test": read_idx(files["t10k-labels-idx1-ubyte.gz"], ndim=1),
    }
    _save_npz(target, **arrays)
    for path in files.values():
        path.unlink(missing_ok=True)  # mnist.npz holds everything
    return target


def _binarized_mnist(dest: Path, mirrors: Sequence[str], progress: bool) -> Path:
    target = dest / "binarized_mnist.npz"
    if target.is_file():
        return target
    files = {
        split: _from_mirrors(f"binarized_mnist_{split}.amat", mirrors, dest, md5=None, progress=progress)
        for split in ("train", "valid", "test")
    }
    _save_npz(target, **{split: read_amat(path) for split, path in files.items()})
    for path in files.values():
        path.unlink(missing_ok=True)
    return target


def download(
    name: str,
    dest: str | Path | None = None,
    *,
    progress: bool = True,
    mirrors: Sequence[str] | None = None,
) -> Path:
    """Download dataset ``name`` (``mnist`` or ``binarized-mnist``) and convert it to ``.npz``.

    ``mnist``: LeCun's four IDX ``.gz`` files, verified by their md5 sums, become ``mnist.npz``
    (``x_train`` (60000, 28, 28) uint8, ``y_train``, ``x_test``, ``y_test``). ``binarized-mnist``:
    Larochelle's ``binarized_mnist_{train,valid,test}.amat`` become ``binarized_mnist.npz``
    (``train``, ``valid``, ``test``, (N, 784) uint8). An existing ``.npz`` is not downloaded again.

    Args:
        name: ``"mnist"`` or ``"binarized-mnist"``.
        dest: folder to write to (default ``$SIMULACRA_DATA`` or ``~/.simulacra/data``).
        progress: report bytes received on stderr.
        mirrors: base URLs to try in order instead of the defaults (e.g. a local mirror).

    Returns:
        the path of the ``.npz`` file.

    Raises:
        UnknownNameError: ``name`` is not downloadable.
        DataError: ``dest`` cannot be a folder (a file is there), a download or its checksum failed.
    """
    folder = Path(dest).expanduser() if dest is not None else default_data_dir()
    if name not in DOWNLOADABLE:
        raise UnknownNameError(f"cannot download {name!r}; downloadable datasets: {', '.join(DOWNLOADABLE)}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where the folder belongs, or a folder we may not write to
        reason = "it is a file" if folder.is_file() else (err.strerror or type(err).__name__)
        raise DataError(
            f"cannot use {str(folder)!r} as the data folder: {reason}; expected a folder"
        ) from None
    if name == "mnist":
        return _mnist(folder, tuple(mirrors or MNIST_MIRRORS), progress)
    return _binarized_mnist(folder, tuple(mirrors or BINARIZED_MNIST_MIRRORS), progress)
