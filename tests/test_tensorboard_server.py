"""TensorBoard as a user sees it: a real server on 127.0.0.1 over short runs, queried through its HTTP data API
and looked at in Debian's headless Chromium through Playwright (screenshots kept in test-artifacts/, or $TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lightning_models import run
from tests.conftest import CONFIGS
from tests.helpers import CLIMBING_OPTIONS as OPTIONS
from tests.helpers import FitValidations, free_port, write_idx

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow  # a real server and browser over four runs: the whole suite, not the fast tier

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
RUNS = {
    "iris_mlp_classifier": ["--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--trainer.max_epochs=2"],
    "iris_mlp_regressor": ["--config", str(CONFIGS / "iris_mlp_regressor.yaml"), "--trainer.max_epochs=2"],
    "xor_logistic_regression_quadrant": ["--config", str(CONFIGS / "xor_logistic_regression_quadrant.yaml"),
                                         "--trainer.max_epochs=2"],
    "fashion_cnn": ["--config", str(CONFIGS / "fashion_cnn.yaml"), "--data.data_dir=tiny", "--data.val_size=16",
                    "--data.batch_size=16", "--data.download=false", "--trainer.max_steps=1"],
    # a validation loss that does not end at its best: the curve must end at the last epoch all the same
    "iris_climbing": ["--config", str(CONFIGS / "iris_mlp_classifier.yaml"), "--experiment_name=iris_climbing", *OPTIONS],
}
CLIMBING = FitValidations()
EXPECTED_IMAGES = {
    "iris_mlp_classifier": {"val/confusion_matrix", "test/confusion_matrix"},
    "iris_mlp_regressor": {"val/observed_vs_predicted", "test/observed_vs_predicted"},
    "xor_logistic_regression_quadrant": {"test/decision_surface"},
    "fashion_cnn": {"data/sample_images", "test/misclassified", "test/confusion_matrix",
                    "test/per_class_accuracy"},
}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tensorboard")
    write_idx(root / "tiny")
    here = os.getcwd()
    os.chdir(root)
    try:
        for name, args in RUNS.items():
            run(*args, *QUIET, callbacks=[CLIMBING] if name == "iris_climbing" else [])
    finally:
        os.chdir(here)
    return root / "lightning_logs"


def get(port: int, path: str, **query: str) -> bytes:
    url = f"http://127.0.0.1:{port}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def server(log_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:  # until every run's images are loaded
            assert process.poll() is None, process.stdout.read()
            try:
                tags = json.loads(get(port, "/data/plugin/images/tags"))
                if all(want <= set(tags.get(f"{name}/version_0", {})) for name, want in EXPECTED_IMAGES.items()):
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "TensorBoard did not serve the expected image tags within 90 s"
            time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_server_serves_the_scalar_tags_and_values(server, log_dir):
    scalars = json.loads(get(server, "/data/plugin/scalars/tags"))
    for name in RUNS:
        tags = set(scalars[f"{name}/version_0"])
        # fashion_cnn stops after one step, before the fit validates: its only validation numbers are final_val/*
        assert {"train/loss", "test/loss", "final_val/loss"} | ({"val/loss"} if name != "fashion_cnn" else set()) <= tags
        assert ("val/loss" in tags) == (name != "fashion_cnn"), (name, tags)
    assert {"train/acc", "val/acc", "test/acc", "test/f1"} <= set(scalars["iris_mlp_classifier/version_0"])
    assert {"test/r2", "test/mse"} <= set(scalars["iris_mlp_regressor/version_0"])
    assert "test/sklearn_acc" in scalars["xor_logistic_regression_quadrant/version_0"]
    # The served test accuracy is the one metrics.json reports.
    served = json.loads(get(server, "/data/plugin/scalars/scalars", run="iris_mlp_classifier/version_0", tag="test/acc"))
    recorded = json.loads((log_dir / "iris_mlp_classifier" / "version_0" / "metrics.json").read_text())["test"]["test/acc"]
    assert served[-1][2] == pytest.approx(recorded)


def test_served_val_curve_ends_at_the_last_epoch_and_final_val_holds_the_best(server, log_dir):
    recorded = json.loads((log_dir / "iris_climbing" / "version_0" / "metrics.json").read_text())
    curve = json.loads(get(server, "/data/plugin/scalars/scalars", run="iris_climbing/version_0", tag="val/loss"))
    assert [(step, pytest.approx(value)) for _, step, value in curve] == [(step, loss) for step, _, loss in CLIMBING.seen]
    best = recorded["val"]["val/loss"]
    assert curve[-1][1] == recorded["global_step"] and curve[-1][2] > best  # the last epoch's, not the best checkpoint's
    final = json.loads(get(server, "/data/plugin/scalars/scalars", run="iris_climbing/version_0", tag="final_val/loss"))
    assert [(step, pytest.approx(value)) for _, step, value in final] == [(recorded["global_step"], best)]
    panels = json.loads(get(server, "/data/plugin/images/images", run="iris_climbing/version_0", tag="val/confusion_matrix"))
    assert [entry["step"] for entry in panels] == [step for _, step, _ in curve]  # each panel at its loss point


def test_server_serves_the_panels_as_png_images(server):
    tags = json.loads(get(server, "/data/plugin/images/tags"))
    for name, want in EXPECTED_IMAGES.items():
        assert want <= set(tags[f"{name}/version_0"]), name
    entries = json.loads(get(server, "/data/plugin/images/images", run="fashion_cnn/version_0", tag="test/misclassified"))
    image = get(server, f"/data/plugin/images/individualImage?{entries[-1]['query']}")
    assert image.startswith(b"\x89PNG") and len(image) > 1000


ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
# Every element of the page, shadow roots included (TensorBoard's dashboards are web components).
DEEP_ELEMENTS = """
const all = []; const walk = (root) => { for (const e of root.querySelectorAll('*')) { all.push(e);
  if (e.shadowRoot) walk(e.shadowRoot); } }; walk(document);
