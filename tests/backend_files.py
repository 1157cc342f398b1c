"""Readers of what the logging backends wrote, for the tests: TensorBoard event files and the
W&B offline run file (its records, read without wandb's servers)."""

from __future__ import annotations

import glob
import json
import os
import struct
import time


def tensorboard_accumulator(log_dir: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(log_dir, size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def tensorboard_scalars(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the event files in ``log_dir``."""
    acc = tensorboard_accumulator(log_dir)
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def tensorboard_texts(log_dir: str) -> dict[str, str]:
    acc = tensorboard_accumulator(log_dir)
    texts = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        if tag.endswith("/text_summary") and events and events[-1].tensor_proto.string_val:
            texts[tag.removesuffix("/text_summary")] = events[-1].tensor_proto.string_val[0].decode()
    return texts


def tensorboard_hparams(log_dir: str) -> dict:
    """The hyperparameters of the HPARAMS plugin's session-start record."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = tensorboard_accumulator(log_dir)
    for content in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            out = {}
            for name, value in data.session_start_info.hparams.items():
                kind = value.WhichOneof("kind")
                out[name] = getattr(value, kind)
            return out
    return {}


# -- W&B offline runs: a LevelDB-style log of protobuf records --------------------------------
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _wandb_raw_records(path: str):
    data = open(path, "rb").read()
    ident, _magic, _version = struct.unpack("<4sHB", data[:_HEADER])
    assert ident == b":W&B", f"{path} is not a W&B run file"
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


def _item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def _finished_records(path: str, timeout: float) -> list:
    """The records of a run file once its ``exit`` record is written: wandb's service process writes
    the file, and ``wandb.finish()`` can return before it has (seen when other tests ran first)."""
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + timeout
    while True:
        records = [wandb_internal_pb2.Record.FromString(raw) for raw in _wandb_raw_records(path)]
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def wandb_offline_run(run_dir: str, timeout: float = 30.0) -> dict:
    """``{"id", "name", "project", "group", "config", "history", "summary", "artifacts"}`` of an offline run folder."""
    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    run = {"config": {}, "history": [], "summary": {}, "artifacts": []}
    for record in _finished_records(path, timeout):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(id=r.run_id, name=r.display_name, project=r.project, group=r.run_group)
            run["config"].update({_item_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run["config"].update({_item_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run["history"].append({_item_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            run["summary"].update({_item_key(i): json.loads(i.value_json) for i in record.summary.update if i.key})
        elif kind == "artifact":
            run["artifacts"].append({"name": record.artifact.name, "type": record.artifact.type,
                                     "files": [e.path for e in record.artifact.manifest.contents],
                                     "aliases": list(record.artifact.aliases)})
    run["config"].pop("_wandb", None)
    return run
