"""Reading a file of sampled architectures once, chunk by chunk, in bounded memory (for ``nasgen check``)."""

from __future__ import annotations

import numpy as np

from nasgen.common.errors import NasgenError
from nasgen.space.definition import SearchSpace

__all__ = ["iter_sample_file"]



def iter_sample_file(path: str, space: SearchSpace, chunk: int = 1 << 16):
    """(layers, kernel, stride) chunks of a JSON Lines or npz file (``"-"``: standard input), read once.

    JSON Lines go through :func:`nasgen.space.arrays_io.iter_arrays` (the rows are
    parsed and refused exactly as ``nasgen adj`` refuses them); an npz file on disk
    is read member by member, ``chunk`` rows at a time, so memory stays bounded
    by a chunk however many draws it holds; an npz on a pipe is read whole.

    Raises:
        NasgenError: an unreadable or malformed file, named.
    """
    from nasgen.space.arrays_io import iter_arrays

    rows = max(1, min(chunk, (1 << 22) // max(1, space.max_layers * space.dims)))
    if path != "-":
        import os
        import stat

        regular = False
        try:
            # only a regular file is opened twice (to sniff, then to read): a pipe or FIFO is read once below
            if stat.S_ISREG(os.stat(path).st_mode):
                with open(path, "rb") as handle:
                    regular = handle.read(4) == b"PK\x03\x04"
        except OSError:
            regular = False  # iter_arrays names the problem
        if regular:
            yield from _iter_npz(path, rows)
            return
    yield from iter_arrays(path, space=None, chunk=rows)


def _iter_npz(path: str, rows: int):
    import zipfile

    from nasgen.space.definition import MAX_INT

    names = ("layers", "kernel", "stride")
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise NasgenError(f"{path} is not a readable npz file ({str(exc)[:200]})") from None
    with archive:
        members, headers = [], []
        try:
            for name in names:
                if f"{name}.npy" not in archive.namelist():
                    raise NasgenError(f"{path} is an npz file without the array {name!r} (nasgen writes layers, "
                                      "kernel and stride)")
                member = archive.open(f"{name}.npy")
                members.append(member)
                version = np.lib.format.read_magic(member)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(member) if version == (1, 0)
                                         else np.lib.format.read_array_header_2_0(member))
                if fortran or dtype.kind not in "iu" or dtype.hasobject:
                    raise ValueError(f"array {name} is {dtype} {'Fortran-ordered' if fortran else ''}")
                headers.append((shape, dtype))
            (l_shape, l_type), (k_shape, k_type), (s_shape, s_type) = headers
            if len(l_shape) != 1 or len(k_shape) != 3 or s_shape != k_shape or k_shape[0] != l_shape[0]:
                raise NasgenError(f"{path}: layers must be (M,) and kernel, stride (M, N, K) integer arrays, got "
                                  f"{l_shape}, {k_shape}, {s_shape}")
            M, N, K = k_shape
            if M and K < 1:
                raise NasgenError(f"{path}: kernels and strides need at least one dimension")
            for start in range(0, M, rows):
                n = min(rows, M - start)
                parts = []
                for member, (shape, dtype), width in zip(members, headers, (1, N * K, N * K)):
                    data = member.read(n * width * dtype.itemsize)
                    if len(data) != n * width * dtype.itemsize:
                        raise ValueError("the array data ends early")
                    parts.append(np.frombuffer(data, dtype=dtype).astype(np.int64))
                layers, kernel, stride = parts[0], parts[1].reshape(n, N, K), parts[2].reshape(n, N, K)
                if int(layers.min()) < 1 or int(layers.max()) > N:
                    raise NasgenError(f"{path}: a layer count is outside 1..{N}")
                if kernel.size and (int(min(kernel.min(), stride.min())) < 0
                                    or int(max(kernel.max(), stride.max())) > MAX_INT):
                    raise NasgenError(f"{path}: kernels and strides must be integers in 0..{MAX_INT} (0 past an "
                                      "architecture's last layer)")
                yield layers, kernel, stride
        except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError) as exc:
            if isinstance(exc, NasgenError):
                raise
            raise NasgenError(f"{path} is not a readable npz file ({str(exc)[:200]})") from None
        finally:
            for member in members:
                member.close()
