"""Push to the Hugging Face Hub through ``huggingface_hub``'s HTTP API (commits, not git).

``hub_strategy`` says what each save pushes; every push is a commit made in a background
thread, so training does not wait:

| ``hub_strategy`` | on each checkpoint save | on ``save_model()`` / ``push_to_hub()`` / train end |
|---|---|---|
| ``end`` | nothing | the model files and the model card, at the repo root |
| ``every_save`` (default) | the checkpoint's model files and the model card, at the root | the same |
| ``checkpoint`` | as ``every_save``, plus the whole checkpoint under ``last-checkpoint/`` (resumable: ``resume_from_checkpoint="<repo id>"``) | the same |
| ``all_checkpoints`` | as ``every_save``, plus the whole checkpoint under ``checkpoint-<step>/`` | the same |

A push asked for while the previous one still runs is skipped (``hub_always_push=True``
queues it instead); at train end the pending pushes are finished and the newest checkpoint is
pushed if its push was skipped. Failed pushes are reported by name, and the run's files stay on
disk. The files of a push are hard-linked (or copied) into a staging folder first, so a
checkpoint rotated away while it uploads is still uploaded whole.

The endpoint is ``huggingface_hub``'s own (``HF_ENDPOINT``); the token is ``hub_token`` or
huggingface_hub's (``HF_TOKEN``, ``hf auth login``). The token is never logged nor written.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor

logger = logging.getLogger(__name__)

HUB_STRATEGIES = ("end", "every_save", "checkpoint", "all_checkpoints")
LAST_CHECKPOINT = "last-checkpoint"
# training state that stays out of the model files pushed at the repo root
_TRAINING_STATE = ("optimizer*", "scheduler*", "scaler*", "rng_state*", "dataloader_state*", "trainer_state.json",
                   "loss_window.json", "global_step*", "fsdp_state*", "latest", "zero_to_fp32.py", ".*")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def looks_like_repo_id(value: str) -> bool:
    """``namespace/name`` that is not a local path (for ``resume_from_checkpoint``)."""
    return isinstance(value, str) and bool(_REPO_ID.match(value)) and not os.path.exists(value)


def _explain(err: Exception, what: str, output_dir: str) -> RuntimeError:
    """A Hub error as a message that says what failed, why, and that the run's files are kept."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status == 401:
        why = "the Hub refused the token (401): check hub_token / HF_TOKEN, or log in with `hf auth login`"
    elif status == 403:
        why = "the token may not write to this repo (403): use a write token, or a repo in your namespace"
    elif status is not None:
        why = f"the Hub answered {status}: {str(err).splitlines()[0]}"
    else:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
        why = f"cannot reach the Hub at {endpoint} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    return RuntimeError(f"{what}: {why}. The run's files are kept in {output_dir}")


def _is_model_file(name: str) -> bool:
    return not any(fnmatch.fnmatch(name, pattern) for pattern in _TRAINING_STATE)


