"""F1 as an ``evaluate`` module, loadable offline: ``evaluate.load(path_of_this_file, "macro")``.

The configuration name is the averaging ("binary", "micro", "macro", "weighted"; default "macro"),
so a module fed batch by batch needs no arguments at ``compute()``.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score

AVERAGES = ("binary", "micro", "macro", "weighted")


class F1(evaluate.Metric):
    """Harmonic mean of precision and recall over class ids."""

    def _info(self):
        return evaluate.MetricInfo(
            description="F1 score, averaged as the configuration name says (default macro).",
            citation="",
            inputs_description="predictions, references: class ids (int).",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average=None):
        if average is None:
            average = self.config_name if self.config_name in AVERAGES else "macro"
        return {"f1": float(f1_score(references, predictions, average=average))}
