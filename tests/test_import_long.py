"""`tinyscale scores import-long`, end to end: a judge's scores from elsewhere, in the published long layout
(`id,res_category,res_prompt,res_completion,category,subcriterion,score,explanation,score_name,text,agree,comments`),
imported over completions that a researcher's wide import put in the table, then compared with the researcher.

The judge file is written the way real ones are: `\\r\\n` line breaks (inside completions too), smart quotes, a text
that two models' completions share (so one set of rows scores both), a completion written with its whitespace changed,
a row for a completion that is not in the table, and a review (`agree`, `comments`) that is not the judge's.
"""
import csv, io, subprocess
from pathlib import Path

import pandas as pd
import pytest

from support import make_workbook, offline_environment, tinyscale_command
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore
from tinyscale.completions import load_completions

MODELS = ("roneneldan/TinyStories-1M", "roneneldan/TinyStories-8M", "roneneldan/TinyStories-28M")
RATER, JUDGE = "ana", "judge:published"
SLOTS = [
    ("Grammar", "Once upon a time, a small duck named Pip waddled to the pond. “Wait for me!” Pip called, but"),
    ("Plot", "Sam lost his red boot in the mud on the way to school. He"),
    ("Reasoning", "Lily had three apples. She gave one to her friend, so now she had"),
    ("Context-Tracking", "Anna had a green hat and Tom had a blue scarf. Tom gave his scarf to Anna, so Anna now had"),
]
SHARED = (0, 1)       # slot 0: the 1M and 8M models wrote the same text
RESPACED = (2, 3)     # model 2's completion of slot 3 is written in the judge file with its whitespace changed
LEVELS = ("0", "0.5", "1.0")
REAL_HEADER = ["id", "res_category", "res_prompt", "res_completion", "category", "subcriterion", "score", "explanation",
               "score_name", "text", "agree", "comments"]


def completion_text(model:int, slot:int)->str:
    "A completion: `\\r\\n` inside, smart quotes; the 1M and 8M models' completions of slot 0 are the same text."
    if slot == 0 and model in SHARED: model = SHARED[0]
    return (f" the {['little', 'big', 'happy'][model]} friends played.\r\n“This is fun,” said number {slot + 1}. "
            f"It’s the best day!\r\nThe end.")


def human_score(model:int, slot:int, criterion:int)->str:
    return LEVELS[(model + slot + criterion) % 3]


def judge_score(model:int, slot:int, criterion:int)->str:
    "The judge's score: the researcher's, except on about a quarter of the items (one score for a shared text)."
    if slot == 0 and model in SHARED: model = SHARED[0]
    human = human_score(model, slot, criterion)
    return human if (model + slot + 2 * criterion) % 4 else LEVELS[(LEVELS.index(human) + 1) % 3]


def write_wide(path:Path)->Path:
    "The researcher's own scores, in the wide layout, imported first: it puts the 12 completions in the table."
    rubric = load_rubric()
    columns = [c.column for c in rubric]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(["ID", "category", "prompt", "completion", "model_name", *columns])
        for m, model in enumerate(MODELS):
            for s, (category, prompt) in enumerate(SLOTS):
                cells = dict.fromkeys(columns, "")
                for i, criterion in enumerate(rubric.for_category(category)): cells[criterion.column] = human_score(m, s, i)
                writer.writerow([str(m * len(SLOTS) + s + 1), category, prompt, completion_text(m, s), model, *cells.values()])
    return path


def judge_rows(bad_score:bool=False, unmatched:bool=True)->list[list[str]]:
    "The judge file's rows in the real layout: one per distinct text and criterion (no model column)."
    rubric, rows, seen = load_rubric(), [], set()
    for m in range(len(MODELS)):
        for s, (category, prompt) in enumerate(SLOTS):
            text = completion_text(m, s)
            if (prompt, text) in seen: continue
            seen.add((prompt, text))
            if (m, s) == RESPACED: text = text.replace("\r\n", "\n").replace(" It’s", "  It’s") + " "
            for i, criterion in enumerate(rubric.for_category(category)):
                score = judge_score(m, s, i)
                rows.append([str(len(rows) + 1), category, prompt, text, category, criterion.label, score,
                             f"Scored {score}: “{criterion.text}”.", criterion.column, criterion.text,
                             "1" if i % 2 else "0", "too kind" if i == 1 else ""])
    if bad_score: rows[5][6] = "2"
    if unmatched:
        category, prompt = SLOTS[1]
        rows.append([str(len(rows) + 1), category, prompt, " a story no model in the table wrote.", category, "A", "1",
                     "Fine.", "Plot_A_score", "", "", ""])
    return rows


def write_judge(path:Path, rows:list[list[str]], header:list[str]=REAL_HEADER)->Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(("\ufeff" + buffer.getvalue()).encode("utf-8"))
    return path


