"""A real-style import, end to end: a published study's wide CSV whose rows are sorted by model and whose prompts are
not in the prompt set, with `\\r\\n` line breaks, smart quotes, mojibake and a `comments` column.

`write_real_style_csv` builds the file. `fixtures/real_import_old_store/` is that file imported (and one note typed in
the panel) by the version before prompt ids of unmatched prompts were derived from their category and text: its
records carry `import-<ID>` prompt ids, and it must keep working.
"""
import csv, shutil
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


# -- using it as a researcher would: the command line on a scratch workbook, then the panel and the review panel --

def scores_args(root:Path)->list[str]:
    return ["--store", root/"scores", "--completions", root/"completions"]


def imported_workbook(workbook:Path, cli)->tuple:
    "The real-style file imported into a scratch workbook with `tinyscale scores import`: (its path, the CLI result)."
    study = write_real_style_csv(workbook/"study.csv")
    return study, cli("scores", "import", study, "--rater", RATER, *scores_args(workbook), root=workbook)


def row_line(row:int)->int:
    "The file line a data row starts on: each row spans three lines (two line breaks in its completion)."
    return 3 * row - 4


def open_store(root:Path):
    from tinyscale.store import ScoreStore
    return ScoreStore(root/"scores", completions=load_completions(root/"completions"))


def blind_panel_texts(store, rater:str)->list[str]:
    "Every text every item of a blind panel shows."
    from tinyscale.panel import ScorePanel, widget_texts
    panel = ScorePanel(store.completions, store.rubric, store, rater)
    texts = []
    for position in range(len(panel.order)):
        panel.go_to(position)
        texts += widget_texts(panel.ui)
    return texts


def assert_blind(texts:list[str], table:pd.DataFrame):
    "No text names a model, a run, a prompt id, a row ID or a completion id."
    shown = "\n".join(texts)
    for model in MODELS: assert model.split("/")[-1] not in shown
    for value in set(table.run) | set(table.prompt_id) | set(table.completion_id):
        assert value not in shown, value
    assert "prompt import-" not in shown and "import-" not in shown


def test_import_summary_ids_and_mojibake_warning(workbook, cli):
    study, result = imported_workbook(workbook, cli)
    assert result.status == 0, result.err
    assert "36 row(s); 36 new completion(s)" in result.out and "104 score(s) added for Ux Tester" in result.out
    assert "3 note(s) added" in result.out
    assert result.out.strip().endswith("12 distinct prompt(s) (category and text), 0 of them in the prompt set")
    # the mis-decoded rows, each named: the Creativity prompt of slot 4 on the three models' rows, two completions
    [warning] = [line for line in result.err.splitlines() if "mis-decoded" in line]
    assert warning.startswith(f"tinyscale: warning: {study}: 5 row(s) hold text that looks mis-decoded")
    assert "'â€œ' for '“'" in warning and "'‚Äú' for '“'" in warning
    places = [f"row {r} (line {row_line(r)}) {f}" for r, f in ((5, "prompt"), (14, "completion"), (17, "prompt"),
                                                               (29, "prompt"), (30, "completion"))]
    assert warning.endswith("imported as written: " + ", ".join(places))
    # one prompt id per category and text, shared by the three models; no id that encodes a row, a model or a run
    table = load_completions(workbook/"completions")
    assert len(table) == 36 and table.prompt_id.nunique() == 12
    assert (table.groupby("prompt_id").model.nunique() == 3).all()
    assert (table.groupby("prompt_id")[["category", "prompt"]].nunique() == 1).all().all()
    assert not table.prompt_id.str.fullmatch(r"import-\d+").any()
    assert sorted(table.import_id, key=int) == [str(i) for i in range(1, 37)]  # the rows' IDs, kept for the export
    # the texts exactly as written: \r\n, smart quotes, mojibake
    assert completion_text(1, 0) in set(table.completion) and "\r\n“This is fun,”" in completion_text(1, 0)
    # the analysis keys them by prompt: 12 prompt units, each scored for the three models
    from tinyscale.analysis import check_scores
    units = check_scores(open_store(workbook).current(RATER)).groupby("prompt_unit").model.nunique()
    assert sorted(units) == [2] + [3] * 11  # the 28M's last story is not scored


def test_blind_panel_shows_no_id(workbook, cli):
    imported_workbook(workbook, cli)
    store = open_store(workbook)
    texts = blind_panel_texts(store, "Second Rater")
    assert any("Item 38 of 38" in t for t in texts)  # the 36 items and, blind, 2 of them shown again (5%)
    assert any("0 / 36 scored" in t for t in texts) and any("0 / 2 shown again" in t for t in texts)
    assert_blind(texts, store.completions)


