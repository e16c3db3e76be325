"""Execute every teaching notebook top to bottom on the embedded model; a cell that raises fails.

Each notebook runs in a fresh kernel of *this* interpreter (a kernelspec written to a temp
folder, so a user's own ``python3`` kernel is never picked up), in a temp copy of the folder.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
KERNEL = "lang-neurons-test"


def test_notebooks_exist_and_are_stored_without_outputs():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_find_language_neurons.ipynb",
        "02_steering_with_run_with_hooks.ipynb",
        "03_layer_and_overlap_figures.ipynb",
        "04_language_arithmetic.ipynb",
    ]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        assert book.cells[0].cell_type == "markdown", f"{path.name} should open with an explanation"
        assert any("<details>" in c.source for c in book.cells if c.cell_type == "markdown"), f"{path.name}: exercises?"
        for cell in book.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, (
                    f"{path.name}: clear outputs before committing"
                )


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "lang_neurons test", "language": "python"})
    )
    return root


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, kernel_dir: Path, tmp_path: Path):
    work = tmp_path / "notebooks"
    shutil.copytree(path.parent, work)
    book = nbformat.read(work / path.name, as_version=4)
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    client = nbclient.NotebookClient(book, km=km, timeout=600, resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError naming the cell if any cell fails
    ran = [c for c in book.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in ran)
    errors = [o for c in ran for o in c.outputs if o.output_type == "error"]
    assert not errors
