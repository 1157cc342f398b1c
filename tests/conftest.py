import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# every subprocess a test starts: an abort or crash prints each Python thread's stack to stderr
os.environ.setdefault("PYTHONFAULTHANDLER", "1")


@pytest.fixture
def restore_determinism(monkeypatch):
    """full_determinism changes process-wide settings: undo them for the tests that follow."""
    import torch

    for name in ("CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored (or removed) at teardown
        monkeypatch.delenv(name)
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
