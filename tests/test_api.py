"""The inversion boundary (issue 14): one method registry, the optax-style compiled step
(``make_fit_step``), and compile once: a second call with the same shapes and settings but other
data, another initial model (of the same velocity range) or another key compiles nothing."""
import dataclasses
import inspect
import warnings

import jax
import jax.monitoring
import numpy as np
import pytest

import jaxfwi
from jaxfwi import methods, models
from jaxfwi.inversion import FitConfig, fit, invert, make_fit_step
from jaxfwi.inversion.config import resolve_forward

NZ, NX, DX, DT, NT = 12, 16, 20.0, 2e-3, 120
FWD = dict(accuracy=4, pml_width=4)

_EVENTS: list = []
jax.monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: _EVENTS.append(name))
# a lowering happens for every program not found in the in-memory cache (a backend compile
# follows unless the persistent cache of the test suite has it)
_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_to_mlir_module_duration", "/jax/core/compile/backend_compile_duration")


class Compiles:
    """Counts lowerings and backend compiles inside a ``with`` block."""

    def __enter__(self):
        self.start = len(_EVENTS)
        return self

    def __exit__(self, *exc):
        self.events = [e for e in _EVENTS[self.start:] if e in _COMPILE_EVENTS]

    @property
    def count(self):
        return len(self.events)


