"""A real-style import, end to end: a published study's wide CSV whose rows are sorted by model and whose prompts are
not in the prompt set, with `\\r\\n` line breaks, smart quotes, mojibake and a `comments` column.

`write_real_style_csv` builds the file. `fixtures/real_import_old_store/` is that file imported (and one note typed in
the panel) by the version before prompt ids of unmatched prompts were derived from their category and text: its
records carry `import-<ID>` prompt ids, and it must keep working.
"""
import csv, json, shutil
from pathlib import Path

import pandas as pd
import pytest

from tinyscale.completions import load_completions
from tinyscale.prompts import read_prompt_rows
from tinyscale.rubric import load_rubric

FIXTURES = Path(__file__).parent/"fixtures"
OLD_STORE = FIXTURES/"real_import_old_store"
ROOT = Path(__file__).resolve().parents[1]
MODELS = ("roneneldan/TinyStories-1M", "roneneldan/TinyStories-8M", "roneneldan/TinyStories-28M")
RATER = "Ux Tester"

# Two prompt slots per category, none of them in data/prompts.csv; one is written with mojibake (UTF-8 read as
# Windows-1252), the same on the three models' rows, as a file saved once by a tool that decoded it wrongly.
SLOTS = [
    ("Grammar", "Once upon a time, a small duck named Pip waddled to the pond. “Wait for me!” Pip called, but"),
    ("Grammar", "The twins found a box under the bed. Inside it they"),
    ("Creativity", "Nora’s kite was not an ordinary kite. When the wind blew, it"),
    ("Creativity", "â€œLetâ€™s build a castle out of clouds,â€ said Leo. So they"),
    ("Plot", "Sam lost his red boot in the mud on the way to school. He"),
    ("Plot", "A little bear could not find his way home after the storm. He"),
    ("Factual Knowledge", "Every winter the pond froze, because water turns to ice when it is very"),
    ("Factual Knowledge", "Ben planted a seed and gave it water and sun. After many days, the seed grew into a"),
    ("Reasoning", "Lily had three apples. She gave one to her friend, so now she had"),
    ("Reasoning", "It was raining, so Max took his umbrella. When he came home, his shoes were wet but his hair was"),
    ("Context-Tracking", "Anna had a green hat and Tom had a blue scarf. Tom gave his scarf to Anna, so Anna now had"),
    ("Context-Tracking", "The cat sat on the mat while the dog slept in the garden. When the bell rang, the cat"),
]
MOJIBAKE_COMPLETIONS = {  # (model index, slot) -> the mis-decoded text in that completion
    (1, 0): " she said, â€œLetâ€™s go!â€",          # Windows-1252
    (2, 4): " he said, ‚ÄúLet‚Äôs find it!‚Äù",        # Mac Roman
}
COMMENTS = {(0, 1): "repeats the prompt word for word", (1, 2): "a lovely ending, but very short",
            (2, 11): "not scored: it stops mid-sentence"}
UNSCORED = {(2, 11)}          # a row without any score: a completion still to score (it has a comment)
PARTLY = {(1, 5): "C"}        # a row with one criterion left blank


def completion_text(model:int, slot:int)->str:
    "A completion of `slot` by model number `model`: `\\r\\n` line breaks inside, smart quotes, sometimes mojibake."
    text = (f" the {['little', 'big', 'happy'][model]} friends played {['all day', 'until dark', 'by the sea'][model]}."
            f"\r\n“This is fun,” said number {slot + 1}. It’s the best day!\r\n")
    return text + MOJIBAKE_COMPLETIONS.get((model, slot), " The end.")


def score_of(model:int, slot:int, criterion:int)->str:
    return ("0", "0.5", "1.0")[(model + slot + criterion) % 3]


def write_real_style_csv(path:Path)->Path:
    "The real-style wide file: IDs 1-12 the 1M model, 13-24 the 8M, 25-36 the 28M; `\\r\\n` rows; a BOM; comments."
    rubric = load_rubric()
    columns = [c.column for c in rubric]
    rows = []
    for m, model in enumerate(MODELS):
        for s, (category, prompt) in enumerate(SLOTS):
            cells = dict.fromkeys(columns, "")
            for i, criterion in enumerate(rubric.for_category(category)):
                if (m, s) in UNSCORED or PARTLY.get((m, s)) == criterion.label: continue
                cells[criterion.column] = score_of(m, s, i)
            rows.append([str(m * len(SLOTS) + s + 1), category, prompt, completion_text(m, s), model,
                         *cells.values(), COMMENTS.get((m, s), "")])
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(["ID", "category", "prompt", "completion", "model_name", *columns, "comments"])
        writer.writerows(rows)
    return path


def test_the_file_is_real_style(tmp_path):
    data = write_real_style_csv(tmp_path/"study.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\r\n") > 3 * len(SLOTS) and b"\n" not in data.replace(b"\r\n", b"")
    table = [p.prompt for _, p in read_prompt_rows(ROOT/"data"/"prompts.csv")]
    assert not set(prompt for _, prompt in SLOTS) & set(table)
    assert "â€œLetâ€™s".encode() in data and "‚ÄúLet‚Äôs".encode() in data and "“This is fun,”".encode() in data
