"""Hostile input and I/O faults: one line ``nasgen: error: ...`` and exit 2, never a traceback, nothing half-written.

Three layers: a corpus of the cases issue 13 reported (and more), driven in-process through
``nasgen.cli.main.main(argv)`` and through the Python API; real faults in subprocesses (a closed pipe,
a full standard output, a file-size limit); and Hypothesis over argument lists and over file
contents (architectures as JSON Lines and npz, sidecar config files).

``NASGEN_FUZZ_EXAMPLES`` sets the number of Hypothesis examples per property (default 200,
enough for CI; the 10,000-input run is ``NASGEN_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz.py``).
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nasgen
from nasgen.common.errors import ArchitectureError, EmptySpaceError, SpaceError
from nasgen.space.definition import Architecture, SearchSpace, check_membership

from .conftest import run_cli

FUZZ_EXAMPLES = int(os.environ.get("NASGEN_FUZZ_EXAMPLES", "200"))
fuzz_settings = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Result:
    def __init__(self, code, stdout, stderr):
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def cli(*args, stdin: bytes | None = None) -> Result:
    """``nasgen ARGS`` in this process; any exception other than argparse's SystemExit fails the test."""
    return Result(*run_cli(*args, stdin=stdin))


def assert_one_line_error(result: Result, fragment: str = "") -> None:
    assert result.code == 2, (result.code, result.stderr[-2000:])
    lines = result.error_lines
    assert len(lines) == 1 and lines[0].startswith("nasgen: error:"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert fragment.lower() in lines[0].lower(), lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a run left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# -- the corpus: command lines ------------------------------------------------------------

SPACE = ["-I", "30", "-O", "20", "-N", "2"]
DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "1" + "0" * 5000

CORPUS = [
    # integers past C's range, in every integer option
    (["count", "-I", "30", "-O", "20", "--kernel", "1:9223372036854775808"], "kernel range"),
    (["count", "-I", "30", "-O", "20", "--stride", "1:99999999999999999999"], "stride range"),
    (["count", "-I", "30", "-O", "20", "--pool", "99999999999999999999,1"], "pool"),
    (["count", "-I", "9" * 400, "-O", "1"], "input shape"),
    (["count", "-I", "30", "-O", "9" * 400], "output shape"),
    (["count", "-I", "30", "-O", "20", "-N", "9" * 30], "layers"),
    (["count", "-I", "30", "-O", "20", "-n", "-3"], "min layers"),
    (["count", "-I", "30,x", "-O", "20"], "input shape"),
    (["count", "-I", "", "-O", "20"], "input shape"),
    (["count", "-I", "30", "-O", "20", "--pool", "2"], "pool"),
    (["count", "-I", "30", "-O", "20", "--kernel", "5"], "kernel range"),
    (["count", "-I", "2147483647", "-O", "1"], "limit"),
    # sampling options
    (["sample", *SPACE, "-M", "3", "--seed", "-1"], "seed"),
    (["sample", *SPACE, "-M", "3", "--seed", "9" * 40], "seed"),
    (["sample", *SPACE, "-M", "-3"], "samples"),
    (["sample", *SPACE, "-M", "3", "--timeout", "inf"], "timeout"),
    (["sample", *SPACE, "-M", "3", "--timeout", "nan"], "timeout"),
    (["sample", *SPACE, "-M", "3", "--timeout", "0"], "timeout"),
    (["sample", *SPACE, "-M", "3", "--timeout", "-1"], "timeout"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--pivot-k", "1e-300"], "pivot"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--pivot-k", "inf"], "pivot"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--query-rlimit", "-5"], "rlimit"),
    (["sample", *SPACE, "-M", "3", "--pivot-k", "3"], "pivot-k"),
    (["sample", *SPACE, "-M", "3", "--where", "k[0][0] > 50"], "empty"),
    (["sample", *SPACE, "-M", "3", "--format", "npz"], "npz"),
    # --where: size, depth, width of the z3 lowering, and index checks
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", "-" * 20000 + "1 > 0"], "characters"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", " + ".join(["k[0][0]"] * 3000) + " > 0"],
     "characters"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", "*".join(["k[0][0]"] * 150) + " > 0"], "levels"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", "-" * 1500 + "1 > 0"], "levels"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", "*".join(["k[0][0]"] * 60) + " > 0"], "bits"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", "k[0][0] > 1" + "0" * 1800], "bits"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where",
      " and ".join("*".join(["k[0][0]"] * 20) + f" > {i}" for i in range(3))], "multiplications"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", "k[9][0] > 1"], "layer index 9"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", "__import__('os')"], "allowed"),
    (["count", *SPACE, "--where", "sum([" + ",".join(["k[0][0]"] * 240) + "]) > 0"], "terms"),
    # empty spaces: one meaning, one exit code, under every method
    (["sample", "-I", "30", "-O", "29", "-M", "3", "--kernel", "3:4"], "empty"),
    (["sample", "-I", "30", "-O", "29", "-M", "3", "--kernel", "3:4", "--method", "uniwit"], "empty"),
    (["sample", "-I", "30", "-O", "29", "-M", "3", "--kernel", "3:4", "--method", "limited"], "empty"),
    (["sample", "-I", "30", "-O", "29", "--kernel", "3:4", "--method", "all"], "empty"),
    (["sample", *SPACE, "-M", "3", "--method", "uniwit", "--where", "k[0][0] > 50"], "empty"),
    # architectures given as JSON
    (["show", *SPACE, "--architecture", DEEP], "deep"),
    (["show", *SPACE, "--architecture", '{"kernel": [[' + HUGE + ']], "stride": [[1]]}'], "digits"),
    (["show", *SPACE, "--architecture", '{"kernel": [[9223372036854775808]], "stride": [[1]]}'], "kernel"),
    (["show", *SPACE, "--architecture", '{"kernel": [[NaN]], "stride": [[1]]}'], "NaN"),
    (["show", *SPACE, "--architecture", '{"kernel": [[3.5]], "stride": [[1]]}'], "kernel"),
    (["show", *SPACE, "--architecture", '{"kernel": "21", "stride": [[1]]}'], "kernel"),
    (["show", *SPACE, "--architecture", "[1, 2]"], "architecture"),
    (["show", *SPACE, "--rank", "9" * 30], "rank"),
    (["show", *SPACE, "--rank", "-1"], "rank"),
    # network options of show
    (["show", "--model", "resnet18", "--width-multiplier", "inf"], "width_multiplier"),
    (["show", "--model", "resnet18", "--width-multiplier", "nan"], "width_multiplier"),
    (["show", *SPACE, "--model", "chain", "--num-classes", "0"], "num_classes"),
    # files that are not there, or not files
    (["adj", "/nonexistent/file.jsonl", *SPACE], "/nonexistent/file.jsonl"),
    (["adj", "/", *SPACE], "directory"),
    (["show", "--file", "/nonexistent.jsonl", *SPACE], "nonexistent"),
    (["sample", *SPACE, "-M", "3", "-o", "/nonexistent/dir/out.jsonl"], "No such file or directory"),
    # issue 32: check, count --timeout, bench --scheduler
    (["check", "/nonexistent/file.jsonl", *SPACE], "nonexistent"),
    (["check", "/", *SPACE], "directory"),
    (["check", "/dev/null", *SPACE], "holds no architectures"),
    (["check", "/dev/null", *SPACE, "--where", "k[7][0] > 1"], "k[7]"),
    (["check", "/dev/null", *SPACE, "--level", "nan"], "--level"),
    (["count", *SPACE, "--where", "sum(k[0]) + sum(k[1]) == 9", "--timeout", "-1"], "--timeout"),
    (["count", *SPACE, "--where", "sum(k[0]) + sum(k[1]) == 9", "--timeout", "nan"], "--timeout"),
    (["bench", *SPACE, "--methods", "exact", "--scheduler", "ucx://127.0.0.1:1", "-o", "/nonexistent/rows.jsonl"],
     "tcp://"),
    (["bench", *SPACE, "--methods", "exact", "--scheduler", "tcp://127.0.0.1:x", "-o", "/nonexistent/rows.jsonl"],
     "tcp://"),
]


