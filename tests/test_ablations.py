"""The ablation suite: one command writes every table and plot."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def test_run_all_writes_tables(tmp_path):
    out = tmp_path / "ablations"
    args = [sys.executable, str(ROOT / "ablations" / "run_all.py"), "--budget", "test",
            "--device", "cpu", "--out", str(out)]
    mnist = (SHARED_DATA / "MNIST" / "raw").is_dir()
    args += ["--data-root", str(SHARED_DATA)] if mnist else ["--skip-mnist"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    names = ["pieces-quadratic", "integrators-quadratic"]
    if mnist:
        names += ["pieces-mnist", "integrators-mnist", "transfer-mnist"]
    for name in names:
        assert (out / f"{name}.png").stat().st_size > 5_000
        report = json.loads((out / f"{name}.json").read_text())
        assert report["seeds"] == [0, 1, 2]
        for methods in report["targets"].values():
            ref = report["reference"]
            assert ref in methods and "adam" in methods and "lstm" in methods
            for method, entry in methods.items():
                if method != ref:
                    assert "paired_diff_vs_reference" in entry
        md = (out / f"{name}.md").read_text()
        assert "95% CI" in md and "wall time" in md
    pieces = (out / "pieces-quadratic.md").read_text()
    for variant in ("no dissipation", "no control", "identity inertia", "scalar potential",
                    "PSD dissipation", "preprocessing on", "normalization off"):
        assert f"| {variant} |" in pieces
    integrators = (out / "integrators-quadratic.md").read_text()
    assert "gradient state: dopri5" in integrators and "parameter state" in integrators
    if mnist:
        transfer = (out / "transfer-mnist.md").read_text()
        assert "| method | sigmoid-20 | relu-20 | tanh-20 | sigmoid-40 | relu-40 | tanh-40 |" \
            in transfer
    assert "## " in (out / "index.md").read_text()
