"""The GPU run's report: ``python -m benchmarks.gpu.report DIR`` reads ``DIR/gpu_tests.xml`` (pytest's JUnit XML)
and ``DIR/throughput.json``, and writes ``DIR/report.json`` and ``DIR/report.md``: every GPU test with its
outcome, the throughput table (tokens/s, ratio to the raw loop, MFU, peak memory) and the goals checked."""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET

GOALS = {"trainforge within 2% of the raw loop's tokens/s": 0.98, "MFU with torch_compile": 0.45}


def read_tests(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = "failed" if kind in ("failure", "error") else "skipped"
                detail = (node.get("message") or node.text or "")[:300]
        tests.append({"name": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "detail": detail})
    return tests


def build(directory: str) -> dict:
    tests = read_tests(os.path.join(directory, "gpu_tests.xml"))
    throughput = {}
    path = os.path.join(directory, "throughput.json")
    if os.path.exists(path):
        with open(path) as f:
            throughput = json.load(f)
    results = throughput.get("results", [])
    raw = {r["compile"]: r["tokens_per_second"] for r in results if r["runner"] == "raw" and "tokens_per_second" in r}
    for r in results:
        if "tokens_per_second" in r and r["compile"] in raw:
            r["ratio_to_raw"] = r["tokens_per_second"] / raw[r["compile"]]
    ours = [r for r in results if r["runner"] == "trainforge" and "ratio_to_raw" in r]
    compiled = [r for r in results if r["compile"] and r.get("mfu") is not None and r["runner"] == "trainforge"]
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "skipped")}
    goals = {
        "every GPU test green": counts["passed"] > 0 and counts["failed"] == 0,
        list(GOALS)[0]: bool(ours) and min(r["ratio_to_raw"] for r in ours) >= GOALS[list(GOALS)[0]],
        list(GOALS)[1]: bool(compiled) and compiled[0]["mfu"] >= GOALS[list(GOALS)[1]],
    }
    return {"environment": throughput.get("environment"), "size": throughput.get("size"), "tests": tests,
            "test_counts": counts, "throughput": results, "goals": goals}


def markdown(report: dict) -> str:
    lines = ["# GPU run", "", f"environment: {report['environment']}", "",
             f"tests: {report['test_counts']}", "", "| test | outcome | detail |", "|---|---|---|"]
    lines += [f"| {t['name']} | {t['outcome']} | {t['detail'].replace('|', '/')[:120]} |" for t in report["tests"]]
    lines += ["", "| runner | compile | tokens/s | x raw | MFU | peak GiB |", "|---|---|---|---|---|---|"]
    for r in report["throughput"]:
        if "error" in r:
            lines.append(f"| {r['runner']} | {r['compile']} | error: {r['error'][:150]} | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
        peak = f"{r['peak_memory_gib']:.1f}" if r.get("peak_memory_gib") is not None else "-"
        lines.append(f"| {r['runner']} | {r['compile']} | {r['tokens_per_second']:.0f} | "
                     f"{r.get('ratio_to_raw', float('nan')):.3f} | {mfu} | {peak} |")
    lines += ["", "| goal | met |", "|---|---|"] + [f"| {k} | {v} |" for k, v in report["goals"].items()]
    return "\n".join(lines) + "\n"


def main(directory: str) -> dict:
    report = build(directory)
    with open(os.path.join(directory, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "outputs/gpu_report")