def test_store_imported_by_the_old_version(tmp_path, workbook, cli):
    old = tmp_path/"old"
    shutil.copytree(OLD_STORE, old)
    before = load_completions(old/"completions")
    assert before.prompt_id.str.fullmatch(r"import-\d+").all()                  # what the old version wrote
    events_before = (old/"scores"/"Ux_Tester.jsonl").read_text().splitlines()
    study = write_real_style_csv(workbook/"study.csv")
    # re-importing the same file: every completion known, no score written again; the comments, new to it, come in
    again = cli("scores", "import", study, "--rater", RATER, *scores_args(old), root=workbook)
    assert again.status == 0, again.err
    assert "no new completions, 36 row(s) already known; 0 score(s) added for Ux Tester" in again.out
    assert "104 already imported; 3 note(s) added, 0 already imported" in again.out
    assert sorted(p.name for p in (old/"completions").iterdir()) == ["import-study-77b3a5fd.jsonl"]
    events = (old/"scores"/"Ux_Tester.jsonl").read_text().splitlines()
    assert events[:len(events_before)] == events_before and len(events) == len(events_before) + 3
    third = cli("scores", "import", study, "--rater", RATER, *scores_args(old), root=workbook)
    assert "0 score(s) added" in third.out and "0 note(s) added, 3 already imported" in third.out
    assert len((old/"scores"/"Ux_Tester.jsonl").read_text().splitlines()) == len(events)
    # it reads as before: the analysis keys its rows by prompt text, the export gives the file's IDs back
    store = open_store(old)
    from tinyscale.analysis import check_scores
    units = check_scores(store.current(RATER)).groupby("prompt_unit").model.nunique()
    assert sorted(units) == [2] + [3] * 11  # the 28M's last story is not scored
    export = cli("scores", "export", tmp_path/"back.csv", "--rater", RATER, *scores_args(old), root=workbook)
    assert export.status == 0 and "36 row(s), wide format" in export.out
    back = pd.read_csv(tmp_path/"back.csv", dtype=str, keep_default_na=False)
    assert sorted(back.ID, key=int) == [str(i) for i in range(1, 37)]
    assert (back.note != "").sum() == 4                                          # the panel note and the three comments
    # and its blind panel shows none of its import-<ID> ids
    assert_blind(blind_panel_texts(store, "Second Rater"), store.completions)


def test_notes_in_the_exports_the_review_and_back(tmp_path, workbook, cli):
    from tinyscale.agreement import Review, ReviewPanel
    from tinyscale.panel import ScorePanel
    from tinyscale.wide import import_wide_csv, read_wide_csv
    imported_workbook(workbook, cli)
    store = open_store(workbook)
    panel = ScorePanel(store.completions, store.rubric, store, RATER)
    panel.go_to(0)
    typed = panel.completion_id
    panel.set_note("typed in the panel: “odd” ending")
    # wide: one note column, the latest note of the rater; the three comments and the typed note
    wide = cli("scores", "export", tmp_path/"wide.csv", "--rater", RATER, *scores_args(workbook), root=workbook)
    assert wide.status == 0, wide.err
    rows = read_wide_csv(tmp_path/"wide.csv")
    assert (tmp_path/"wide.csv").read_text(encoding="utf-8").splitlines()[0].endswith(",note")
    notes = {r.id: r.note for r in rows if r.note}
    typed_id = store.completions.set_index("completion_id").at[typed, "import_id"]
    expected = {str(m * len(SLOTS) + s + 1): note for (m, s), note in COMMENTS.items()}
    assert notes == {**expected, typed_id: "typed in the panel: “odd” ending"}
    assert len(rows) == 36                                      # the unscored row with a comment is exported too
    # long: the note on every row of that completion
    long = cli("scores", "export", tmp_path/"long.csv", "--format", "long", *scores_args(workbook), root=workbook)
    assert long.status == 0, long.err
    frame = pd.read_csv(tmp_path/"long.csv", dtype=str, keep_default_na=False)
    assert set(frame[frame.completion_id == typed].note) == {"typed in the panel: “odd” ending"}
    assert (frame.groupby("completion_id").note.nunique() == 1).all()
    # the exported file imports into another store with its notes
    other = tmp_path/"other"
    from tinyscale.store import ScoreStore
    with pytest.warns(UserWarning, match="5 row.s. hold text that looks mis-decoded"):
        summary = import_wide_csv(tmp_path/"wide.csv", "Reader", ScoreStore(other/"scores", completions=load_completions(other/"completions")),
                                  other/"completions", prompts=[])
    assert summary.notes == 4
    # the review panel shows the rater's note beside the judge's score
    judge = "judge:fake"
    scored = store.current(RATER)
    store.set_scores([dict(completion_id=r.completion_id, criterion=r.criterion, score=1.0, note="the judge's reason")
                      for r in scored.itertuples()], judge, source=judge)
    review = ReviewPanel(Review(store, judge, RATER))
    while review.review.item["completion_id"] != typed: review.go_next()
    assert "typed in the panel: “odd” ending" in review.card.value and "the judge&#x27;s reason" in review.card.value


