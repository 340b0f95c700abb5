"""The papers' published numbers (METHODS.md section 6), keyed like our scenarios.

Key: ``(model, init, condition, method_label)`` with ``model`` the preset name
(``marmousi``, ``overthrust``, ``salt``, ``bp``, ``fadfwi_overthrust``), ``init`` the
initial-model kind, ``condition`` the canonical text of
:func:`jaxfwi.experiments.config.format_condition` and ``method_label`` the method
(``+pretrain`` for the pretraining strategy). Values: ``{metric: (value, source)}``;
MSE in (km/s)^2 like ours (FAD-FWI reports (m/s)^2: converted, x 1e-6).

Assumptions (METHODS.md does not say): CR-FWI's data-quality columns (noise, cut-off,
sparse shots) start from the smooth initial model; FAD-FWI's "DW-FWI" is our grid
method ``adfwi``; the Denorm paper's network is not ours (its numbers are attached to
whichever CR method runs the Denorm block, as a reference for the *direction* of the
effect).
"""
from __future__ import annotations

__all__ = ["lookup", "TABLE1_COLUMNS", "TABLE1_MSE", "MARMOUSI_SSIM", "LRG_MSE", "FADFWI", "DENORM"]

#: CR-FWI Table 1 columns: (model, init, condition)
TABLE1_COLUMNS = [
    ("marmousi", "smooth", "clean"), ("marmousi", "constant", "clean"), ("marmousi", "smooth", "noise:8"),
    ("marmousi", "smooth", "highpass:6"), ("marmousi", "smooth", "shots:5"),
    ("overthrust", "smooth", "clean"), ("overthrust", "constant", "clean"),
    ("salt", "smooth", "clean"), ("salt", "constant", "clean"),
    ("bp", "smooth", "clean"), ("bp", "constant", "clean"),
]

#: CR-FWI Table 1, MSE (km/s)^2, in TABLE1_COLUMNS order
TABLE1_MSE = {
    "adfwi": [0.2132, 1.1522, 0.5422, 0.4975, 0.4730, 0.0592, 1.3364, 0.6462, 0.6337, 0.1003, 0.4281],
    "adfwi-tv": [0.2449, 0.9386, 0.3875, 0.3764, 0.3547, 0.1154, 1.3142, 0.5041, 0.5318, 0.0995, 0.4259],
    "weci-fwi": [0.2977, 1.2537, 0.6366, 0.3220, 0.3337, 0.1182, 1.5526, 0.3032, 1.0293, 0.0951, 0.3847],
    "ms-fwi": [0.1683, 1.1313, 0.3547, 0.4198, 0.3325, 0.0612, 1.0802, 0.5358, 0.9234, 0.0672, 0.4667],
    "ifwi": [0.1907, 0.9474, 0.3374, 0.3358, 0.3483, 0.0683, 0.6432, 0.1201, 0.7412, 0.0719, 0.1412],
    "winfwi": [0.2013, 0.4689, 0.3514, 0.3460, 0.3239, 0.0682, 0.5738, 0.1223, 0.3549, 0.0812, 0.1083],
    "lr-fwi": [0.1638, 0.2893, 0.2553, 0.2276, 0.2641, 0.0548, 0.1592, 0.2785, 0.2368, 0.0481, 0.1248],
    "mpe-fwi": [0.1427, 2.2266, 0.2990, 0.3322, 0.3338, 0.0613, 1.2887, 0.8534, 1.1008, 0.0586, 1.602],
    "ig-fwi": [0.1423, 0.2961, 0.2151, 0.1846, 0.1654, 0.0587, 0.5724, 0.1181, 0.1883, 0.0521, 0.0843],
}

#: CR-FWI Marmousi SSIM, initial model smooth / linear / constant
MARMOUSI_SSIM = {
    "adfwi": (0.626, 0.269, 0.055), "ms-fwi": (0.709, 0.656, 0.095), "ifwi": (0.651, 0.617, 0.525),
    "winfwi": (0.650, 0.598, 0.562), "lr-fwi": (0.685, 0.666, 0.592), "mpe-fwi": (0.718, 0.368, 0.189),
    "ig-fwi": (0.718, 0.713, 0.677),
}

#: LRG-FWI, constant initial model, MSE
LRG_MSE = {"marmousi": 0.1995, "overthrust": 0.1354, "salt": 0.2179}

#: FAD-FWI Overthrust: condition -> method -> (MSE (m/s)^2, SSIM, PSNR dB)
FADFWI = {
    "clean": {"adfwi": (113.94, 0.99, 50.55), "fad-fwi": (124.59, 0.99, 50.16)},
    "highpass:2.5": {"adfwi": (200.87, 0.98, 48.09), "fad-fwi": (132.03, 0.99, 49.91)},
    "noise:0.5": {"adfwi": (317.46, 0.96, 46.10), "fad-fwi": (186.22, 0.98, 48.41)},
    "noise:0.5+highpass:2.5": {"adfwi": (318.96, 0.96, 46.08), "fad-fwi": (180.29, 0.98, 48.55)},
}

#: Denorm paper, Marmousi MSE: init -> (pretraining, denormalisation)
DENORM = {"smooth": (0.1839, 0.1517), "linear": (0.3945, 0.2002)}


def _build() -> dict:
    table: dict = {}

    def put(key, metric, value, source):
        table.setdefault(key, {}).setdefault(metric, (value, source))

    for method, vals in TABLE1_MSE.items():
        for (model, init, cond), v in zip(TABLE1_COLUMNS, vals):
            put((model, init, cond, method), "mse", v, "CR-FWI T1")
    for method, vals in MARMOUSI_SSIM.items():
        for init, v in zip(("smooth", "linear", "constant"), vals):
            put(("marmousi", init, "clean", method), "ssim", v, "CR-FWI")
    for model, v in LRG_MSE.items():
        put((model, "constant", "clean", "lrg-fwi"), "mse", v, "CR-FWI")
    for cond, per in FADFWI.items():
        for method, (m, s, p) in per.items():
            key = ("fadfwi_overthrust", "profile", cond, method)
            put(key, "mse", m * 1e-6, "FAD-FWI")
            put(key, "ssim", s, "FAD-FWI")
            put(key, "psnr", p, "FAD-FWI")
    return table


_TABLE = _build()
_CR_METHODS = ("ifwi", "winfwi", "lr-fwi", "mpe-fwi", "ig-fwi", "lrg-fwi")


def lookup(model: str, init: str, condition: str, method_label: str) -> dict:
    """Published ``{metric: (value, source)}`` for a scenario (empty dict if none).

    ``model`` may carry a reduction suffix (``marmousi/r2``): the published value of the
    paper's grid is returned (the comparison is then only indicative). ``init`` is the
    initial-model kind (a perturbed or re-valued initial model has no published number:
    pass its label, e.g. ``smooth+10%``, and nothing matches).
    """
    model = model.split("/")[0]
    out = dict(_TABLE.get((model, init, condition, method_label), {}))
    method, _, strategy = method_label.partition("+")
    if model == "marmousi" and condition == "clean" and init in DENORM and method in _CR_METHODS:
        pre, den = DENORM[init]
        if strategy == "pretrain":
            out.setdefault("mse", (pre, "Denorm"))
        elif not strategy:
            out.setdefault("mse", (den, "Denorm"))
    return out
