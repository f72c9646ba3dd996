"""The GPU run (bench/gpu.py) dry-run on CPU with tiny encoders, so that it cannot rot between the
rare times a GPU is lent: every step must run, every check must hold, every figure must be there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from serving import ROOT


def test_gpu_run_dry(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert {k: v["status"] for k, v in results["steps"].items() if v["status"] != "ok"} == {}
    assert len(results["steps"]) == 19, sorted(results["steps"])
    for model in ("minilm", "bert-base"):
        checks = results["parity"][model]
        assert len(checks) == 2 and all(v.get("reference") or v["ok"] for v in checks.values()), checks
        speed = results["speed"][model]
        assert speed["raw_padded"]["words_per_s"] > 0 and speed["raw_ragged"]["attention"] == "loop"
        for setting, loads in (("service", 2), ("service_padded", 2), ("service_2_replicas", 1)):
            got = speed[setting]["loads"]
            assert len(got) == loads and all(
                x["words"] == results["words"] and x["p99_ms"] >= x["p50_ms"] > 0 for x in got
            ), got
    assert [d["batches"] > 0 for d in results["device_to_host"]] == [True, True]
    assert len(results["null_forward"]["loads"]) == 2
    assert set(results["host_stages"]["stages"]) == {"validate_tokenize_align", "pool_cast_copy", "serialize"}
    report = (tmp_path / "REPORT.md").read_text()
    assert "DRY RUN" in report and "## Targets" in report and "FAILED" not in report
    assert "--- server log: minilm service #0 ---" in (tmp_path / "gpu.log").read_text()