def expected_pairs()->list[tuple[str, str]]:
    "(researcher's score, judge's score) of every completion and criterion: the judge scored all 12 completions."
    rubric = load_rubric()
    return [(human_score(m, s, i), judge_score(m, s, i)) for m in range(len(MODELS)) for s, (category, _) in enumerate(SLOTS)
            for i, _ in enumerate(rubric.for_category(category))]


@pytest.fixture
def study(tmp_path, cli):
    "A workbook whose completions table holds the researcher's 12 imported completions, and the options to reach it."
    root = make_workbook(tmp_path/"workbook")
    where = ["--store", root/"scores", "--completions", root/"completions"]
    status, out, err = cli("scores", "import", write_wide(tmp_path/"ana.csv"), "--rater", RATER, *where, root=root)
    assert (status, err) == (0, ""), err
    return root, where


def judge_file_bytes(root:Path)->bytes|None:
    path = root/"scores"/"judge_published.jsonl"
    return path.read_bytes() if path.exists() else None


def test_unmatched_row_is_an_error_listing_it_and_nothing_is_imported(study, tmp_path, cli):
    root, where = study
    path = write_judge(tmp_path/"judge.csv", judge_rows())
    status, out, err = cli("scores", "import-long", path, "--rater", JUDGE, *where, root=root)
    assert (status, out) == (1, "")
    lines = [line for line in err.splitlines() if not line.startswith("tinyscale: warning:")]
    assert lines[-1] == f"tinyscale: error: {path}: 1 problem(s); nothing was imported"
    assert len(lines) == 2 and lines[0].startswith(f"tinyscale: error: {path}, row 36 (line ")
    assert "matches no completion in the completions table (Plot, prompt 'Sam lost his red boot" in lines[0]
    assert judge_file_bytes(root) is None


def test_skip_unmatched_imports_every_other_score_and_a_second_import_adds_nothing(study, tmp_path, cli):
    root, where = study
    path = write_judge(tmp_path/"judge.csv", judge_rows())
    status, out, err = cli("scores", "import-long", path, "--rater", JUDGE, "--skip-unmatched", *where, root=root)
    assert status == 0, err
    # the review columns are named once, as not read
    assert err.count("\n") == 1 and "'score_name', 'text', 'agree', 'comments' are not read" in err
    assert out.startswith(f"{path}: 35 row(s), 34 matched 12 completion(s); ")
    assert "3 row(s) matched only with whitespace normalised (rows 33, 34, 35)" in out
    assert "5 row(s) score a text that several completions share, each of them (rows 2, 3, 4, 5, 6)" in out
    assert "1 row(s) matched no completion and were skipped (rows 36)" in out
    assert f"39 score(s) added for {JUDGE} in {root/'scores'/'judge_published.jsonl'}, 0 already imported" in out
    written = judge_file_bytes(root)

    status, out, err = cli("scores", "import-long", path, "--rater", JUDGE, "--skip-unmatched", *where, root=root)
    assert status == 0
    assert f"nothing new: all 39 score(s) were already imported for {JUDGE}" in out
    assert judge_file_bytes(root) == written

    store = ScoreStore(root/"scores", completions=load_completions(root/"completions"))
    events = store.events(JUDGE)
    assert len(events) == 39 and set(events.source) == {JUDGE}
    current = store.current(JUDGE)
    shared = current[current.category == "Grammar"].groupby("criterion").model.nunique()
    assert shared.tolist() == [3] * 5  # the shared text's rows scored both the 1M and the 8M completion
    assert all(note.startswith("Scored ") and "“" in note for note in current.note)


def test_the_judge_s_scores_work_with_agreement(study, tmp_path, cli):
    root, where = study
    path = write_judge(tmp_path/"judge.csv", judge_rows(unmatched=False))
    status, out, err = cli("scores", "import-long", path, "--rater", JUDGE, *where, root=root)
    assert status == 0, err
    assert "35 row(s)" not in out and "39 score(s) added" in out
    status, out, err = cli("agreement", "--a", RATER, "--b", JUDGE, *where, "--format", "csv", "--resamples", "200", root=root)
    assert status == 0, err
    table = pd.read_csv(io.StringIO(out))
    overall = table[table.level == "overall"].iloc[0]
    pairs = expected_pairs()
    assert overall.n == len(pairs) == 39
    assert overall.exact == pytest.approx(sum(float(a) == float(b) for a, b in pairs) / len(pairs))
    status, out, err = cli("agreement", "--a", RATER, "--b", JUDGE, *where, root=root)
    assert status == 0 and f"{JUDGE}" in out


