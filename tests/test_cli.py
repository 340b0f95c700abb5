"""The command line (issue 11): flags checked before modelling, exit statuses, --out reuse, --help.

Runs ``jaxfwi.cli.main`` in-process (no interpreter start-up). The two real inversions use one
tiny configuration (12 x 24 cells, 2 shots, 200 samples, 6 Hz, accuracy 2), compiled once.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import jaxfwi
from jaxfwi import cli

TINY = ["--shape", "12", "24", "--dx", "20", "--shots", "2", "--nt", "200", "--freq", "6", "--accuracy", "2",
        "--pml-width", "4", "--epochs", "2"]


def _exit(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.fixture
def no_modelling(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("modelled before the flags were checked")

    monkeypatch.setattr(jaxfwi, "forward", boom)
    monkeypatch.setattr(jaxfwi, "invert", boom)


def test_usage_errors_exit_2_before_modelling(tmp_path, capsys, no_modelling):
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a numpy file at all")
    bad3d = tmp_path / "cube.npy"
    np.save(bad3d, np.ones((3, 3, 3)))
    out = ["--out", str(tmp_path / "o")]
    cases = {
        ("invert", "--method", "igfwi"): "did you mean ig-fwi",
        ("invert", "--epochs", "0"): "--epochs 0",
        ("invert", "--out", "/proc/x"): "--out '/proc/x' is not a writable folder",
        ("invert", "--shots", "0"): "--shots 0",
        ("invert", "--model", str(garbage)): "could not be read as a .npy file",
        ("forward", "--model", str(bad3d)): "expected a 2-D",
        ("invert", "--model", "marmousi"): "jaxfwi run --models marmousi",
        ("forward", "--dt", "-1"): "--dt -1",
        ("forward", "--freq", "400"): "Nyquist",
        ("kernels", "--methods", "adfwi", "nope"): "--methods 'nope'",
    }
    for argv, want in cases.items():
        extra = [] if "--out" in argv else out
        code, _, err = _exit(list(argv) + extra, capsys)
        assert code == 2, (argv, err)
        assert want in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_help_is_plain_text_with_true_defaults(capsys):
    code, text, _ = _exit(["--help"], capsys)
    assert code == 0 and "``" not in text and ":func:" not in text and ":class:" not in text
    parser = cli.build_parser()
    for cmd, d in cli.DEFAULTS.items():
        code, text, _ = _exit([cmd, "--help"], capsys)
        text = " ".join(text.split())
        assert code == 0
        assert f"(default {d['shape'][0]} {d['shape'][1]})" in text, cmd
        assert f"grid spacing in m (default {d['dx']:g})" in text, cmd
        assert f"surface (default {d['shots']})" in text and f"samples (default {d['nt']})" in text, cmd
        assert f"order (default {d['accuracy']})" in text and f"cells (default {d['pml_width']})" in text, cmd
        assert "docs/datasets.md" in text and "JAXFWI_DATA" in text, cmd  # where the presets are
        args = parser.parse_args([cmd])
        assert (tuple(args.shape), args.dx, args.shots, args.nt, args.accuracy, args.pml_width) == (
            d["shape"], d["dx"], d["shots"], d["nt"], d["accuracy"], d["pml_width"])
    # the kernels defaults are a grid fine enough for their wavelet: no coarse-grid warning
    args = parser.parse_args(["kernels"])
    from jaxfwi.datasets.synthetic import default_model
    from jaxfwi.physics.propagation import plan_propagation
    v = np.asarray(default_model(tuple(args.shape)))
    survey = jaxfwi.Survey.surface_line(v.shape, args.shots, jaxfwi.ricker(args.freq, args.nt, args.dt), args.dt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_propagation(v, args.dx, survey, args.accuracy, args.pml_width)


def test_out_reuse_refused_fresh_resume_and_ctrl_c(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    base = ["invert", *TINY, "--out", out]
    assert cli.main(base) is None
    first = json.load(open(f"{out}/history.json"))
    assert len(first["history"]["loss"]) == 2
    inverted = np.load(f"{out}/inverted.npy")
    # other settings into the same --out: refused before modelling, naming them and --fresh
    for extra, want in ((["--dx", "12"], "--dx 20.0 -> 12.0"), (["--seed", "1"], "--seed 0 -> 1"),
                        (["--method", "ifwi"], "--method adfwi -> ifwi")):
        code, _, err = _exit(base + extra, capsys)
        assert code == 2 and want in err and "--fresh" in err and "Traceback" not in err, err
    code, _, err = _exit(base[:-4] + ["--epochs", "1", "--out", out], capsys)  # fewer epochs than it holds
    assert code == 2 and "2 finished epochs, more than --epochs 1" in err, err
    np.testing.assert_array_equal(np.load(f"{out}/inverted.npy"), inverted)  # the old model is untouched
    # --fresh starts over with the new settings; the same command then resumes it
    real_invert = jaxfwi.invert

    def interrupt_after_1(*a, callback, **k):
        def cb(done, p):
            callback(done, p)
            if done == 1:
                raise KeyboardInterrupt

        return real_invert(*a, callback=cb, **k)

    monkeypatch.setattr(jaxfwi, "invert", interrupt_after_1)
    code, _, err = _exit(base + ["--seed", "1", "--fresh", "--epochs", "3"], capsys)
    assert code == 130 and "interrupted after 1 epochs; run the same command again to resume" in err, err
    assert "Traceback" not in err
    monkeypatch.setattr(jaxfwi, "invert", real_invert)
    assert cli.main(base + ["--seed", "1", "--epochs", "3"]) is None
    h = json.load(open(f"{out}/history.json"))
    assert h["settings"]["seed"] == 1 and len(h["history"]["loss"]) == 3
    assert h["history"]["loss"][0] != first["history"]["loss"][0] or h["settings"]["seed"] != 0
