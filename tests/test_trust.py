"""Poisoned inputs are refused before anything is compiled, naming the argument, the value and the fix
(issue 11), and the install metadata promises only what the code runs on. No test here compiles a
propagator: the checks run outside jit, and ``jaxfwi.physics._core.simulate_jit`` is replaced by a
function that fails if it is reached."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxfwi
from jaxfwi import models
from jaxfwi.inversion import fit

ROOT = Path(__file__).resolve().parents[1]
NT, DT = 100, 0.002
V = np.full((12, 24), 2000.0, np.float32)
W = np.asarray(jaxfwi.ricker(8.0, NT, DT))


@pytest.fixture(autouse=True)
def no_compile(monkeypatch):
    from jaxfwi.physics import propagation as propagate  # the module (the package also exports a function `propagate`)

    def boom(*a, **k):
        raise AssertionError("reached the compiled propagator")

    monkeypatch.setattr(propagate, "simulate_jit", boom)


def _survey(w=W, n_shots=2):
    return jaxfwi.Survey.surface_line(V.shape, n_shots, w, DT)


def test_survey_refuses_bad_wavelets_and_empty_geometry():
    w_nan = W.copy()
    w_nan[10] = np.nan
    with pytest.raises(ValueError, match=r"wavelet has a non-finite sample \(nan\) at index \[10\]"):
        _survey(w_nan)
    with pytest.raises(ValueError, match="zero time samples"):
        _survey(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="real source time function"):
        _survey(W.astype(np.complex64))
    with pytest.raises(ValueError, match="n_shots=0"):
        _survey(n_shots=0)
    rec = np.zeros((2, 3, 2), int)
    with pytest.raises(ValueError, match="zero shots"):
        jaxfwi.Survey(np.zeros((0, 1, 2), int), np.zeros((0, 3, 2), int), W, DT)
    with pytest.raises(ValueError, match="zero sources per shot"):
        jaxfwi.Survey(np.zeros((2, 0, 2), int), rec, W, DT)
    with pytest.raises(ValueError, match="zero receivers per shot"):
        jaxfwi.Survey(np.zeros((2, 1, 2), int), np.zeros((2, 0, 2), int), W, DT)


def test_forward_refuses_poisoned_inputs():
    s = _survey()
    w_nan = W.copy()
    w_nan[3] = np.inf
    with pytest.raises(ValueError, match="survey.wavelet has a non-finite sample"):
        jaxfwi.forward(V, 20.0, s.with_wavelet(w_nan), accuracy=4, pml_width=4)  # bypasses Survey()
    with pytest.raises(ValueError, match=r"pml_width=\[10, 10, 10, 2.5\]: .*whole number"):
        jaxfwi.forward(V, 20.0, s, accuracy=4, pml_width=[10, 10, 10, 2.5])
    with pytest.raises(ValueError, match="pml_width=2.5"):
        jaxfwi.forward(V, 20.0, s, accuracy=4, pml_width=2.5)
    with pytest.raises(ValueError, match="v has dtype complex64; velocities are real"):
        jaxfwi.forward(V.astype(np.complex64), 20.0, s, accuracy=4, pml_width=4)
    with pytest.raises(ValueError, match="empty model"):
        jaxfwi.forward(np.zeros((0, 24), np.float32), 20.0, s, accuracy=4, pml_width=4)


def test_fit_and_invert_refuse_poisoned_inputs():
    s = _survey()
    d = np.zeros((2, 24, NT), np.float32)
    p = models.build("adfwi", V)
    fk = dict(accuracy=4, pml_width=4)
    kw = dict(epochs=1, key=jax.random.key(0), forward_kwargs=fk, progress=False)
    for lr in (float("inf"), float("nan"), 0.0, -1.0, "fast"):
        with pytest.raises(ValueError, match=f"learning_rate={lr!r}"):
            fit(p, d, s, 20.0, learning_rate=lr, **kw)
    with pytest.raises(ValueError, match=r"pml_width=\[10, 10, 10, 2.5\]"):
        fit(p, d, s, 20.0, **dict(kw, forward_kwargs=dict(fk, pml_width=[10, 10, 10, 2.5])))
    with pytest.raises(ValueError, match="complex"):
        fit(p, d + 0j, s, 20.0, **kw)
    with pytest.raises(ValueError, match="resume='maybe'"):
        fit(p, d, s, 20.0, resume="maybe", **kw)
    with pytest.raises(ValueError, match="max_vel=2000 m/s is below the upper velocity bound 2500"):
        fit(p, d, s, 20.0, **dict(kw, forward_kwargs=dict(fk, max_vel=2000.0)))
    with pytest.raises(ValueError, match="complex dtype"):
        jaxfwi.invert(d, s, 20.0, V.astype(np.complex64), method="adfwi", epochs=1)
    with pytest.raises(ValueError, match="complex dtype"):
        models.Parameterization(models.Grid(shape=V.shape), V.astype(np.complex64))


def test_install_metadata_and_docs_links():
    text = (ROOT / "pyproject.toml").read_text()
    if sys.version_info >= (3, 11):
        import tomllib
        meta = tomllib.loads(text)["project"]
    else:  # pragma: no cover
        pytest.skip("tomllib")
    assert meta["requires-python"] == ">=3.11"  # tomllib (jaxfwi run --config)
    floors = {re.split(r"[<>=!]", d)[0]: d for d in meta["dependencies"]}
    assert floors["jax"] == "jax>=0.8.0"  # shard_map(check_vma=False) over the propagator's custom_jvp
    assert floors["optax"] == "optax>=0.2.5"  # optax.tree.norm
    for f in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = f.read_text()
        assert "../shared" not in text, f"{f.name} points outside the repository"
        for target in re.findall(r"\]\(([^)#]+)", text):  # every relative Markdown link resolves inside it
            if "://" not in target and not target.startswith("mailto:"):
                path = (f.parent / target).resolve()
                assert ROOT in path.parents or path == ROOT, f"{f.name}: link {target} leaves the repository"
                assert path.exists(), f"{f.name}: link {target} does not exist"
