"""Shared pytest fixtures: an offline environment, a scratch workbook, the command line in-process and in a fresh
process, and the fixture models.

`fixture_models` writes a TinyStories-1M-shaped model (GPT-Neo, the real architecture and GPT-2
tokenizer, random weights from seed 0; see `tinyscale.models.write_fixture_models`) once per test
session into a temporary folder and returns the model's folder. Tests that only read it may share
it; a test that needs to change a model copies the folder first.
"""
import os, shutil, subprocess, sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Variables that would make a child process join a launch, reach a real API, or use the user's own caches
FOREIGN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
                     "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "TINYSCALE_RATER")


def offline_environment(folder: Path, **extra) -> dict:
    "The environment of a child process that cannot reach the Hub, holds no API key and caches under `folder`."
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_VARIABLES and not k.startswith("TORCHELASTIC")}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(Path(folder)/"hf-home"), TOKENIZERS_PARALLELISM="false",
               TINYSCALE_CACHE=str(Path(folder)/"tinyscale-cache"))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def make_workbook(folder: Path, judge: bool = False) -> Path:
    "A scratch workbook under `folder`: the rubric, prompt set and paper targets (and the judge templates), no scores."
    (folder/"data").mkdir(parents=True, exist_ok=True)
    for name in ("criteria.csv", "prompts.csv", "paper_targets.csv"):
        shutil.copy(ROOT/"data"/name, folder/"data"/name)
    if judge: shutil.copytree(ROOT/"data"/"judge", folder/"data"/"judge", dirs_exist_ok=True)
    return folder


@dataclass
class CliResult:
    "What one command line run gave."
    status: int
    out: str
    err: str


@pytest.fixture
def offline_env(tmp_path):
    "The environment for a child process (see `offline_environment`)."
    return offline_environment(tmp_path)


@pytest.fixture
def workbook(tmp_path):
    "A scratch workbook folder (`make_workbook`), with the judge templates."
    return make_workbook(tmp_path/"workbook", judge=True)


@pytest.fixture
def cli(capsys, monkeypatch):
    "Run `tinyscale ARGS` in this process: `cli(*args, root=None)` -> CliResult (root: the workbook to run in)."
    from tinyscale.cli import main
    def run(*args, root=None):
        if root is not None: monkeypatch.setenv("TINYSCALE_ROOT", str(root))
        capsys.readouterr()
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(status, captured.out, captured.err)
    return run


@pytest.fixture
def cli_process(tmp_path):
    "Run `python -m tinyscale ARGS` in a fresh process: `cli_process(*args, root=None, env=None, timeout=300)`."
    def run(*args, root=None, env=None, timeout=300, cwd=None):
        environment = dict(env if env is not None else offline_environment(tmp_path))
        if root is not None: environment["TINYSCALE_ROOT"] = str(root)
        done = subprocess.run([sys.executable, "-m", "tinyscale", *map(str, args)], env=environment,
                              cwd=cwd or root or tmp_path, capture_output=True, text=True, timeout=timeout)
        return CliResult(done.returncode, done.stdout, done.stderr)
    return run


@pytest.fixture(scope="session")
def fixture_models(tmp_path_factory):
    "The folder of a TinyStories-1M-shaped fixture model (written once per session; treat as read-only)."
    from tinyscale.models import write_fixture_models
    folder, = write_fixture_models(tmp_path_factory.mktemp("models"), sizes=("1M",))
    return folder
