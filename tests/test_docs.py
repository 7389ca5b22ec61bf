"""The documentation site: its code runs, its reference covers the package, and it builds.

The Python blocks of ``docs/tutorial.md`` and ``docs/using-a-trained-optimizer.md`` are run in
order in one namespace, in a temporary working directory, so that the pages cannot rot. The
strict MkDocs build (every link, page, anchor and docstring) runs when MkDocs is installed
(the ``dev`` extra).
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)

#: the packages and modules that have a page in the API reference
API_PAGES = ("physics", "integrators", "optimizers", "tasks", "meta", "reporting", "presets",
             "reproduce", "seeding")


def python_blocks(page: str) -> list[str]:
    """The fenced ```python blocks of a docs page (top level only), in order."""
    return FENCE.findall((DOCS / page).read_text())


def run_page(page: str) -> dict:
    """Exec every Python block of ``page`` in one namespace; returns the namespace."""
    blocks = python_blocks(page)
    assert blocks, f"docs/{page} has no ```python blocks"
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks, 1):
        exec(compile(code, f"docs/{page} (python block {i})", "exec"), namespace)
    return namespace


def test_tutorial_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = run_page("tutorial.md")
    assert set(ns["summary"]) == {"mine", "hnn", "adam"}
    assert ns["mine"].num_params() == 60 and ns["paper"].num_params() == 19
    for entry in ns["summary"].values():
        assert entry["final_loss"]["diverged"] == 0
    assert (tmp_path / "tutorial-curves.png").stat().st_size > 0


def test_using_a_trained_optimizer_runs(tmp_path, monkeypatch):
    # the page loads the checkpoint that `phys-l2o reproduce quadratic` writes; the site ships
    # the one from the paper-budget run
    checkpoints = tmp_path / "runs" / "quadratic" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(DOCS / "results" / "quadratic" / "checkpoints" / "hnn.pt", checkpoints)
    monkeypatch.chdir(tmp_path)
    ns = run_page("using-a-trained-optimizer.md")
    losses = ns["losses"]
    assert len(losses) == 100
    assert losses[-1] < 0.1 * losses[0]          # the learned optimizer trained the model


def test_concepts_code_runs():
    run_page("concepts.md")


def test_reproducing_page_shows_the_runs_table():
    """The table on the page is the one the paper-budget run wrote, unedited."""
    page = (DOCS / "reproducing.md").read_text()
    report = (DOCS / "results" / "quadratic" / "results.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert len(rows) == 7
    for row in rows:
        assert row in page, f"row missing from docs/reproducing.md: {row}"


def test_api_reference_covers_every_module():
    documented = set()
    for page in (DOCS / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (phys_l2o[\w.]*)", page.read_text(), re.M))
    missing = []
    for name in API_PAGES:
        module = f"phys_l2o.{name}"
        if module not in documented:
            missing.append(module)
        spec = importlib.util.find_spec(module)
        for info in pkgutil.iter_modules(spec.submodule_search_locations or []):
            sub = f"{module}.{info.name}"
            if not info.name.startswith("_") and sub not in documented:
                missing.append(sub)
    assert not missing, ("modules without a `::: name` entry in docs/api/*.md: "
                         + ", ".join(missing))


def test_registry_tables_list_every_registered_name():
    spec = importlib.util.spec_from_file_location("registries", DOCS / "_hooks" / "registries.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    from phys_l2o.integrators import FLOWS, INTEGRATORS

    text = hook.on_page_markdown("<!-- registry: integrators -->\n\n<!-- registry: flows -->",
                                 None, None, None)
    for name in [*INTEGRATORS, *FLOWS]:
        assert f"| `{name}` |" in text
    with pytest.raises(ValueError, match="unknown registry"):
        hook.on_page_markdown("<!-- registry: nothing -->", None, None, None)


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    concepts = (site / "concepts" / "index.html").read_text()
    assert 'class="arithmatex"' in concepts                    # equations left for KaTeX
    assert (site / "javascripts" / "katex" / "katex.min.js").is_file()
    assert (site / "images" / "hnn-computation.svg").is_file()
    assert "| `euler-readout` |" not in concepts                # the registry table was rendered
    assert "<td><code>euler-readout</code></td>" in concepts
    for page in ("physics", "integrators", "optimizers", "tasks", "meta"):
        assert (site / "api" / page / "index.html").is_file()

