"""benchmarks/gpu/run.sh --dry-run: the GPU machine's one command rehearsed on the CPU with a tiny model, so its
first GPU minute is not spent on a typo: the tests are collected and reported (skipped here), every throughput
run (raw loop, trainforge, transformers; eager and compiled) measures, and the report is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_gpu_script_runs_dry_on_the_cpu_and_writes_its_report(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu", "run.sh"), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert {"environment.log", "gpu_tests.xml", "gpu_tests.log", "throughput.json", "throughput.log", "report.json",
            "report.md"} <= set(os.listdir(tmp_path))
    report = json.loads((tmp_path / "report.json").read_text())
    names = [t["name"].split("::")[-1] for t in report["tests"]]
    assert "test_a_qlora_step_on_a_4bit_base" in names and "test_liger_kernel_patches_a_llama_and_trains" in names
    assert report["test_counts"]["failed"] == 0 and report["test_counts"]["skipped"] == len(names)  # no GPU here
    runs = [(r["runner"], r["compile"]) for r in report["throughput"]]
    assert runs == [(r, c) for c in (False, True) for r in ("raw", "trainforge", "transformers")]
    assert all("error" not in r and r["tokens_per_second"] > 0 for r in report["throughput"])
    assert report["environment"]["device"] == "cpu" and report["goals"]["every GPU test green"] is False
    markdown = (tmp_path / "report.md").read_text()
    assert "| runner | compile | tokens/s | x raw | MFU | peak GiB |" in markdown
    found = dict(line.split(" ", 1) for line in (tmp_path / "environment.log").read_text().splitlines() if " " in line)
    assert not found["trainer"].startswith("missing") and not found["transformers"].startswith("missing")


def test_the_report_counts_a_failed_gpu_test_and_a_slow_trainer_against_the_goals(tmp_path):
    from benchmarks.gpu import report

    (tmp_path / "gpu_tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="tests.test_gpu" name="test_a"/>'
        '<testcase classname="tests.test_gpu" name="test_b"><failure message="boom"/></testcase>'
        "</testsuite></testsuites>")
    results = [{"runner": "raw", "compile": True, "tokens_per_second": 100.0, "mfu": 0.5},
               {"runner": "trainforge", "compile": True, "tokens_per_second": 97.0, "mfu": 0.485}]
    (tmp_path / "throughput.json").write_text(json.dumps({"environment": {}, "size": {}, "results": results}))
    built = report.main(str(tmp_path))
    assert built["test_counts"] == {"passed": 1, "failed": 1, "skipped": 0}
    assert built["goals"] == {"every GPU test green": False, "trainforge within 2% of the raw loop's tokens/s": False,
                              "MFU with torch_compile": True}
    assert built["throughput"][1]["ratio_to_raw"] == pytest.approx(0.97)
