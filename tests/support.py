"""Plain helpers of the tests: an offline environment for child processes, a scratch workbook, and the command line in a
fresh process. Test modules and the other support modules import them; the fixtures in `conftest.py` wrap them."""
import os, shutil, subprocess, sys
from pathlib import Path
from typing import NamedTuple

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
    for name in ("criteria.csv", "prompts.csv", "paper_targets.csv", "scoring_rules.toml"):
        shutil.copy(ROOT/"data"/name, folder/"data"/name)
    if judge: shutil.copytree(ROOT/"data"/"judge", folder/"data"/"judge", dirs_exist_ok=True)
    return folder


class CliResult(NamedTuple):
    "What one command line run gave (it unpacks as `status, out, err`)."
    status: int
    out: str
    err: str


def tinyscale_command(*args) -> list:
    "The argv of `python -m tinyscale ARGS` with this Python, for `subprocess.Popen` (a run to stop or kill midway)."
    return [sys.executable, "-m", "tinyscale", *map(str, args)]


def run_tinyscale(*args, root=None, env=None, timeout=300, cwd=None) -> CliResult:
    """Run `python -m tinyscale ARGS` in a fresh process and wait for it. `root`: the workbook (`TINYSCALE_ROOT`); `cwd`:
    where it runs (default `root`); `env`: default `offline_environment(cwd or root)`. The `cli_process` fixture is this."""
    folder = cwd or root
    if folder is None: raise ValueError("run_tinyscale needs root or cwd")
    environment = dict(env if env is not None else offline_environment(folder))
    if root is not None: environment["TINYSCALE_ROOT"] = str(root)
    done = subprocess.run(tinyscale_command(*args), env=environment, cwd=folder, capture_output=True, text=True, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr)
