"""``jaxfwi invert --procs N``: N pinned processes joined by jax.distributed give the one-process result."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxfwi import cli
from jaxfwi.launch import available_cores, core_shares

TINY = ["--shape", "12", "24", "--dx", "20", "--shots", "3", "--nt", "200", "--freq", "6", "--accuracy", "2",
        "--pml-width", "4", "--epochs", "3"]


def test_core_shares_split_the_cores_and_refuse_too_many():
    assert core_shares([3, 1, 0, 2], 2) == [[0, 1], [2, 3]]
    assert core_shares([0, 1, 2], 2) == [[0, 1], [2]]
    assert core_shares([5], 1) == [[5]]
    with pytest.raises(ValueError, match="procs=3.*2 core"):
        core_shares([0, 1], 3)


def test_too_many_procs_is_a_usage_error_before_modelling(tmp_path, capsys):
    n = len(available_cores()) + 1
    with pytest.raises(SystemExit) as info:
        cli.main(["invert", *TINY, "--procs", str(n), "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"--procs {n}" in err and "core" in err
    assert not (tmp_path / "o" / "run.json").exists()


def _run(args, tmp):
    out = subprocess.run([sys.executable, "-m", "jaxfwi.cli", "invert", *TINY, *args, "--out", str(tmp)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "JAXFWI_HUGEPAGES": "0"})
    return out


@pytest.mark.skipif(len(available_cores()) < 2, reason="needs 2 cores for 2 pinned processes")
def test_two_processes_agree_with_one(tmp_path):
    two = _run(["--procs", "2"], tmp_path / "two")
    if two.returncode != 0 and ("gloo" in two.stderr.lower() and "not" in two.stderr.lower()):
        pytest.skip("this JAX has no gloo CPU collectives: " + two.stderr[-300:])
    assert two.returncode == 0, two.stderr[-3000:]
    one = _run([], tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())["history"]["loss"]
    h2 = json.loads((tmp_path / "two" / "history.json").read_text())["history"]["loss"]
    assert len(h2) == 3
    np.testing.assert_allclose(h2, h1, rtol=1e-3)  # the order of the float32 sums over shots differs
    v1, v2 = np.load(tmp_path / "one" / "inverted.npy"), np.load(tmp_path / "two" / "inverted.npy")
    assert np.abs(v2 - v1).max() <= 1e-3 * np.abs(v1).max()
    assert "2 processes" in two.stdout
