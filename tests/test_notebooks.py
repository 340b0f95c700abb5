"""Execute every notebook in ``notebooks/`` at its small size (``JAXFWI_NB_SMALL=1``).

Each notebook runs in a fresh ``python3`` kernel (nbclient) in a temporary working
directory; any failing cell (an exception or a failed ``assert`` in the notebook) fails
the test. Needs the ``dev`` extra (``nbclient``, ``nbformat``, ``ipykernel``); skipped
cleanly when they are missing.

Environment: ``JAXFWI_NB_SMALL=1``; ``JAXFWI_DATA`` is removed so the
notebooks never depend on the benchmark data; ``XLA_FLAGS`` is restored to what it was before
``conftest.py`` added LLVM ``-O0`` for the test workers. ``JAXFWI_NB_TIMEOUT`` sets the per-cell
timeout in seconds (default 300).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = int(os.environ.get("JAXFWI_NB_TIMEOUT", "300"))


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 6, f"expected the six notebooks in {NOTEBOOK_DIR}, found {NOTEBOOKS}"


def test_notebooks_are_stripped():
    """Outputs are not committed: every code cell has no outputs and no execution count."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, (
                    f"{path.name}: cell {i} has outputs; strip them before committing (see notebooks/README.md)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXFWI_NB_SMALL", "1")
    monkeypatch.delenv("JAXFWI_DATA", raising=False)
    monkeypatch.delenv("JAXFWI_NB_BENCHMARK", raising=False)
    if "JAXFWI_TEST_KERNEL_XLA_FLAGS" in os.environ:  # without the workers' -O0 (conftest.py)
        monkeypatch.setenv("XLA_FLAGS", os.environ["JAXFWI_TEST_KERNEL_XLA_FLAGS"])
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.time()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:  # the message holds the traceback of the cell
        pytest.fail(f"{path.name}: a cell failed:\n{e}", pytrace=False)
    print(f"{path.name}: {time.time() - t0:.1f} s")