"""
VISIBLE_TEXT = DEEP_ELEMENTS + """
const text = all.filter(e => !['STYLE', 'SCRIPT'].includes(e.tagName) && !e.children.length)
  .map(e => e.textContent.trim()).filter(Boolean);
"""


# Nothing but package registries is reachable: Debian's chromium instead of a browser Playwright downloads, kept
# from calling out (sync, updates, QUIC) and from needing a GPU or a sandbox.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright (pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        # Each launch gets a fresh temporary user-data-dir, removed on close.
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    yield page
    page.close()


def wait_for(page: Page, script: str, timeout_s: float = 60) -> Any:
    """The first truthy value of ``script``'s last expression, tried every half second; None after ``timeout_s``.
    A script that throws counts as not yet: TensorBoard builds its components while the page loads."""
    from playwright.sync_api import TimeoutError

    try:
        found = page.wait_for_function(f"try {{ {script}\n}} catch (error) {{ null; }}", polling=500, timeout=timeout_s * 1000)
    except TimeoutError:
        return None
    return found.json_value()


def test_browser_shows_the_misclassified_grid_card_with_its_image_loaded(server, page):
    page.goto(f"http://127.0.0.1:{server}/#images")
    found = wait_for(page, DEEP_ELEMENTS + """
      // the card: an image loader whose heading names the tag; scrolled into view, it loads its image
      const card = all.find(e => e.tagName === 'TF-IMAGE-LOADER' && e.tag === 'test/misclassified'
                                 && e.run.startsWith('fashion_cnn'));
      if (card) card.scrollIntoView();
      const image = card && [...card.shadowRoot.querySelectorAll('img')].find(e => e.complete && e.naturalWidth > 0);
      image ? [image.naturalWidth, image.naturalHeight, image.getBoundingClientRect().width] : null;""")
    page.screenshot(path=ARTIFACTS / "tensorboard_images.png")
    assert found, f"no loaded test/misclassified image card (screenshot: {ARTIFACTS / 'tensorboard_images.png'})"
    width, height, shown = found
    assert width >= 200 and height >= 100 and shown > 100  # the grid, drawn at a visible size


def test_browser_shows_the_val_acc_chart_with_its_line(server, page):
    page.goto(f"http://127.0.0.1:{server}/#scalars")
    found = wait_for(page, DEEP_ELEMENTS + """
      // TensorBoard opens the first sections only: open "val" as a click on its heading does
      const pane = all.find(e => e.tagName === 'TF-CATEGORY-PAGINATED-VIEW' && e.category && e.category.name === 'val');
      if (pane && !pane.opened) pane.opened = true;
      const card = all.find(e => e.tagName === 'TF-SCALAR-CARD' && e.tag === 'val/acc');
      if (card) card.scrollIntoView();
      const inside = []; const into = (root) => { for (const e of root.querySelectorAll('*')) { inside.push(e);
        if (e.shadowRoot) into(e.shadowRoot); } }; if (card) into(card.shadowRoot || card);
      // a drawn series: an SVG path with points, at a visible size
      const lines = inside.filter(e => e.tagName.toLowerCase() === 'path' && (e.getAttribute('d') || '').split(/[ML]/).length > 2
                                       && e.getBoundingClientRect().width > 10);
      card && lines.length ? lines.length : null;""")
    page.screenshot(path=ARTIFACTS / "tensorboard_scalars.png")
    assert found, f"no val/acc chart with a drawn line (screenshot: {ARTIFACTS / 'tensorboard_scalars.png'})"


def test_browser_hparams_table_shows_the_final_metrics_and_readable_names(server, page, log_dir):
    recorded = json.loads((log_dir / "iris_mlp_classifier" / "version_0" / "metrics.json").read_text())
    shown = f"{recorded['test']['test/acc']:#.5g}"  # TensorBoard writes 5 significant digits
    page.goto(f"http://127.0.0.1:{server}/#hparams")
    found = wait_for(page, VISIBLE_TEXT + f"""
      text.includes('final_test/acc') && text.includes('optimizer.lr') && text.includes('{shown}') ? text : null;""")
    page.screenshot(path=ARTIFACTS / "tensorboard_hparams.png")
    assert found, f"HParams table without final_test/acc = {shown} (screenshot: {ARTIFACTS / 'tensorboard_hparams.png'})"
    assert not [cell for cell in found if cell.startswith("_") or "class_path" in cell or "init_args" in cell]
    # The hyperparameter list, in the order of the table's columns (its first five are shown): the config's own first
    listed = wait_for(page, DEEP_ELEMENTS + """
      const pane = all.find(e => e.tagName === 'TF-HPARAMS-QUERY-PANE');
      const inside = []; const into = (root) => { for (const e of root.querySelectorAll('*')) { inside.push(e);
        if (e.shadowRoot) into(e.shadowRoot); } }; if (pane) into(pane.shadowRoot || pane);
      const names = inside.filter(e => e.tagName === 'PAPER-CHECKBOX').map(e => e.textContent.trim());
      names.includes('optimizer.lr') ? names.slice(0, names.findIndex(name => name.startsWith('final_'))) : null;""")
    assert listed, "no hyperparameter list in the HParams tab"
    stamp = [index for index, name in enumerate(listed) if name == "precision" or name.startswith(("machine/", "code/"))]
    assert stamp and stamp == list(range(len(listed) - len(stamp), len(listed))), listed
    assert "optimizer.lr" in listed[:stamp[0]], listed