def test_a_bad_score_is_one_line_and_nothing_is_imported(study, tmp_path, cli):
    root, where = study
    path = write_judge(tmp_path/"judge.csv", judge_rows(bad_score=True))
    status, out, err = cli("scores", "import-long", path, "--rater", JUDGE, "--skip-unmatched", *where, root=root)
    assert (status, out) == (1, "")
    lines = [line for line in err.splitlines() if not line.startswith("tinyscale: warning:")]
    assert len(lines) == 2
    assert lines[0].startswith(f"tinyscale: error: {path}, row 7 (line ") and lines[0].endswith("score: '2' is not a score level (use 0, 0.5 or 1)")
    assert judge_file_bytes(root) is None


@pytest.mark.parametrize("rater, message", [
    ("ana", "rater 'ana' is not a judge"), ("judge:", "rater 'judge:' is not a judge")])
def test_the_rater_must_be_a_judge(study, tmp_path, cli, rater, message):
    root, where = study
    path = write_judge(tmp_path/"judge.csv", judge_rows(unmatched=False))
    status, out, err = cli("scores", "import-long", path, "--rater", rater, *where, root=root)
    assert (status, out) == (1, "") and err.count("\n") == 1 and message in err


def test_broken_files_are_one_line(study, tmp_path, cli):
    root, where = study
    latin = tmp_path/"latin.csv"
    latin.write_bytes("category,prompt,completion,criterion,score\nPlot,Sam’s boot,x,A,1\n".encode("cp1252"))
    unclosed = tmp_path/"unclosed.csv"
    unclosed.write_text('category,prompt,completion,criterion,score\nPlot,"Sam,x,A,1\n', encoding="utf-8")
    for path, message in ((latin, "line 2: not UTF-8 text"), (unclosed, "not CSV"), (tmp_path/"missing.csv", "score file not found")):
        status, out, err = cli("scores", "import-long", path, "--rater", JUDGE, *where, root=root)
        assert (status, out) == (1, "") and err.count("\n") == 1 and message in err, err
    assert judge_file_bytes(root) is None


def test_another_layout_with_a_model_column_via_columns(study, tmp_path, cli):
    "With a model column, the shared text scores only that model's completion; --columns names the other columns."
    root, where = study
    category, prompt = SLOTS[0]
    rows = [[category, prompt, completion_text(1, 0), "A", "0.5", "Not sure.", MODELS[1]]]
    path = write_judge(tmp_path/"other.csv", rows, ["category", "story_start", "story_end", "criterion", "score", "reason", "model_name"])
    status, out, err = cli("scores", "import-long", path, "--rater", "judge:other", *where, root=root)
    assert status == 1 and "no column for prompt, completion" in err and err.count("\n") == 2  # the problem, then the summary
    status, out, err = cli("scores", "import-long", path, "--rater", "judge:other", "--columns",
                           "prompt=story_start,completion=story_end,explanation=reason", *where, root=root)
    assert (status, err) == (0, ""), err
    assert "1 row(s), 1 matched 1 completion(s); 1 score(s) added" in out
    current = ScoreStore(root/"scores", completions=load_completions(root/"completions")).current("judge:other")
    assert (current.model.tolist(), current.score.tolist(), current.note.tolist()) == ([MODELS[1]], [0.5], ["Not sure."])
    status, out, err = cli("scores", "import-long", path, "--rater", "judge:other", "--columns", "prompt=story_start,promt=x",
                           *where, root=root)
    assert status == 1 and "--columns 'promt' is not a field" in err and err.count("\n") == 1


def test_two_rows_that_give_one_text_different_scores_are_an_error(study, tmp_path, cli):
    root, where = study
    rows = judge_rows(unmatched=False)
    rows.append(list(rows[0]))
    rows[-1][0], rows[-1][6] = str(len(rows)), "0" if rows[0][6] != "0" else "1"
    path = write_judge(tmp_path/"judge.csv", rows)
    status, out, err = cli("scores", "import-long", path, "--rater", JUDGE, *where, root=root)
    assert (status, out) == (1, "")
    problems = [line for line in err.splitlines() if "error" in line]
    assert len(problems) == 3  # the repeated row contradicts row 2 for each of the two completions sharing the text
    assert all("but row 2 gives it" in line for line in problems[:2]) and problems[-1].endswith("2 problem(s); nothing was imported")
    assert judge_file_bytes(root) is None


def test_two_imports_at_once_write_each_score_once(study, tmp_path):
    "Both processes wait for the store's import lock: the second finds the first one's scores and adds nothing."
    root, where = study
    path = write_judge(tmp_path/"judge.csv", judge_rows(unmatched=False))
    env = {**offline_environment(tmp_path), "TINYSCALE_ROOT": str(root)}
    runs = [subprocess.Popen(tinyscale_command("scores", "import-long", path, "--rater", JUDGE, *where), env=env, cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    said = sorted("39 score(s) added" in out for out, _ in outputs)
    assert said == [False, True] and any("nothing new: all 39 score(s)" in out for out, _ in outputs)
    assert len(ScoreStore(root/"scores", completions=load_completions(root/"completions")).events(JUDGE)) == 39
