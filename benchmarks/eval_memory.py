"""Peak memory of ``predict()`` on a 1000-class classifier: N = 20k vs 200k samples.

With ``preprocess_logits_for_metrics=argmax`` only the class ids are kept (8 bytes a sample),
so the peak RSS should barely move from 20k to 200k (target: within 1.2x). Without it the
logits are kept (4 KB a sample): 80 MB at 20k, 800 MB at 200k, and the peak grows with N as
it must. A hand-written PyTorch loop doing the argmax predict (list of batch tensors, one
``torch.cat`` at the end) is measured the same way for comparison.

Each measurement runs in a fresh process (peak RSS is per process: ``ru_maxrss``).

The raw loop's peak grows with N although it keeps only class ids: its list of small argmax
tensors, allocated between the 4 MB logits buffers, keeps glibc's heap from shrinking (with
``MALLOC_MMAP_THRESHOLD_=65536`` its 200k peak drops from ~900 to ~250 MB). The trainer writes
each batch's ids into a numpy buffer allocated once for the dataset, so no small tensor lives on.

    python benchmarks/eval_memory.py            # 20k and 200k
    python benchmarks/eval_memory.py --quick    # 2k and 20k, for the test that keeps this runnable
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES, FEATURES, BATCH, POOL = 1000, 64, 1000, 1024


def build():
    import torch
    from torch import nn

    class Samples(torch.utils.data.Dataset):
        """N samples drawn from a pool of 1024 feature vectors (the dataset itself does not grow with N)."""

        def __init__(self, n: int):
            self.n = n
            self.pool = torch.randn(POOL, FEATURES, generator=torch.Generator().manual_seed(0))

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> dict:
            return {"x": self.pool[i % POOL], "labels": i % CLASSES}

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.linear = nn.Linear(FEATURES, CLASSES)

        def forward(self, x, labels=None):
            logits = self.linear(x)
            if labels is None:
                return {"logits": logits}
            return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}

    return Samples, Classifier


def child(n: int, mode: str) -> dict:
    """One measurement in this process: 'argmax', 'logits' (trainer) or 'raw' (hand-written argmax loop)."""
    sys.path.insert(0, ROOT)
    import torch

    torch.set_num_threads(1)
    Samples, Classifier = build()
    data, model = Samples(n), Classifier()
    start = time.perf_counter()
    if mode == "raw":
        loader = torch.utils.data.DataLoader(data, batch_size=BATCH)
        preds, labels = [], []
        model.eval()
        with torch.no_grad():
            for batch in loader:
                out = model(**batch)
                preds.append(out["logits"].argmax(-1))
                labels.append(batch["labels"])
        preds = torch.cat(preds).numpy()
        shape = preds.shape
    else:
        from trainer import Trainer, TrainingArguments

        args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_eval_batch_size=BATCH, disable_tqdm=True,
                                 report_to="none", log_level="error")
        preprocess = (lambda logits, labels: logits.argmax(-1)) if mode == "argmax" else None
        trainer = Trainer(model, args, preprocess_logits_for_metrics=preprocess)
        out = trainer.predict(data)
        shape = out.predictions.shape
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"n": n, "mode": mode, "peak_rss_mb": round(peak_mb, 1), "shape": list(shape), "seconds": round(seconds, 2)}


def measure(n: int, mode: str) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(n), mode],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"measurement {mode} n={n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2k and 20k samples instead of 20k and 200k")
    parser.add_argument("--child", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return
    small, large = (2_000, 20_000) if args.quick else (20_000, 200_000)
    rows = {(mode, n): measure(n, mode) for mode in ("argmax", "logits", "raw") for n in (small, large)}
    print(f"predict() on a {CLASSES}-class linear classifier, batch {BATCH}, peak RSS per process")
    print(f"{'kept':<28}{'N':>9}{'peak RSS MB':>13}{'predictions':>16}{'seconds':>9}")
    for (mode, n), r in rows.items():
        label = {"argmax": "trainer, argmax preprocess", "logits": "trainer, logits kept",
                 "raw": "raw loop, argmax"}[mode]
        print(f"{label:<28}{n:>9}{r['peak_rss_mb']:>13.1f}{str(tuple(r['shape'])):>16}{r['seconds']:>9.2f}")

    def ratio(mode: str) -> float:
        return rows[(mode, large)]["peak_rss_mb"] / rows[(mode, small)]["peak_rss_mb"]

    argmax_ratio = ratio("argmax")
    print(f"peak RSS {large // 1000}k / {small // 1000}k with argmax:  {argmax_ratio:.3f}  (target <= 1.2: "
          f"{'met' if argmax_ratio <= 1.2 else 'NOT met'})")
    print(f"peak RSS {large // 1000}k / {small // 1000}k with logits kept: {ratio('logits'):.3f}  "
          f"(the logits take {large * CLASSES * 4 / 2**20:.0f} MB at {large // 1000}k: growth expected)")
    print(f"peak RSS trainer / raw loop at {large // 1000}k with argmax: "
          f"{rows[('argmax', large)]['peak_rss_mb'] / rows[('raw', large)]['peak_rss_mb']:.3f}")


if __name__ == "__main__":
    main()
