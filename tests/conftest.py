"""Shared pytest fixtures.

`fixture_models` writes a TinyStories-1M-shaped model (GPT-Neo, the real architecture and GPT-2
tokenizer, random weights from seed 0; see `tinyscale.models.write_fixture_models`) once per test
session into a temporary folder and returns the model's folder. Tests that only read it may share
it; a test that needs to change a model copies the folder first.
"""
import pytest


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
