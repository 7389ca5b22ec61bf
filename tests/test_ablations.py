"""The ablation suite: every sweep file runs end to end (the seconds-long ``test`` budget)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def test_run_all_writes_every_ablation(tmp_path):
    out = tmp_path / "ablations"
    args = [sys.executable, str(ROOT / "ablations" / "run_all.py"), "--budget", "test",
            "--device", "cpu", "--out", str(out), "--workers", "1"]  # workers: test_sweep
    mnist = (SHARED_DATA / "MNIST" / "raw").is_dir()
    args += ["--data-root", str(SHARED_DATA)] if mnist else ["--skip-mnist"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    names = ["pieces-quadratic", "integrators-quadratic"]
    if mnist:
        names += ["pieces-mnist", "integrators-mnist", "transfer-mnist"]
    for name in names:
        assert (out / name / "intervals.png").stat().st_size > 5_000
        report = json.loads((out / name / "results.json").read_text())
        assert report["seeds"] == [0, 1] and report["budget"] == "test"
        for methods in report["targets"].values():
            ref = report["reference"]
            assert ref in methods and "adam" in methods
            assert methods[ref]["seeds"] == 2
            for method, entry in methods.items():
                assert ("paired_diff" in entry) == (method != ref)
        md = (out / name / "results.md").read_text()
        assert "95% CI" in md and "wall time" in md
        assert f"[{report['title']}]({name}/results.md)" in (out / "index.md").read_text()
    pieces = (out / "pieces-quadratic" / "results.md").read_text()
    for variant in ("no dissipation", "no control", "conservative", "identity inertia",
                    "scalar potential", "PSD dissipation", "preprocessing on",
                    "normalization off", "LSTM"):
        assert f"| {variant} | " in pieces
    integrators = (out / "integrators-quadratic" / "results.md").read_text()
    assert "gradient state: midpoint" in integrators and "parameter state" in integrators
    if mnist:
        transfer = (out / "transfer-mnist" / "results.md").read_text()
        assert "| method | sigmoid-20 | relu-20 | tanh-20 | sigmoid-40 | relu-40 | tanh-40 |" \
            in transfer