def test_unknown_rater_is_an_error_in_every_command(tmp_path, workbook, cli):
    imported_workbook(workbook, cli)
    out = tmp_path/"out.csv"
    store_args = scores_args(workbook)
    hint = f"has no scores in {workbook/'scores'} (raters: Ux Tester); did you mean 'Ux Tester'? (Ux_Tester is the name of that rater's file)"
    for command in (["scores", "export", out, "--rater", "Ux_Tester"], ["scores", "export", out, "--format", "long", "--rater", "Ux_Tester"],
                    ["scores", "progress", "--rater", "Ux_Tester"], ["scores", "todo", "--rater", "Ux_Tester"]):
        result = cli(*command, *store_args, root=workbook)
        assert (result.status, result.out) == (1, ""), command
        assert result.err == f"tinyscale: error: rater 'Ux_Tester' {hint}\n", command
        assert not out.exists()
    report = cli("report", "--rater", "Ux_Tester", *store_args, root=workbook)
    assert report.status == 1 and "rater 'Ux_Tester' has no scores" in report.err and "(raters: Ux Tester)" in report.err
    for a, b in (("Ux_Tester", "judge:x"), (RATER, "Ux_Tester")):
        agreement = cli("agreement", "--a", a, "--b", b, *store_args, root=workbook)
        assert agreement.status == 1 and "rater 'Ux_Tester' has no scores (raters: Ux Tester); did you mean 'Ux Tester'?" in agreement.err
    assert cli("scores", "export", out, "--rater", RATER, *store_args, root=workbook).status == 0


def test_todo_names_no_model(workbook, cli):
    from tinyscale.panel import ScorePanel
    imported_workbook(workbook, cli)
    store_args = scores_args(workbook)
    counts = cli("scores", "todo", "--rater", RATER, *store_args, root=workbook)
    assert counts.status == 0, counts.err
    lines = counts.out.splitlines()
    assert lines[0] == "Ux Tester: 2 of 36 completion(s) left to score (not fully scored), per category, no models named:"
    table = pd.read_fwf(pd.io.common.StringIO("\n".join(lines[1:-1])))
    assert table.to_dict("list") == {"category": ["Grammar", "Creativity", "Plot", "Factual Knowledge", "Reasoning", "Context-Tracking"],
                                     "left": [0, 0, 1, 0, 0, 1], "total": [6] * 6}
    listed = cli("scores", "todo", "--rater", RATER, "--ids", *store_args, root=workbook)
    assert "in the panel's blind order (interleaved, seed 0)" in listed.out.splitlines()[0]
    store = open_store(workbook)
    order = ScorePanel(store.completions, store.rubric, store, RATER).order
    items = [line.split() for line in listed.out.splitlines()[2:]]
    by_id = store.completions.set_index("completion_id")
    assert [(order[int(i[0]) - 1], i[1]) for i in items] == [(i[-1], by_id.at[i[-1], "category"]) for i in items]
    assert sorted(by_id.loc[[i[-1] for i in items], "import_id"], key=int) == ["18", "36"]
    assert [i[2:4] for i in items] == ([["1", "of"], ["3", "of"]] if items[0][1] == "Plot" else [["3", "of"], ["1", "of"]])
    by_prompt = cli("scores", "todo", "--rater", RATER, "--order", "prompt", *store_args, root=workbook)
    assert "per category and prompt" in by_prompt.out and "A little bear could not find his way home after t…" in by_prompt.out
    for result in (counts, listed, by_prompt):
        assert "TinyStories" not in result.out and "import-" not in result.out and "run" not in result.out.split("\n", 1)[1]


def test_todo_item_numbers_match_a_panel_opened_with_the_same_reshow(workbook, cli):
    "The panel's second showings take item numbers: `--reshow R` numbers the items as a panel opened with `reshow=R` does."
    from tinyscale.panel import RESHOW_SHARE, ScorePanel
    imported_workbook(workbook, cli)
    store = open_store(workbook)
    numbers = {}
    for reshow in (None, RESHOW_SHARE, 0.0, 0.3):
        listed = cli("scores", "todo", "--rater", RATER, "--ids", *([] if reshow is None else ["--reshow", reshow]), *scores_args(workbook), root=workbook)
        assert listed.status == 0, listed.err
        items = [line.split() for line in listed.out.splitlines()[2:]]
        panel = ScorePanel(store.completions, store.rubric, store, RATER, reshow=RESHOW_SHARE if reshow is None else reshow)
        assert len(items) == 2 and all(panel.order[int(i[0]) - 1] == i[-1] for i in items), (reshow, items)
        assert all(int(i[0]) - 1 not in panel.reshows for i in items)  # a second showing is never listed
        numbers[reshow] = [int(i[0]) for i in items]
    assert numbers[None] == numbers[RESHOW_SHARE]  # the default is the panel's
    assert len({tuple(n) for n in numbers.values()}) > 1  # the share moves the numbers, so it must be the panel's
    bad = cli("scores", "todo", "--rater", RATER, "--reshow", "0.6", *scores_args(workbook), root=workbook)
    assert (bad.status, bad.out) == (1, "") and bad.err.count("\n") == 1 and "reshow 0.6: use a share between 0 (none) and 0.5" in bad.err
