"""Shared pytest fixtures. Which one to use for a new test:

- `cli`: the command line in this process, fast, output captured: `cli("report", "--format", "csv", root=None)` ->
  `CliResult(status, out, err)`, which unpacks (`status, out, err = cli(...)`); an argparse error raises `SystemExit`.
- `cli_process`: the command line in a fresh process (`python -m tinyscale`), for exit statuses, environment variables
  and what a real run leaves on disk: `cli_process(*args, root=None, env=None, timeout=300, cwd=None)` -> `CliResult`,
  run in `root` (else `tmp_path`) with `offline_env`. A run to interrupt or kill midway:
  `subprocess.Popen(tinyscale_command(*args), env=offline_environment(tmp_path), ...)`.
- `offline_env`: the environment of any child process (no Hub, no API key, no launcher variables, caches under
  `tmp_path`); `offline_environment(folder, NAME=value)` for another folder or extra variables.
- `workbook`: a scratch workbook (rubric, prompts, paper targets, judge templates; no completions, no scores).
- `fixture_models`: a TinyStories-1M-shaped model (GPT-Neo, the real architecture and GPT-2 tokenizer, random weights
  from seed 0; see `tinyscale.models.write_fixture_models`), written once per session; only read it, or copy it first.
- A completion record: `tinyscale.completions.example_completion(prompt_id, category, prompt, completion, **fields)`.
- A workbook with a run file of completions (judge and agreement tests): `judge_support.make_workbook(folder)`.

The plain helpers behind them (`offline_environment`, `make_workbook`, `CliResult`, `tinyscale_command`, and
`run_tinyscale` for module-scoped fixtures) live in `tests/support.py`: import them from there.
"""
import pytest

from support import CliResult, make_workbook, offline_environment, run_tinyscale


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
    "Run `python -m tinyscale ARGS` in a fresh process: `cli_process(*args, root=None, env=None, timeout=300, cwd=None)`."
    def run(*args, root=None, env=None, timeout=300, cwd=None):
        return run_tinyscale(*args, root=root, env=env if env is not None else offline_environment(tmp_path),
                             timeout=timeout, cwd=cwd or root or tmp_path)
    return run


@pytest.fixture(scope="session")
def fixture_models(tmp_path_factory):
    "The folder of a TinyStories-1M-shaped fixture model (written once per session; treat as read-only)."
    from tinyscale.models import write_fixture_models
    folder, = write_fixture_models(tmp_path_factory.mktemp("models"), sizes=("1M",))
    return folder


@pytest.fixture(scope="session")
def fixture_run(tmp_path_factory):
    """A real short training run in the Trainer's layout (a tiny Llama, 120 steps, `checkpoint-30` to `checkpoint-120`;
    see `tinyscale.runs.write_fixture_run`), trained once per session; treat as read-only (copy it to change it)."""
    from tinyscale.runs import write_fixture_run
    return write_fixture_run(tmp_path_factory.mktemp("training")/"fixture-run", steps=120, save_every=30)
