"""The command line: outputs, reproducibility, files and sidecars, bad input (in-process), interruption (subprocess)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import numpy as np

import nasgen
from nasgen.space.definition import Architecture, SearchSpace, check_membership

from .conftest import run_cli


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run(*args, check=True, stdin=None):
    """``nasgen ARGS`` in this process (``main(argv)``), with its exit code, stdout and stderr."""
    result = _Result(*run_cli(*args, stdin=stdin))
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {result.stderr}")
    return result


def test_entry_point_runs_as_a_program():
    proc = subprocess.run([sys.executable, "-m", "nasgen", "count", "-I", "30", "-O", "20", "-n", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "9"
    version = subprocess.run([sys.executable, "-m", "nasgen", "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"nasgen {nasgen.__version__}"


def test_count_last_line_and_json():
    out = run("count", "-I", "30", "-O", "20", "-n", "2", "-N", "5", "--pool", "2,1").stdout.splitlines()
    assert out[-1] == "33"
    assert out[:4] == ["2 layers: 7", "3 layers: 15", "4 layers: 10", "5 layers: 1"]
    data = json.loads(run("count", "-I", "30,30", "-O", "20,20", "-n", "2", "-N", "2", "--json").stdout)
    assert data["count"] == 81 and data["by_layers"] == {"2": 81}
    assert run("count", "-I", "3", "-O", "1", "-n", "3").stdout.strip() == "0"  # empty is not an error


def test_sample_reproducible_members_and_summary(tmp_path):
    args = ["sample", "-I", "30,30", "-O", "20,20", "-n", "2", "-N", "3", "--pool", "2,1", "--samples", "20",
            "--seed", "42"]
    first = run(*args)
    second = run(*args)
    assert first.stdout == second.stdout
    lines = first.stdout.splitlines()
    assert len(lines) == 20 and len(set(lines)) == 20
    space = SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1))
    archs = [Architecture.from_json(line) for line in lines]
    for a in archs:
        check_membership(space, a)
    adj = nasgen.adj_t(space, archs)
    assert f"Adj_T = {adj:.3f}" in first.stderr
    out_file = tmp_path / "s.jsonl"
    run(*args, "--output-file", str(out_file))
    assert out_file.read_text() == first.stdout
    config = json.loads((tmp_path / "s.jsonl.config.json").read_text())
    assert config["sampling"]["seed"] == 42 and config["space"]["input_shape"] == [30, 30]
    assert config["count"] == nasgen.count(space) and config["written"] == 20
    assert config["adj_t"] == pytest.approx(adj) and config["command_line"][:2] == ["nasgen", "sample"]
    assert config["nasgen_version"] == nasgen.__version__
    adj_out = run("adj", str(out_file), "-I", "30,30", "-O", "20,20", "-n", "2", "-N", "3", "--pool", "2,1")
    assert float(adj_out.stdout.strip().splitlines()[-1]) == pytest.approx(adj, rel=1e-5)
    # without space options, adj takes the space from the sidecar; '-' reads standard input
    assert float(run("adj", str(out_file)).stdout) == pytest.approx(adj, rel=1e-5)
    piped = run("adj", "-", "-I", "30,30", "-O", "20,20", "-n", "2", "-N", "3", "--pool", "2,1",
                stdin=out_file.read_bytes())
    assert float(piped.stdout) == pytest.approx(adj, rel=1e-5)


def test_npz_output_holds_the_same_architectures(tmp_path):
    args = ["sample", "-I", "30,30", "-O", "20,20", "-n", "2", "-N", "3", "--samples", "50", "--seed", "5"]
    jsonl = run(*args).stdout
    run(*args, "-o", str(tmp_path / "s.npz"))
    layers, kernel, stride = nasgen.read_arrays(tmp_path / "s.npz")
    assert kernel.dtype == np.int64 and len(layers) == 50
    with np.load(tmp_path / "s.npz") as raw:  # stored in the smallest integer type that holds them
        assert raw["kernel"].dtype == np.uint8
    archs = nasgen.space.encoding.arrays_to_architectures(layers, kernel, stride)
    assert [a.to_json() for a in archs] == jsonl.splitlines()
    # every reader takes both formats, and the npz sidecar gives the space
    assert run("adj", str(tmp_path / "s.npz")).stdout == run("adj", "-", "-I", "30,30", "-O", "20,20", "-n", "2",
                                                             "-N", "3", stdin=jsonl.encode()).stdout
    shown = run("show", "--file", str(tmp_path / "s.npz"), "--index", "3").stdout
    assert "x".join(map(str, archs[3].kernel[0])) in shown.splitlines()[3]


def test_refused_run_leaves_existing_output_untouched(tmp_path):
    target = tmp_path / "g.jsonl"
    run("sample", "-I", "30", "-O", "20", "-n", "2", "-M", "3", "-o", str(target))
    before, sidecar = target.read_text(), (tmp_path / "g.jsonl.config.json").read_text()
    for bad in (["-I", "3", "-O", "1", "-n", "3", "-M", "2"], ["-I", "30", "-O", "20", "-M", "2", "--timeout", "0"],
                ["-I", "30", "-O", "20", "-M", "2", "--format", "npz", "--seed", "-1"]):
        result = run("sample", *bad, "-o", str(target), check=False)
        assert result.returncode == 2, result.stderr
    assert target.read_text() == before and (tmp_path / "g.jsonl.config.json").read_text() == sidecar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.jsonl", "g.jsonl.config.json"]


def test_show_table():
    out = run("show", "-I", "30", "-O", "20", "-n", "2", "--architecture",
              '{"layers": 2, "kernel": [[5], [7]], "stride": [[1], [1]]}').stdout
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows[0] == ["input", "30"]
    assert rows[1] == ["1", "5", "1", "26", "26"]
    assert rows[2] == ["2", "7", "1", "20", "20"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["count", "-I", "20", "-O", "30"], "smaller than output size"),
        (["count", "-I", "0", "-O", "0"], "positive integer"),
        (["count", "-I", "-3", "-O", "1"], "positive integer"),
        (["count", "-I", "2.5", "-O", "1"], "integers"),
        (["count", "-I", "30,30", "-O", "20"], "same number of dimensions"),
        (["count", "-I", "30", "-O", "20", "-n", "3", "-N", "2"], "n=3 is larger than max layers N=2"),
        (["count", "-I", "30", "-O", "20", "-n", "0"], "min layers"),
        (["count", "-I", "30", "-O", "20", "--kernel", "5:3"], "empty"),
        (["count", "-I", "30", "-O", "20", "--stride", "x"], "MIN:MAX"),
        (["count", "-I", "10", "-O", "2", "--pool", "11,1"], "pool kernel 11 is larger"),
        (["count", "-I", "10", "-O", "2", "--rounding", "ceil"], "invalid choice"),
        (["count", "-I", "300000", "-O", "1"], "GiB"),
        (["sample", "-I", "3", "-O", "1", "-n", "3", "--samples", "2"], "empty"),
        (["sample", "-I", "30", "-O", "20", "--samples", "-1"], "--samples"),
        (["sample", "-I", "30", "-O", "20", "-n", "2"], "needs a number of samples"),
        (["sample", "-I", "30", "-O", "20", "-M", "2", "--seed", "-4"], "seed"),
        (["sample", "-I", "30", "-O", "20", "-M", "2", "--pivot-k", "3"], "--pivot-k does not apply"),
        (["sample", "-I", "30", "-O", "20", "-M", "2", "--method", "limited", "--with-replacement"], "never repeats"),
        (["sample", "-I", "30", "-O", "20", "-M", "2", "--format", "npz"], "needs a file"),
        (["count", "-I", "30", "-O", "20", "--kernel", "1:9223372036854775808"], "range bounds"),
        (["count", "-I", "1" * 400, "-O", "1"], "integers"),
        (["adj", "x.jsonl"], "give the search space"),
        (["show", "--rank", "3"], "give the search space"),
        (["show", "-I", "30", "-O", "20", "-n", "2", "--architecture", '{"layers": 2, "kernel": [[5], [8]], '
                                                                       '"stride": [[1], [1]]}'],
         "after layer 2 the shape is (19,)"),
        (["show", "-I", "30", "-O", "20", "-n", "2", "--architecture", '{"layers": 2, "kernel": [[5], [40]], '
                                                                       '"stride": [[1], [1]]}'],
         "layer 2, dimension 0"),
    ],
)
def test_bad_input_one_line_exit_2(args, fragment):
    proc = run(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nasgen: error:")
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_adj_malformed_jsonl(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"layers": 2, "kernel": [[5], [7]], "stride": [[1], [1]]}\n{"layers": 2, "kernel": [[5]\n')
    proc = run("adj", str(bad), "-I", "30", "-O", "20", "-n", "2", check=False)
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"layers": 2, "kernel": [[5], [8]], "stride": [[1], [1]]}\n')
    proc = run("adj", str(foreign), "-I", "30", "-O", "20", "-n", "2", check=False)
    assert proc.returncode == 2 and "architecture 1" in proc.stderr
    proc = run("adj", str(tmp_path / "missing.jsonl"), "-I", "30", "-O", "20", check=False)
    assert proc.returncode == 2 and "cannot read" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_sampling_leaves_a_valid_file(tmp_path, sig, terminal_sigint):
    out_file = tmp_path / "big.jsonl"

    def partial():  # the run writes beside the target and renames into place when it ends
        parts = list(tmp_path.glob(".big.jsonl.*.part"))
        return parts[0] if parts else None

    proc = subprocess.Popen(
        [sys.executable, "-m", "nasgen", "sample", "-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5",
         "--samples", "100000000", "--with-replacement", "--output-file", str(out_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (partial() is None or partial().stat().st_size < 200_000):
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:  # never leave a 10^8-architecture run writing behind a failed test
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    text = out_file.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) > 100
    space = SearchSpace((224, 224), (7, 7), 1, 5)
    for line in lines[:: max(1, len(lines) // 200)] + lines[-1:]:
        check_membership(space, Architecture.from_json(line))
    assert f"{len(lines)} architectures" in err and "interrupted" in err
    assert partial() is None and json.loads((tmp_path / "big.jsonl.config.json").read_text())["stop"] == "interrupted"


def test_show_resnet_for_any_image_shape_without_jax():
    for shape, first in (("32,32,3", "8x8 -> 1x1"), ("224,224,3", "56x56 -> 7x7"), ("28,28", "7x7 -> 1x1")):
        out = run("show", "--model", "resnet18", "--image-shape", shape).stdout
        assert out.splitlines()[0].startswith(first), out
        assert f"ResNet18 on {shape.replace(',', 'x')}" in out or shape == "28,28"
    script = ("import sys; from nasgen.cli.main import main; main(['show', '--model', 'resnet18', '--image-shape', "
              "'64,64,3']); main(['show', '-I', '28,28', '-O', '7,7', '-n', '2', '--model', 'chain']); "
              "sys.exit(any(m.split('.')[0] in ('jax', 'flax', 'optax', 'z3') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 0
    bad = run("show", "--model", "resnet18", "--image-shape", "16,16,3", check=False)
    assert bad.returncode == 2 and "at least 17x17" in bad.stderr
    bad = run("show", "--model", "chain", "-I", "28", "-O", "7", "--width-multiplier", "2", check=False)
    assert bad.returncode == 2 and "apply to --model resnet18" in bad.stderr