@pytest.mark.parametrize("args, fragment", CORPUS, ids=[f"{i}-{c[0][0]}" for i, c in enumerate(CORPUS)])
def test_corpus_one_line_exit_2(args, fragment):
    assert_one_line_error(cli(*args), fragment)


def _npz_declaring(path: Path, rows: int, data: bytes = b"\x01" * 100) -> Path:
    """An npz of a few hundred bytes whose members' headers declare ``rows`` architectures but hold ``data``."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, tail in (("layers", ()), ("kernel", (2, 1)), ("stride", (2, 1))):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False,
                                                              "shape": (rows, *tail)})
                member.write(data)
    return path


@pytest.mark.parametrize("command", [["adj"], ["show", "--file"]])
def test_hostile_array_files_are_one_line_exit_2(tmp_path, monkeypatch, command):
    huge = _npz_declaring(tmp_path / "huge.npz", 10**13)
    assert huge.stat().st_size < 1000
    assert_one_line_error(cli(*command, huge, *SPACE), "declares shape (10000000000000,)")
    short = _npz_declaring(tmp_path / "short.npz", 1000)
    assert_one_line_error(cli(*command, short, *SPACE), "holds 100 bytes")
    # a file without line ends is refused at the line limit, before it is read whole
    monkeypatch.setenv("NASGEN_MEMORY_LIMIT", "64M")
    assert_one_line_error(cli(*command, "/dev/zero", *SPACE), "line 1 is longer than 1.0 MiB")


def test_a_zero_row_npz_is_read_as_no_architecture(tmp_path):
    path = tmp_path / "zero.npz"
    np.savez(path, layers=np.zeros(0, np.uint8), kernel=np.zeros((0, 2, 1), np.uint8),
             stride=np.zeros((0, 2, 1), np.uint8))
    assert_one_line_error(cli("show", "--file", path, *SPACE), "holds no architecture")
    result = cli("adj", path, *SPACE)
    assert result.code == 0 and result.stdout.strip() == "0"  # Adj_T of no pair is 0, as for an empty JSON Lines file


def test_memory_limit_variable(monkeypatch):
    for bad in ("4Q", "-1", "1e9", "0", "G", "9" * 30):
        monkeypatch.setenv("NASGEN_MEMORY_LIMIT", bad)
        assert_one_line_error(cli("count", *SPACE), "NASGEN_MEMORY_LIMIT")
    monkeypatch.setenv("NASGEN_MEMORY_LIMIT", "4G")
    assert cli("count", *SPACE).stdout.strip() == "9"
    # distinct draws track every key: refused up front when that would pass the limit
    monkeypatch.setenv("NASGEN_MEMORY_LIMIT", "1M")
    assert_one_line_error(cli("sample", "-I", "224,224", "-O", "7,7", "-N", "5", "-M", "100000", "-o", "-"), "limit")


def test_file_shaped_folder_and_sidecar_directory(tmp_path):
    (tmp_path / "plain").write_text("x")
    result = cli("sample", *SPACE, "-M", "3", "-o", tmp_path / "plain" / "out.jsonl")
    assert_one_line_error(result, "Not a directory")
    (tmp_path / "X.jsonl.config.json").mkdir()
    assert_one_line_error(cli("sample", *SPACE, "-M", "3", "-o", tmp_path / "X.jsonl"), "X.jsonl.config.json")
    assert not (tmp_path / "X.jsonl").exists() and not leftovers(tmp_path)
    assert_one_line_error(cli("sample", *SPACE, "-M", "3", "-o", tmp_path), "directory")


def test_read_only_file_system_named(tmp_path, monkeypatch):
    """EROFS as the OS reports it (simulated: as root, a real read-only mount needs privileges the tests avoid)."""
    import tempfile as tempfile_module

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile_module, "mkstemp", read_only)
    target = tmp_path / "out.jsonl"
    assert_one_line_error(cli("sample", *SPACE, "-M", "3", "-o", target), f"{target}: Read-only file system")
    assert not target.exists()


# -- refused runs touch nothing -----------------------------------------------------------


@pytest.mark.parametrize("refused", [
    ["--method", "uniwit", "--where", "k[9][0] > 1"],
    ["--method", "uniwit", "--where", "k[0][0] > 50"],
    ["--kernel", "25:29"],
    ["--kernel", "25:29", "--method", "uniwit"],
    ["--timeout", "0"],
    ["--seed", "-1"],
])
def test_refused_run_leaves_output_and_sidecar_untouched(tmp_path, refused):
    target = tmp_path / "g.jsonl"
    assert cli("sample", *SPACE, "-M", "3", "-o", target).code == 0
    before = target.read_bytes(), (tmp_path / "g.jsonl.config.json").read_bytes()
    assert_one_line_error(cli("sample", *SPACE, "-M", "3", "-o", target, *refused))
    assert (target.read_bytes(), (tmp_path / "g.jsonl.config.json").read_bytes()) == before
    assert not leftovers(tmp_path)


def test_device_target_is_written_in_place_without_sidecar(tmp_path, monkeypatch):
    """``-o /dev/full``: the error names the device; the device node is never renamed over."""
    real_replace = os.replace

    def guarded_replace(src, dst, *args, **kwargs):
        if os.path.exists(dst) and not stat.S_ISREG(os.stat(dst).st_mode):
            raise AssertionError(f"os.replace onto the non-regular file {dst}")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", guarded_replace)
    if os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode):
        assert_one_line_error(cli("sample", *SPACE, "-M", "3", "-o", "/dev/full"),
                              "/dev/full: No space left on device")
        assert not os.path.exists("/dev/full.config.json")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    # a FIFO is a device-like target too: the reader gets every line, no sidecar appears
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result = cli("sample", *SPACE, "-M", "5", "-o", fifo)
    received = reader.communicate(timeout=60)[0].decode().splitlines()
    assert result.code == 0, result.stderr
    assert len(received) == 5 and all(Architecture.from_json(line).layers == 2 for line in received)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and not (tmp_path / "pipe.jsonl.config.json").exists()


def _nasgen_with_file_size_limit(size: int, args: list[str]) -> list[str]:
    """A command line running ``nasgen ARGS`` in a child whose files cannot grow past ``size`` bytes.

    The limit is set inside the child (not by ``preexec_fn``: forking a process that has loaded
    JAX warns, and warnings are errors here); with SIGXFSZ ignored, a write past it fails with
    EFBIG as a full disk fails with ENOSPC.
    """
    code = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size}, {size})); "
            f"sys.argv = ['nasgen'] + {args!r}; runpy.run_module('nasgen', run_name='__main__')")
    return [sys.executable, "-c", code]


def test_full_file_system_leaves_no_torn_line(tmp_path):
    """A write past the file-size limit fails as a full disk does: one line, target untouched, no temp file."""
    target = tmp_path / "big.jsonl"
    target.write_text('{"layers": 1, "kernel": [[11]], "stride": [[1]]}\n')
    before = target.read_bytes()
    proc = subprocess.run(_nasgen_with_file_size_limit(50_000, ["sample", "-I", "224,224", "-O", "7,7", "-N", "5",
                                                                "-M", "100000", "-o", str(target)]),
                          capture_output=True, timeout=300)
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr.decode()[-2000:]
    assert err[0].startswith(f"nasgen: error: cannot write {target}: File too large")
    assert target.read_bytes() == before and not leftovers(tmp_path)
    assert not (tmp_path / "big.jsonl.config.json").exists()


def test_full_standard_output_is_one_line_and_cut_at_a_line(tmp_path):
    if os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "nasgen", "count", *SPACE], stdout=full,
                                  stderr=subprocess.PIPE, timeout=300)
        assert proc.returncode == 2 and proc.stderr.decode().strip() == \
            "nasgen: error: cannot write standard output: No space left on device"
    # standard output redirected to a file that stops growing at 5 MB, mid-line in a later chunk:
    # cut back to the last whole chunk
    out = tmp_path / "out.jsonl"
    with open(out, "w") as handle:
        proc = subprocess.run(_nasgen_with_file_size_limit(5_000_000, ["sample", "-I", "224,224", "-O", "7,7",
                                                                       "-N", "5", "-M", "100000"]),
                              stdout=handle, stderr=subprocess.PIPE, timeout=300)
    err = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "cannot write standard output: File too large" in err[0]
    text = out.read_text()
    assert 0 < len(text) < 5_000_000 and text.endswith("\n")
    space = SearchSpace((224, 224), (7, 7), 1, 5)
    for line in text.splitlines()[::500]:
        check_membership(space, Architecture.from_json(line))


def test_closed_pipe_exits_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "nasgen", "sample", "-I", "30", "-O", "1", "-N", "4", "-M",
                             "10000000", "--with-replacement"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


# -- the Python API -----------------------------------------------------------------------

API_SPACE_CASES = [
    dict(pool="21"), dict(kernel_range="12"), dict(stride_range="12"), dict(square="no"), dict(square=1),
    dict(min_layers=True), dict(max_layers=2.0), dict(input_shape=(1e30,)), dict(input_shape="30"),
    dict(input_shape=(2**40,)), dict(output_shape=(10**400,)), dict(pool={2: 1}), dict(pool=(2, 1, 1)),
    dict(rounding=["exact"]), dict(relation=None), dict(kernel_range=(3, 1)), dict(input_shape=()),
    dict(input_shape=[30] * 65, output_shape=[20] * 65), dict(pool=(True, 1)), dict(kernel_range=(1, 2**31)),
]


@pytest.mark.parametrize("change", API_SPACE_CASES, ids=[str(c)[:40] for c in API_SPACE_CASES])
def test_api_space_refuses_quietly_wrong_values(change):
    with pytest.raises(SpaceError):
        SearchSpace(**{"input_shape": (30,), "output_shape": (20,), **change})


def test_api_space_accepts_numpy_integers_and_pairs():
    space = SearchSpace(np.array([30, 30]), (np.int64(20), 20), np.int32(1), 2, pool=[2, 1], square=np.bool_(True))
    assert space.input_shape == (30, 30) and space.pool == ((2, 1), (2, 1)) and space.square is True
    assert type(space.min_layers) is int


@pytest.mark.parametrize("line", [
    DEEP, '{"kernel": [[' + HUGE + ']], "stride": [[1]]}', '{"kernel": [[Infinity]], "stride": [[1]]}',
    '{"kernel": [[true]], "stride": [[1]]}', '{"kernel": [[2147483648]], "stride": [[1]]}', '{"kernel": [[3]]}',
    '{"kernel": [[3]], "stride": [[1]], "layers": 2}', "", "\x00",
])
def test_api_architecture_from_json_raises_architecture_error(line):
    with pytest.raises(ArchitectureError):
        Architecture.from_json(line)


@pytest.mark.parametrize("method", ["exact", "all", "limited", "uniwit"])
def test_api_empty_space_is_one_error_for_every_method(method):
    space = SearchSpace((30,), (29,), kernel_range=(3, 4))
    with pytest.raises(EmptySpaceError):
        nasgen.sample(space, None if method == "all" else 3, method=method)


def test_api_where_limits_and_solver_bounds():
    from nasgen.samplers.z3algebra import MAX_WHERE_BITS, check_where_cost
    from nasgen.common.errors import WhereError
    from nasgen.constraints.language import parse_where

    space = SearchSpace((30,), (20,), 2, 2)
    for text in ("-" * 20000 + "1 > 0", " + ".join(["k[0][0]"] * 3000) + " > 0", "*".join(["k[0][0]"] * 150) + " > 0"):
        with pytest.raises(WhereError):
            parse_where(text)
    wide = parse_where("*".join(["k[0][0]"] * 60) + " > 0")  # 30**60: 295 bits
    assert wide.magnitude(space).bit_length() + 2 > MAX_WHERE_BITS
    with pytest.raises(WhereError, match="bits"):
        check_where_cost(wide, space)
    check_where_cost(parse_where("k[0][0] * k[1][0] > 20 and layers == 2"), space)  # an ordinary one passes


def test_timeout_covers_formula_building(monkeypatch):
    """The deadline starts with the sampler: preparation that would take a minute stops with 'timeout'."""
    import time

    from nasgen.samplers import formula

    def slow_domains(space):  # pure Python, as the domain walk was: endless unless the deadline interrupts it
        started = time.monotonic()
        while time.monotonic() - started < 120:
            time.sleep(0.01)
        raise AssertionError("the deadline did not interrupt the domain walk")

    monkeypatch.setattr(formula, "_layer_domains", slow_domains)
    space = SearchSpace((30,), (20,), 2, 2)
    with nasgen.samplers.registry.draw(space, nasgen.samplers.registry.SamplingConfig(method="uniwit", samples=1, timeout=1)) as run:
        chunks = list(run.draw())
    assert chunks == [] and run.stop_reason == "timeout"
    with pytest.raises(nasgen.samplers.solver.SolverTimeout):
        nasgen.samplers.solver.count_solutions(space, timeout=1)


# -- Hypothesis: argument lists --------------------------------------------------------------

HOSTILE_NUMBERS = ["0", "-1", "1", "2", "3", "30", "-0", "1e30", "1.5", "inf", "-inf", "nan", "", " ", "x",
                   "9" * 20, "9" * 400, "2147483647", "2147483648", "9223372036854775808", "+7", "0x10", "٣",
                   "1_000", "30,30", "30x30", "1:5", "5:1", ":", ",", "2,1:2,1", "-5:-1", "\x00", "1e-300"]
HOSTILE_WHERE = ["k[0][0] > 1", "layers == 2", "k[9][0] > 1", "k[0][9] > 1", "", "1", "k", "s[0]", "size[0][0] < 3",
                 "max(k[0]) > 1", "sum(k[0]) > 2", "k[0][0] // 0 == 0", "abs(-k[0][0]) > 1", "open('x')",
                 "k[0][0] > 1" + "0" * 100, "-" * 300 + "1 > 0", "(" * 120 + "1" + ")" * 120 + " > 0",
                 "k[0][0] ** 2 > 1", "lambda: 0", "k[-1][0] > 0", "[1] > 0", "not layers", "1 < 2 < 3"]


def _value(draw, kind):
    if kind == "where":
        return draw(st.one_of(st.sampled_from(HOSTILE_WHERE), st.text(max_size=40)))
    return draw(st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.integers(-5, 40).map(str),
                          st.lists(st.integers(0, 40), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
                          st.text(max_size=12)))


SPACE_OPTIONS = {"-I": "n", "-O": "n", "-n": "n", "-N": "n", "--pool": "n", "--kernel": "n", "--stride": "n"}
SAMPLE_OPTIONS = {"-M": "n", "--seed": "n", "--timeout": "n", "--where": "where", "--pivot-k": "n",
                  "--query-rlimit": "n", "--method": "method", "--format": "format"}


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(["count", "sample", "show", "adj"]))
    args = [command]
    if command == "adj":
        args.append(draw(st.sampled_from(["/nonexistent.jsonl", "-", "/"])))
    sane = draw(st.booleans())
    if sane:  # a valid small space, so that later options get past the first check
        args += ["-I", draw(st.sampled_from(["30", "30,30", "12,9"])), "-O", draw(st.sampled_from(["20", "20,20", "4,3"]))]
        args += ["-N", draw(st.sampled_from(["1", "2", "3"]))]
    options = dict(SPACE_OPTIONS)
    if command in ("sample", "count"):
        options["--where"] = "where"
    if command == "sample":
        options.update(SAMPLE_OPTIONS)
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(sorted(options)))
        kind = options[name]
        if kind == "method":
            value = draw(st.sampled_from(["exact", "all", "limited", "uniwit", "bogus"]))
        elif kind == "format":
            value = draw(st.sampled_from(["jsonl", "npz", "csv"]))
        else:
            value = _value(draw, kind)
        args += [name, value]
    for flag in ("--rounding", "--relation"):
        if draw(st.booleans()):
            args += [flag, draw(st.sampled_from(["exact", "floor", "gt", "ge", "any", "?"]))]
    for flag in ("--square", "--with-replacement", "--no-prune", "--json"):
        if draw(st.integers(0, 4)) == 0:
            args.append(flag)
    if command in ("sample", "count"):
        args += ["--timeout", "2"]  # the last one wins: every run stays short
    return args


@fuzz_settings
@given(command_lines())
def test_hypothesis_command_lines_never_trace_back(args):
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "out.jsonl"
        if args[0] == "sample" and "--format" not in args:
            args = args + ["-o", str(target)]
        if "-M" not in args and args[0] == "sample":
            args = args + ["-M", "3"]
        result = cli(*args, stdin=b"")
        assert result.code in (0, 2), (args, result.code, result.stderr[-2000:])
        if result.code == 2:
            assert_one_line_error(result)
            assert not target.exists()
        elif args[0] == "sample" and target.exists():
            for line in target.read_text().splitlines():
                Architecture.from_json(line)
            assert json.loads(Path(f"{target}.config.json").read_text())["written"] == len(
                target.read_text().splitlines())
        assert not leftovers(Path(folder))


# -- Hypothesis: file contents ----------------------------------------------------------------

VALID_LINES = ['{"layers": 2, "kernel": [[5], [7]], "stride": [[1], [1]]}',
               '{"layers": 1, "kernel": [[11]], "stride": [[1]]}', '{"kernel": [[3], [9]], "stride": [[1], [1]]}']

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["layers", "kernel", "stride", "space", "x"]), children, max_size=4),
    max_leaves=12)


@st.composite
def jsonl_files(draw):
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        choice = draw(st.integers(0, 4))
        if choice == 0:
            lines.append(draw(st.sampled_from(VALID_LINES)).encode())
        elif choice == 1:
            lines.append(json.dumps(draw(json_values)).encode())
        elif choice == 2:
            line = bytearray(draw(st.sampled_from(VALID_LINES)).encode())
            for _ in range(draw(st.integers(1, 3))):  # mutate a valid line
                i = draw(st.integers(0, len(line) - 1))
                line[i] = draw(st.sampled_from(list(b'[]{}",:0123456789-e. \x00\xff')))
            lines.append(bytes(line))
        elif choice == 3:
            lines.append(draw(st.binary(max_size=30)))
        else:
            lines.append(draw(st.sampled_from([b"[" * 5000, b'{"kernel": [[' + b"9" * 80 + b']], "stride": [[1]]}',
                                               b"", b"\xef\xbb\xbf" + VALID_LINES[0].encode()])))
    return b"\n".join(lines)


@st.composite
def npz_files(draw):
    buffer = io.BytesIO()
    arrays = {}
    m = draw(st.integers(0, 4))
    n = draw(st.integers(0, 3))
    k = draw(st.integers(0, 2))
    dtype = draw(st.sampled_from([np.int64, np.uint64, np.int8, np.float64, np.bool_, np.uint8]))
    for name in draw(st.lists(st.sampled_from(["layers", "kernel", "stride", "other"]), unique=True, max_size=4)):
        shape = (m,) if name == "layers" else (m, n, k)
        values = draw(st.lists(st.integers(-3, 2**64 - 1), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        try:
            arrays[name] = np.array(values, dtype=np.uint64).astype(dtype).reshape(shape)
        except (OverflowError, ValueError):
            arrays[name] = np.zeros(shape, dtype=dtype)
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    if draw(st.booleans()) and data:
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=8))
    return data


@st.composite
def sidecars(draw):
    base = {"space": {"input_shape": [30], "output_shape": [20], "min_layers": 2, "max_layers": 2}}
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return json.dumps(base).encode()
    if choice == 1:
        space = dict(base["space"])
        space[draw(st.sampled_from(sorted(space) + ["pool", "square", "kernel_range", "bogus"]))] = draw(json_values)
        return json.dumps({"space": space}).encode()
    if choice == 2:
        return json.dumps(draw(json_values)).encode()
    return draw(st.binary(max_size=40))


@fuzz_settings
@given(content=st.one_of(jsonl_files(), npz_files()), sidecar=st.none() | sidecars(),
       command=st.sampled_from(["adj", "adj-json", "adj-no-check", "show"]))
def test_hypothesis_files_never_trace_back(content, sidecar, command):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "archs.jsonl"
        path.write_bytes(content)
        if sidecar is not None:
            Path(f"{path}.config.json").write_bytes(sidecar)
        space = [] if sidecar is not None else ["-I", "30", "-O", "20", "-N", "2"]
        if command == "show":
            args = ["show", "--file", path, *space]
        else:
            args = ["adj", path, *space] + {"adj": [], "adj-json": ["--json"], "adj-no-check": ["--no-check"]}[command]
        result = cli(*args)
        assert result.code in (0, 2), (args, result.code, result.stderr[-2000:])
        if result.code == 2:
            assert_one_line_error(result)
        # stdin takes the same path
        piped = cli("adj", "-", "-I", "30", "-O", "20", "-N", "2", stdin=content)
        assert piped.code in (0, 2) and (piped.code == 0 or len(piped.error_lines) == 1), piped.stderr[-2000:]


@fuzz_settings
@given(kwargs=st.fixed_dictionaries({}, optional={
    name: st.one_of(json_values, st.tuples(st.integers(-3, 40), st.integers(-3, 40)), st.integers(-3, 2**40))
    for name in ("input_shape", "output_shape", "min_layers", "max_layers", "pool", "rounding", "relation",
                 "kernel_range", "stride_range", "square")}))
def test_hypothesis_api_space_raises_only_space_error(kwargs):
    kwargs = {"input_shape": (30,), "output_shape": (20,), **kwargs}
    try:
        space = SearchSpace(**kwargs)
    except SpaceError:
        return
    # what was accepted is a valid space, all of whose integers are bounded ints
    assert all(type(v) is int and 1 <= v < 2**31 for v in space.input_shape + space.output_shape)
    assert type(space.square) is bool and space.min_layers <= space.max_layers


@fuzz_settings
@given(line=st.one_of(json_values.map(json.dumps), st.text(max_size=60), jsonl_files().map(bytes)))
def test_hypothesis_api_architecture_from_json(line):
    try:
        arch = Architecture.from_json(line)
    except ArchitectureError:
        return
    assert all(type(v) is int and 1 <= v < 2**31 for row in arch.kernel + arch.stride for v in row)
    try:
        check_membership(SearchSpace((30,), (20,), 1, 3), arch)
    except ArchitectureError:
        pass
