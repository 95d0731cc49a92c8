"""notebooks/quickstart.ipynb: executed in a real Jupyter kernel (its outputs checked against the files its runs
wrote), and committed without outputs."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def outputs(notebook: nbformat.NotebookNode, kind: str) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs if output.output_type == kind]


@pytest.mark.slow
def test_quickstart_runs_in_a_kernel_and_prints_what_its_runs_wrote(tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert not outputs(notebook, "error")
    text = "".join(output.text for output in outputs(notebook, "stream") if output.name == "stdout")

    metrics = json.loads((tmp_path / "lightning_logs" / "iris_mlp_classifier" / "version_0" / "metrics.json").read_text())
    printed = float(re.search(r"^test/acc = (\S+)$", text, re.MULTILINE).group(1))
    assert printed == metrics["test"]["test/acc"]
    reloaded = float(re.search(r"^accuracy of the loaded checkpoint on the test rows = (\S+)$", text, re.MULTILINE).group(1))
    assert reloaded == pytest.approx(metrics["test"]["test/acc"], abs=1e-6)  # the checkpoint predicts what was tested

    from lightning_models import load

    best = metrics["checkpoints"]["best"]
    flowers = [{"sepal_length": 5.9, "sepal_width": 3.0, "petal_length": 4.2, "petal_width": 1.5},
               {"sepal_length": 6.7, "sepal_width": 3.1, "petal_length": 5.6, "petal_width": 2.4}]
    expected = load(best).predict(flowers)  # the same checkpoint, predicted here
    for number, (label, probability) in enumerate(zip(expected.labels, expected.probability), start=1):
        assert f"flower {number}: {label} (p = {probability:.4f})" in text

    shown = [output.data for output in outputs(notebook, "display_data")]
    assert any("image/png" in data for data in shown)  # the confusion matrix from the event file
    summary = json.loads((tmp_path / "lightning_logs" / "iris_mlp_classifier" / "crossval" / "summary.json").read_text())
    assert len(summary["runs"]) == 5
    assert any(f"{summary['mean']['val/acc']:.4f} ± {summary['std']['val/acc']:.4f}" in data.get("text/markdown", "")
               for data in shown)


def test_committed_notebook_has_no_outputs_and_no_execution_counts():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
