"""Shared pieces of the judge tests: a scratch workbook with completions, and keys that must never be written."""
from pathlib import Path

import pandas as pd

from support import make_workbook as make_data_files, offline_environment
from tinyscale.completions import COMPLETION_FIELDS, append_completions, example_completion
from tinyscale.prompts import load_prompts
from tinyscale.rubric import CATEGORIES

APIS = ("anthropic", "gemini", "openai")
KEY_VARIABLES = {"anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY", "openai": "OPENAI_API_KEY"}
# Distinctive fake keys: a test fails if any of them shows up in a file the workbook wrote.
KEYS = {"anthropic": "sk-ant-test-0123456789abcdefSECRET", "gemini": "AIzaTest0123456789abcdefSECRET",
        "openai": "sk-test-0123456789abcdefSECRET"}
MODELS = {"anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-flash", "openai": "gpt-4o-mini"}
ALL_KEY_VARIABLES = ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")


def make_workbook(folder: Path, per_category: int = 2, model: str = "fixture/TinyStories-1M") -> pd.DataFrame:
    """A scratch workbook under `folder`: rubric, prompts, judge templates, and a completions run file."""
    make_data_files(folder, judge=True)
    prompts = load_prompts(folder / "data" / "prompts.csv")
    records = []
    for category in CATEGORIES:
        for number, prompt in enumerate([p for p in prompts if p.category == category][:per_category]):
            text = f" Lily found a {['red ball', 'blue kite', 'big box'][number % 3]}. She was very happy."
            records.append(example_completion(prompt.id, category, prompt.prompt, text, model, completion_raw=text + "<|endoftext|>",
                                              finish_reason="eos", ended_with_eos=True, new_story=False, run="fixture"))
    append_completions(folder / "data" / "completions" / "fixture.jsonl", records)
    return pd.DataFrame([r.to_dict() for r in records], columns=list(COMPLETION_FIELDS))


def key_environment(root: Path, apis=(), **extra) -> dict:
    """`offline_environment(root, **extra)` with the fake key of each of `apis` set (and no other key)."""
    return offline_environment(root, **{KEY_VARIABLES[api]: KEYS[api] for api in apis}, **extra)


def files_containing(folder: Path, secrets) -> list:
    """Every file under `folder` whose bytes contain any of `secrets`."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {s[:8]}..." for s in secrets if s.encode() in data]
    return found
