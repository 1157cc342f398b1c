"""The docs cannot rot: every code block of README.md and docs/*.md is run or checked here.

- ``python`` blocks: all blocks of a page run in order, as one script, in a fresh process, from a
  temporary directory that holds nothing of the repository but ``configs/`` (the config files a
  user's project keeps beside its script), with the package as ``pip install -e .`` installed it
  and the repository root not on the path: a snippet that only works from the repository root
  fails here. A page reads like a session: later blocks use what earlier ones built.
- ``bash`` blocks, command by command: ``trainforge ...`` and ``python examples/...`` run (training
  commands capped at a few steps); launches (``torchrun``, ``deepspeed``, ``accelerate launch``)
  are checked: the files they name exist and the script's flags parse. Installation lines
  (``pip``, ``python3 -m venv``) are what ``.ci/run`` itself does.
- ``docs/arguments.md`` is the output of ``python docs/make_arguments.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.processes import ENV, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
PAGES = ["README.md"] + sorted(f"docs/{name}" for name in os.listdir(DOCS) if name.endswith(".md"))
FENCE = re.compile(r"^```(\S*)\s*$")
TOKEN = "hf_docs_stand_in_token"  # the hub page's examples run against tests/hub_server.py


def code_blocks(page: str) -> list[tuple[str, str, int]]:
    """(language, code, first line number) of each fenced block of a Markdown page."""
    blocks, lang, lines, start = [], None, [], 0
    with open(os.path.join(ROOT, page)) as f:
        for number, line in enumerate(f, 1):
            match = FENCE.match(line.rstrip("\n"))
            if lang is None and match:
                lang, lines, start = match.group(1) or "text", [], number + 1
            elif lang is not None and line.rstrip("\n") == "```":
                blocks.append((lang, "".join(lines), start))
                lang = None
            elif lang is not None:
                lines.append(line)
    assert lang is None, f"{page}: a code block opened at line {start - 1} is never closed"
    return blocks


def pages_with(lang: str) -> list[str]:
    return [page for page in PAGES if any(b[0] == lang for b in code_blocks(page))]


def workdir(tmp_path, names=("configs", "examples", "README.md")) -> str:
    """A working directory holding ``names`` of the repository root: what the docs' relative paths name."""
    for name in names:
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    return str(tmp_path)


def docs_env(tmp_path) -> dict:
    """The environment of a docs run: the installed package, not the repository root on the path."""
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.abspath(p) != ROOT]
    return {**ENV, "PYTHONPATH": os.pathsep.join(path), "MPLBACKEND": "Agg", "WANDB_MODE": "offline", "TQDM_DISABLE": "1",
            "HF_HOME": str(tmp_path / "hf_home"), "TRAINFORGE_CACHE": str(tmp_path / "cache")}


def test_every_block_has_a_language_the_runner_knows():
    for page in PAGES:
        for lang, _, line in code_blocks(page):
            assert lang in ("python", "bash", "text", "yaml", "json"), f"{page}:{line}: ```{lang}"


@pytest.mark.parametrize("page", pages_with("python"))
def test_python_blocks_run(page, tmp_path):
    parts = [f"# --- {page}, line {line}\n{code}" for lang, code, line in code_blocks(page) if lang == "python"]
    script = tmp_path / (os.path.basename(page).replace(".md", "_md") + ".py")
    script.write_text("\n".join(parts))
    env = docs_env(tmp_path)
    (tmp_path / "root").mkdir()
    cwd = workdir(tmp_path / "root", names=("configs",))
    if page == "docs/hub.md":
        from tests.hub_server import HubServer

        with HubServer(tokens={TOKEN: "alice"}) as hub:
            env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1")
            result = run([sys.executable, str(script)], timeout=300, env=env, cwd=cwd)
            assert result.returncode == 0, result.stderr[-4000:]
            assert "alice/my-model" in hub.repos  # the page's pushes reached the (stand-in) Hub
    else:
        result = run([sys.executable, str(script)], timeout=300, env=env, cwd=cwd)
        assert result.returncode == 0, result.stderr[-4000:]


# -- bash blocks ---------------------------------------------------------------------------------
LAUNCHES = ("torchrun", "deepspeed", "accelerate launch")
SETUP = ("pip ", "python3 -m venv", ". .venv", "cd ", "python -m pytest")  # what .ci/run does


def commands(code: str) -> list[str]:
    """The commands of a bash block: comments dropped, ``&&`` chains split, continuations joined."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.extend(part.strip() for part in line.split("&&"))
    return out


def check_launch(command: str) -> None:
    """The files a launch command names exist and its script's flags parse."""
    from trainer.cli import parse_training_args

    words = shlex.split(command)
    script_at = next(i for i, w in enumerate(words) if w.endswith(".py"))
    for word in words:
        value = word.split("=", 1)[-1]
        if value.startswith(("configs/", "examples/", "benchmarks/")):
            assert os.path.exists(os.path.join(ROOT, value)), f"{command}: no {value}"
    own = {"--resume_from_checkpoint", "--model_name_or_path", "--dataset_name", "--target", "--backend"}
    flags, skip = [], False
    for word in words[script_at + 1:]:  # the example's own options are not TrainingArguments
        if skip:
            skip = False
        elif word in own:
            skip = True
        else:
            flags.append(word)
    parse_training_args(flags)


def runnable(command: str) -> list[str]:
    """The command as run here: from this venv, training capped at a few steps."""
    words = shlex.split(command)
    if words[0] == "trainforge":
        words = [sys.executable, "-m", "trainer.cli", *words[1:]]
        training = words[3] == "train"
    else:  # python examples/...
        words = [sys.executable, *words[1:]]
        training = True
    if training and "--help" not in words:
        words += ["--max_steps", "3", "--eval_strategy", "steps", "--eval_steps", "3", "--save_strategy", "steps",
                  "--save_steps", "3", "--logging_steps", "1", "--disable_tqdm", "true"]
    return words


@pytest.mark.parametrize("page", pages_with("bash"))
def test_bash_commands_run_or_parse(page, tmp_path):
    cwd = workdir(tmp_path)
    env = docs_env(tmp_path)
    ran = 0
    for lang, code, line in code_blocks(page):
        if lang != "bash":
            continue
        for command in commands(code):
            where = f"{page}:{line}: {command}"
            if command.startswith(SETUP):
                continue
            if command.startswith(LAUNCHES):
                check_launch(command)
            elif command.startswith(("trainforge", "python examples/")):
                result = run(runnable(command), timeout=300, env=env, cwd=cwd)
                assert result.returncode == 0, (where, result.stderr[-3000:])
                ran += 1
            elif command.startswith("python -m "):  # a module of this repository (its runs are tested elsewhere)
                module = shlex.split(command)[2]
                assert os.path.exists(os.path.join(ROOT, *module.split("."), "__main__.py")), where
            elif command.startswith(("python benchmarks/", "python ")):
                path = shlex.split(command)[1]
                assert os.path.exists(os.path.join(ROOT, path)) or path.startswith("checkpoint-"), where
            else:
                raise AssertionError(f"{where}: the docs runner does not know this command")
    assert ran or page != "README.md"


def test_arguments_reference_is_generated_from_the_dataclasses():
    result = subprocess.run([sys.executable, os.path.join(DOCS, "make_arguments.py"), "--stdout"],
                            capture_output=True, text=True, env={**ENV, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    with open(os.path.join(DOCS, "arguments.md")) as f:
        assert f.read() == result.stdout, "docs/arguments.md is stale: run python docs/make_arguments.py"


def test_relative_links_point_to_files_that_exist():
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target))
            assert os.path.exists(path), f"{page}: link to {target}"