@pytest.fixture(scope="module")
def problem():
    z = np.linspace(0.0, 1.0, NZ, dtype=np.float32)[:, None] * np.ones((1, NX), np.float32)
    v_true = (2000.0 + 1000.0 * z).astype(np.float32)
    v_true[5:8, 5:11] += 200.0
    survey = jaxfwi.Survey.surface_line((NZ, NX), 2, jaxfwi.ricker(10.0, NT, DT), DT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d1 = np.asarray(jaxfwi.forward(v_true, DX, survey, **FWD))
    d2 = (d1 * 1.01 + 1e-3 * np.std(d1)).astype(np.float32)
    v1 = (2000.0 + 1000.0 * z).astype(np.float32)
    v2 = v1.copy()
    v2[1:-1, 1:-1] = 0.5 * (v1[1:-1, 1:-1] + v_true[1:-1, 1:-1])  # same min and max: the same max_vel
    v2 = np.minimum(v2, v1.max())
    return dict(survey=survey, d1=d1, d2=d2, v1=v1, v2=v2, v_true=v_true)


# --------------------------------------------------------------------------- registry


def test_registry_is_the_one_source_of_method_knowledge():
    from jaxfwi.experiments.report import METHOD_ORDER
    from jaxfwi.inversion import METHOD_DEFAULTS, method_defaults
    from jaxfwi.kernels import GRID_METHODS

    names = methods.names()
    assert names[:4] == ("adfwi", "adfwi-tv", "weci-fwi", "ms-fwi") and len(names) == 12
    assert tuple(models.METHODS) == names == METHOD_ORDER
    assert GRID_METHODS == tuple(s.name for s in methods.specs() if s.identity_kernel)
    for spec in methods.specs():
        assert models.METHODS[spec.name] == (spec.representation, dict(spec.settings))
        assert models.default_learning_rate(spec.name) == spec.learning_rate == method_defaults(spec.name)[
            "learning_rate"]
        assert models.default_scale(spec.name) == spec.scale
        assert spec.paper
    assert METHOD_DEFAULTS == {"adfwi-tv": {"regularizer": "tv"}, "weci-fwi": {"misfit": "weci"},
                               "ms-fwi": {"multiscale": True}}
    # one normaliser: case, "_", blanks and aliases
    assert methods.canonical_name("AD_FWI") == "adfwi"
    for spelling in ("WECI_FWI", "weci fwi", " Weci-Fwi "):
        assert methods.canonical_name(spelling) == "weci-fwi"
    with pytest.raises(ValueError, match="did you mean ig-fwi"):
        methods.get("ig-fw")


def test_misspelt_grid_method_takes_the_identity_kernel_branch():
    """``kernels/methods.py`` only lower-cased the name: "weci_fwi" missed the wave-kernel branch."""
    from jaxfwi.kernels import method_problem

    v = np.full((NZ, NX), 2000.0, np.float32)
    s = jaxfwi.Survey.surface_line((NZ, NX), 1, jaxfwi.ricker(10.0, 40, DT), DT)
    for name in ("weci_fwi", "ADFWI_TV", "MS FWI"):
        _, rep, point, v0 = method_problem(name, v, s, DX, max_vel=2500.0, **FWD)
        assert rep is None and point is v0
    _, rep, point, _ = method_problem("IFWI", v, s, DX, max_vel=2500.0, **FWD)
    assert rep is not None and isinstance(point, dict)


def test_adding_a_method_is_one_entry(problem):
    spec = methods.MethodSpec("tiny-siren", "Tiny-SIREN", models.Siren, {"width": 8, "depth": 2},
                              learning_rate=3e-4, misfit="l1", paper="a test", aliases=("ts",))
    methods.register(spec)
    try:
        assert methods.get("TS") is spec and "tiny-siren" in models.METHODS
        p = models.build("tiny_siren", problem["v1"])
        assert isinstance(p.module, models.Siren) and p.module.width == 8 and p.scale == 1000.0
        from jaxfwi.inversion import method_defaults
        assert method_defaults("tiny-siren") == {"misfit": "l1", "regularizer": None, "multiscale": None,
                                                 "learning_rate": 3e-4}
        with pytest.raises(ValueError, match="taken"):
            methods.register(spec)
    finally:
        methods._REGISTRY.pop("tiny-siren")
        methods._ALIASES.pop("ts")


def test_fit_keywords_are_the_fit_config_fields():
    sig = inspect.signature(fit)
    fields = {f.name: f.default for f in dataclasses.fields(FitConfig)}
    kw = {n: p.default for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY and n != "key"}
    assert set(kw) == set(fields)
    for n, d in kw.items():
        assert (d is inspect.Parameter.empty and fields[n] is dataclasses.MISSING) or d == fields[n], n
    with pytest.raises(ValueError, match="shot_order"):
        FitConfig(epochs=1, shot_order="backwards")


# --------------------------------------------------------------------------- compile once


def test_parameterization_is_a_pytree_with_array_leaves(problem):
    p = models.build("ifwi", problem["v1"], width=8, depth=2)
    leaves, tree = jax.tree_util.tree_flatten(p)
    assert len(leaves) == 3 and leaves[0] is p.m0  # m0, vmin, vmax
    q = models.build("ifwi", problem["v2"], width=8, depth=2)
    assert jax.tree_util.tree_structure(q) == tree  # same static part: one compiled program
    assert jax.tree_util.tree_structure(models.build("ifwi", problem["v2"], width=16, depth=2)) != tree


@pytest.mark.parametrize("method", ["adfwi", "ifwi"])
def test_second_invert_compiles_nothing(problem, method):
    kw = dict(method=method, epochs=2, progress=False, v_true=problem["v_true"], **FWD)
    if method == "ifwi":
        kw.update(width=8, depth=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Compiles() as first:
            r1 = invert(problem["d1"], problem["survey"], DX, problem["v1"], key=jax.random.key(0), **kw)
        with Compiles() as second:
            r2 = invert(problem["d2"], problem["survey"], DX, problem["v2"], key=jax.random.key(1), **kw)
    assert first.count > 0
    assert second.count == 0, second.events
    assert not np.allclose(r1.velocity, r2.velocity)


def test_fit_seeds_and_pretrain_compile_once(problem):
    kw = dict(epochs=1, progress=False, learning_rate=1e-4, forward_kwargs=FWD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (v, d) in enumerate(((problem["v1"], problem["d1"]), (problem["v2"], problem["d2"]))):
            p = models.build("ifwi", v, width=8, depth=2)
            keys = jax.random.split(jax.random.key(i), 2)
            with Compiles() as c:
                jaxfwi.fit_seeds(p, d, problem["survey"], DX, keys=keys, **kw)
                p.pretrain(p.init(keys[0]), steps=3, lr=1e-3)
            if i:
                assert c.count == 0, c.events


def test_make_fit_step_is_the_compiled_core(problem):
    """``init, step = make_fit_step(config)``: pure, the same epoch as ``fit``."""
    from jaxfwi.inversion import StepConfig, objective
    from jaxfwi.inversion.step import default_optimizer

    param = models.build("adfwi", problem["v1"])
    fo, _ = resolve_forward(FWD, param, problem["survey"], DX, warn=False)
    cfg = StepConfig(optimizer=default_optimizer("adam"), misfit=objective.resolve_misfit("l2"), regularizer=None,
                     dx=(DX, DX), forward=fo, n_shots=2, batch=2, dt=DT)
    init, step = make_fit_step(cfg)
    params = param.init(jax.random.key(0))
    state = init(params, 5.0)
    key_data = jax.random.key_data(jax.random.split(jax.random.key(0))[1])
    s1, rec = step(param, state, 0, 1, key_data, problem["d1"], problem["survey"], None)
    s1b, _ = step(param, state, 0, 1, key_data, problem["d1"], problem["survey"], None)  # pure: same again
    for a, b in zip(jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s1b)):
        np.testing.assert_array_equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxfwi.physics.CoarseGridWarning)
        res = fit(param, problem["d1"], problem["survey"], DX, epochs=1, key=jax.random.key(0), learning_rate=5.0,
                  progress=False, forward_kwargs=FWD, shot_order="cyclic")
    np.testing.assert_allclose(float(rec["loss"]), res.history["loss"][0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(param.velocity(s1.params)), res.velocity, rtol=1e-6)


def test_eigenvalues_compile_once(problem):
    kw = dict(max_vel=3100.0, subsample=jaxfwi.kernels.DataSubsample(time_step=4), model_overrides={"width": 8,
                                                                                                  "depth": 2}, **FWD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, v in enumerate((problem["v1"], problem["v2"])):
            with Compiles() as c:
                jaxfwi.kernels.eigenvalues("ifwi", v, problem["survey"], DX, key=jax.random.key(i), **kw)
            if i:
                assert c.count == 0, c.events


def test_runner_seed_loop_compiles_once(tmp_path):
    from jaxfwi import experiments as ex

    tiny = {"reduce": 1, "epochs": 2, "acquisition": {"shape": [12, 24], "nt": 120, "n_shots": 2, "pml_width": 6,
                                                      "src_spacing_m": 200.0},
            "options": {"accuracy": 4, "width": 8, "depth": 2}}
    scs = ex.expand_grid(tiny, models=["synthetic:default"], inits=["smooth"], conditions=["clean"],
                         methods=["ifwi"], seeds=[0, 1, 2])
    starts = []

    def at_start(epochs_done, params):
        if epochs_done == 0:
            starts.append(len(_EVENTS))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the runner hides only the forward model's expected notes
        ex.run_scenarios(scs, tmp_path, vmap_seeds=False, progress=False, callback=at_start, log=lambda s: None)
    assert len(starts) == 3
    between = [e for e in _EVENTS[starts[1]:starts[2]] if e in _COMPILE_EVENTS]
    assert between == []  # seed 1's epochs, its results and seed 2's set-up