class HubPusher:
    """The run's Hub repo and its background pushes (main process only)."""

    def __init__(self, args, before_push=None):
        from huggingface_hub import HfApi
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        self.args = args
        self.before_push = before_push  # called before each push is staged (the on_push_begin event)
        self.strategy = args.hub_strategy
        name = args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
        try:
            validate_repo_id(name)
        except HFValidationError as err:
            raise ValueError(f"hub_model_id={name!r} is not a valid repo name ({err}): use 'name' or "
                             "'namespace/name' with letters, digits, '-', '_' and '.'") from err
        self.api = HfApi(token=args.hub_token)
        try:
            self.repo_id = self.api.create_repo(name, private=args.hub_private_repo, exist_ok=True).repo_id
            if args.hub_revision:
                self.api.create_branch(self.repo_id, branch=args.hub_revision, exist_ok=True)
            self._last_checkpoint_files = {
                f for f in self.api.list_repo_files(self.repo_id, revision=args.hub_revision)
                if f.startswith(LAST_CHECKPOINT + "/")
            }
        except Exception as err:  # network, token, permissions: one message that names them
            raise _explain(err, f"push_to_hub: creating the repo {name!r} failed", args.output_dir) from err
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-push")
        self._pending: list[tuple[str, Future]] = []
        self._lock = threading.Lock()
        self.failures: list[str] = []
        self.pushed: list[str] = []
        self.skipped_step: int | None = None
        self._staging_root = os.path.join(args.output_dir, ".hub-staging")

    # -- what to push ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        with self._lock:
            return any(not future.done() for _, future in self._pending)

    def on_checkpoint(self, checkpoint: str, step: int, model_card: str) -> None:
        """Push after checkpoint ``checkpoint`` was written, as ``hub_strategy`` says."""
        if self.strategy == "end":
            return
        if self.busy and not self.args.hub_always_push:
            logger.info("push_to_hub: the push of step %d is skipped, the previous push still runs "
                        "(hub_always_push=True queues every push)", step)
            self.skipped_step = step
            return
        self.skipped_step = None
        self._push_checkpoint(checkpoint, step, model_card, f"Training in progress, step {step}")

    def _push_checkpoint(self, checkpoint: str, step: int, model_card: str, message: str) -> Future:
        files = {name: os.path.join(checkpoint, name) for name in _walk(checkpoint) if _is_model_file(name)}
        deletes: list[str] = []
        if self.strategy == "checkpoint":
            whole = {f"{LAST_CHECKPOINT}/{name}": os.path.join(checkpoint, name) for name in _walk(checkpoint)}
            deletes = sorted(self._last_checkpoint_files - set(whole))
            self._last_checkpoint_files = set(whole)
            files.update(whole)
        elif self.strategy == "all_checkpoints":
            folder = os.path.basename(checkpoint)
            files.update({f"{folder}/{name}": os.path.join(checkpoint, name) for name in _walk(checkpoint)})
        return self._submit(files, {"README.md": model_card}, deletes, message)

    def push_folder(self, folder: str, model_card: str, message: str, skip_if_busy: bool = False) -> Future | None:
        """The model files of ``folder`` (a saved model) at the repo root, with the model card."""
        if skip_if_busy and self.busy and not self.args.hub_always_push:
            return None
        files = {name: os.path.join(folder, name) for name in _walk(folder)
                 if _is_model_file(name) and not name.startswith(("checkpoint-", "runs/", "hub-"))}
        return self._submit(files, {"README.md": model_card}, [], message)

    def finish_training(self, newest_checkpoint: str | None, step: int, model_card: str) -> list[str]:
        """Wait for the pushes; push the newest checkpoint if its push was skipped; return the failures."""
        self.wait()
        if self.skipped_step is not None and newest_checkpoint is not None and os.path.isdir(newest_checkpoint):
            self._push_checkpoint(newest_checkpoint, step, model_card, f"Training in progress, step {step}")
            self.skipped_step = None
        return self.wait()

    # -- the uploads ------------------------------------------------------------------------------
    def _submit(self, files: dict[str, str], texts: dict[str, str], deletes: list[str], message: str) -> Future:
        if self.before_push is not None:
            self.before_push()
        os.makedirs(self._staging_root, exist_ok=True)
        staging = tempfile.mkdtemp(dir=self._staging_root)
        staged = {}
        for path_in_repo, source in files.items():
            target = os.path.join(staging, path_in_repo)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                os.link(source, target)  # the checkpoint may be rotated away while this uploads
            except OSError:
                shutil.copy2(source, target)
            staged[path_in_repo] = target
        for path_in_repo, text in texts.items():
            target = os.path.join(staging, path_in_repo)
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            staged[path_in_repo] = target
        future = self._executor.submit(self._upload, staged, deletes, message, staging)
        with self._lock:
            self._pending.append((message, future))
        return future

    def _upload(self, staged: dict[str, str], deletes: list[str], message: str, staging: str) -> str:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        try:
            operations = [CommitOperationDelete(path_in_repo=p) for p in deletes]
            operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=local) for p, local in sorted(staged.items())]
            info = self.api.create_commit(self.repo_id, operations=operations, commit_message=message,
                                          revision=self.args.hub_revision)
            return info.oid
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def wait(self) -> list[str]:
        """Block until every push is done; returns (and logs) the ones that failed."""
        with self._lock:
            pending, self._pending = self._pending, []
        for message, future in pending:
            try:
                future.result()
                self.pushed.append(message)
            except Exception as err:
                failure = str(_explain(err, f"push_to_hub: the push {message!r} failed", self.args.output_dir))
                logger.error(failure)
                self.failures.append(failure)
        return list(self.failures)

    def close(self) -> None:
        self.wait()
        self._executor.shutdown(wait=True)
        shutil.rmtree(self._staging_root, ignore_errors=True)


def _walk(folder: str) -> list[str]:
    """Files under ``folder``, relative, ``/``-separated, sorted."""
    out = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            out.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return sorted(out)


def download_last_checkpoint(repo_id: str, args) -> str:
    """``last-checkpoint/`` of a Hub repo (pushed with hub_strategy='checkpoint'), downloaded under output_dir."""
    from huggingface_hub import snapshot_download

    local = os.path.join(args.output_dir, "hub-" + repo_id.replace("/", "--"))
    try:
        snapshot_download(repo_id, revision=args.hub_revision, allow_patterns=[f"{LAST_CHECKPOINT}/*"],
                          local_dir=local, token=args.hub_token)
    except Exception as err:
        raise _explain(err, f"resume_from_checkpoint={repo_id!r}: downloading {LAST_CHECKPOINT}/ failed",
                       args.output_dir) from err
    path = os.path.join(local, LAST_CHECKPOINT)
    if not os.path.isdir(path):
        raise ValueError(f"resume_from_checkpoint={repo_id!r}: the repo has no {LAST_CHECKPOINT}/ folder; it is "
                         "pushed by hub_strategy='checkpoint'")
    return path
