"Import and export of the published wide score CSV format, in the library and on the command line."
import json, os, re, shutil, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

from tinyscale.cli import main
from tinyscale.completions import Completion, append_completions, completion_id, load_completions
from tinyscale.core import config_hash, text_hash
from tinyscale.prompts import read_prompt_rows
from tinyscale.store import ScoreStore
from tinyscale.wide import WideCsvProblems, export_long, export_wide, import_wide_csv, imported_prompt_id, read_wide_csv, wide_scores

FIXTURES = Path(__file__).parent/"fixtures"
QUIRKS, CANONICAL, BROKEN = FIXTURES/"wide_quirks.csv", FIXTURES/"wide_canonical.csv", FIXTURES/"wide_broken.csv"
PROMPTS = [p for _, p in read_prompt_rows(FIXTURES/"wide_prompts.csv")]
M1, M8, M28 = "roneneldan/TinyStories-1M", "roneneldan/TinyStories-8M", "roneneldan/TinyStories-28M"

# Every score of wide_quirks.csv, read off the file by hand: (ID, category, model, criterion, score).
QUIRK_SCORES = sorted([
    ("1", "Grammar", M1, "A", 1.0), ("1", "Grammar", M1, "B", 0.5), ("1", "Grammar", M1, "C", 0.0),
    ("1", "Grammar", M1, "D", 0.5), ("1", "Grammar", M1, "E", 1.0),
    ("1", "Grammar", M8, "A", 1.0), ("1", "Grammar", M8, "B", 1.0), ("1", "Grammar", M8, "C", 1.0),
    ("1", "Grammar", M8, "D", 1.0), ("1", "Grammar", M8, "E", 0.0),
    ("2", "Plot", M28, "A", 1.0), ("2", "Plot", M28, "B", 0.5), ("2", "Plot", M28, "C", 0.0), ("2", "Plot", M28, "D", 1.0),
    ("3", "Grammar", M28, "A", 0.5), ("3", "Grammar", M28, "B", 1.0), ("3", "Grammar", M28, "C", 1.0),
    ("3", "Grammar", M28, "D", 0.5), ("3", "Grammar", M28, "E", 0.5),
    ("4", "Factual Knowledge", M8, "A", 1.0),
    ("5", "Reasoning", M1, "A", 0.0),
    ("6", "Context-Tracking", M28, "A", 1.0), ("6", "Context-Tracking", M28, "B", 0.0), ("6", "Context-Tracking", M28, "C", 0.5),
    ("7", "Creativity", M1, "A", 1.0), ("7", "Creativity", M1, "C", 0.5), ("7", "Creativity", M1, "D", 1.0),
    ("9", "Plot", M8, "A", 0.0), ("9", "Plot", M8, "B", 0.0), ("9", "Plot", M8, "C", 0.5), ("9", "Plot", M8, "D", 0.0),
])
KITE = " strong.\r\nHe held on tight, and the kite went up, up, up!\r\n"
LILY = ' play in the park.\r\nOne day, she saw a big, red ball. "Look!" she said.'


def open_store(root):
    return ScoreStore(root/"scores", completions=load_completions(root/"completions"))


def import_into(root, path, rater="ana", prompts=PROMPTS):
    return import_wide_csv(path, rater, open_store(root), root/"completions", prompts=prompts)


def snapshot(root):
    "Every file under root with its bytes."
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_quirk_imports_every_score(tmp_path):
    summary = import_into(tmp_path, QUIRKS)
    assert (summary.rows, summary.created, summary.reused, summary.added, summary.unchanged) == (10, 10, 0, 31, 0)
    completions = load_completions(tmp_path/"completions")
    by_id = completions.set_index("completion_id")
    current = open_store(tmp_path).current("ana")
    got = sorted((by_id.at[r.completion_id, "import_id"], r.category, r.model, r.criterion, r.score) for r in current.itertuples())
    assert got == QUIRK_SCORES
    assert set(current.source) == {"import"}
    # prompts matched by category and exact text; the Grammar reuse of a Plot prompt stays a separate completion; the others
    # get an id from their category and text, the same for both models of row ID 1
    matched = {"2": "pl-01", "3": "gr-01", "4": "fk-01"}
    assert completions.prompt_id.tolist() == [matched.get(r.import_id, imported_prompt_id(r.category, r.prompt))
                                              for r in completions.itertuples()]
    assert sorted(completions.import_id) == ["1", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    assert completions[completions.import_id == "1"].prompt_id.nunique() == 1
    kite = completions[completions.completion == KITE]
    assert sorted(kite.category) == ["Grammar", "Plot"] and kite.completion_id.nunique() == 2
    lily = completions[completions.model == M1].completion.tolist()
    assert LILY in lily and "" in lily
    assert " a café by the sea ☕. “Let’s go!” she said.\r\nThey walked and walked." in completions.completion.tolist()
    assert "Anna had a blue cup and a \"magic\" spoon. Her brother Max had a green cup. Max took the" in completions.prompt.tolist()
    # the records the import created
    [run_file] = (tmp_path/"completions").glob("import-wide_quirks-*.jsonl")
    assert summary.completions_file == run_file
    record = json.loads(run_file.read_bytes().splitlines()[0])
    config = {"source": "wide-csv", "category": "Grammar"}
    assert (record["finish_reason"], record["config"], record["config_hash"]) == ("import", config, config_hash(config))
    assert record["revision"] == f"import:{text_hash(LILY)}" and record["completion"] == LILY
    assert record["completion_id"] == completion_id(M1, record["revision"], text_hash(record["prompt"]), config_hash(config))
    # the row without scores is a completion still to score
    unscored = open_store(tmp_path).unscored("ana")
    assert by_id.loc[unscored, "import_id"].tolist() == ["7", "8"]  # 7 lacks Creativity_B


def test_reimport_adds_nothing(tmp_path):
    import_into(tmp_path, QUIRKS)
    before = snapshot(tmp_path)
    again = import_into(tmp_path, QUIRKS)
    assert (again.created, again.reused, again.added, again.unchanged) == (0, 10, 0, 31)
    assert snapshot(tmp_path) == before


def test_import_scores_completions_already_in_the_table(tmp_path):
    prompt = "Ben had two cookies and gave one to Sue, so he had"
    config = {"num_beams": 5}
    generated = Completion(completion_id(M1, "abc", text_hash(prompt), config_hash(config)), "re-07", "Reasoning", prompt, "",
                           M1, revision="abc", prompt_hash=text_hash(prompt), config=config, config_hash=config_hash(config))
    append_completions(tmp_path/"completions"/"run-1.jsonl", [generated])
    summary = import_into(tmp_path, QUIRKS)
    assert (summary.created, summary.reused) == (9, 1)
    assert open_store(tmp_path).scores_for(generated.completion_id, "ana") == {"A": 0.0}
    assert len(load_completions(tmp_path/"completions")) == 10


def test_corrections_are_added_and_manual_changes_kept(tmp_path):
    import_into(tmp_path, QUIRKS)
    store = open_store(tmp_path)
    reasoning = store.current("ana").query("category == 'Reasoning'").completion_id.item()
    store.set_score(reasoning, "A", 1, "ana")  # the rater changes their mind in the panel
    import_into(tmp_path, QUIRKS)
    assert open_store(tmp_path).scores_for(reasoning, "ana") == {"A": 1.0}
    corrected = tmp_path/"corrected.csv"
    data, row_7_scores = QUIRKS.read_bytes(), b"roneneldan/TinyStories-1M,,,,,,,,,,,,,,,1,,0.5, 1 "
    assert data.count(row_7_scores) == 1
    corrected.write_bytes(data.replace(row_7_scores, row_7_scores.replace(b",0.5,", b",0,")))  # Creativity_C 0.5 -> 0
    summary = import_into(tmp_path, corrected)
    assert (summary.created, summary.added, summary.unchanged) == (0, 1, 30)
    current = open_store(tmp_path).current("ana")
    assert current.query("category == 'Creativity' and criterion == 'C'").score.item() == 0.0


def test_wide_export_round_trips_every_score(tmp_path):
    import_into(tmp_path, QUIRKS, prompts=[])
    out = export_wide(tmp_path/"out.csv", open_store(tmp_path), "ana")
    data = out.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert KITE.encode() in data and LILY.replace('"', '""').encode() in data
    header = data.split(b"\n")[0].decode()
    assert header.startswith("ID,category,prompt,completion,model_name,Grammar_A_score,Grammar_B_score,")
    assert header.endswith("Reasoning_A_score,Context-Tracking_A_score,Context-Tracking_B_score,Context-Tracking_C_score")
    original = read_wide_csv(QUIRKS)
    exported = read_wide_csv(out)
    scored = [r for r in original if r.scores]
    assert [(r.id, r.category, r.prompt, r.completion, r.model, r.scores) for r in exported] == \
           [(r.id, r.category, r.prompt, r.completion, r.model, r.scores) for r in scored]
    # and the export imports back to the same file
    other = tmp_path/"other"
    import_into(other, out, rater="bo", prompts=[])
    assert export_wide(other/"again.csv", open_store(other)).read_bytes() == data


def test_canonical_file_round_trips_byte_for_byte(tmp_path):
    import_into(tmp_path, CANONICAL, prompts=[])
    assert export_wide(tmp_path/"out.csv", open_store(tmp_path), "ana").read_bytes() == CANONICAL.read_bytes()


EXPECTED_PROBLEMS = [
    "wide_broken.csv, row 1: column 'Grammar_F_score' is not a criterion of the rubric",
    "wide_broken.csv, row 3: unknown category 'Poetry'",
    "wide_broken.csv, row 4: Plot_A_score: '0.3' is not a score level",
    "wide_broken.csv, row 5: Reasoning_A_score: '2' is not a score level",
    "wide_broken.csv, row 6 (line 7): Plot_B_score holds '1', but this is a Grammar row",
    "wide_broken.csv, row 7 (line 8): Grammar_A_score: 'yes' is not a score",
    "wide_broken.csv, row 8 (line 9): 6 fields, but the header has 10",
    "wide_broken.csv, row 9 (line 10): repeats the completion of row 2 with a different Grammar_A_score (0.0 here, 1.0 there)",
]


def test_broken_rows_are_all_reported_and_nothing_is_written(tmp_path):
    root = tmp_path/"workbook"
    import_into(root, CANONICAL)
    before = snapshot(root)
    with pytest.raises(WideCsvProblems) as caught:
        import_into(root, BROKEN)
    problems = caught.value.problems
    assert len(problems) == len(EXPECTED_PROBLEMS)
    for problem, expected in zip(problems, EXPECTED_PROBLEMS):
        assert expected in problem, (problem, expected)
        assert "\n" not in problem
    assert snapshot(root) == before


@pytest.mark.parametrize("header, message", [
    ("ID,category,prompt,completion,Grammar_A_score", "row 1: missing column(s) model_name"),
    ("ID,category,prompt,completion,model_name,Grammar_A_score,Grammar_A_score", "column 'Grammar_A_score' appears 2 times"),
    ("ID,category,prompt,completion,model_name,Grammer_A_score", "column 'Grammer_A_score' is not a criterion"),
])
def test_bad_headers(tmp_path, header, message):
    path = tmp_path/"bad.csv"
    path.write_text(header + "\n1,Grammar,Once,upon,m,1\n")
    with pytest.raises(WideCsvProblems, match=re.escape(message)):
        import_into(tmp_path, path)
    assert not (tmp_path/"scores").exists() and not (tmp_path/"completions").exists()


def test_long_export_is_the_tidy_table(tmp_path):
    import_into(tmp_path, QUIRKS)
    import_into(tmp_path, CANONICAL, rater="bo")
    out = export_long(tmp_path/"long.csv", open_store(tmp_path))
    frame = pd.read_csv(out, dtype={"prompt_id": str}, keep_default_na=False)
    assert len(frame) == 31 + 11
    assert {"completion_id", "prompt_id", "category", "criterion", "model", "rater", "score", "source", "prompt",
            "completion"} <= set(frame.columns)
    assert frame.groupby("rater").size().to_dict() == {"ana": 31, "bo": 11}
    assert KITE in frame.completion.tolist()
    with pytest.raises(Exception, match="holds the scores of 2 raters"):
        wide_scores(open_store(tmp_path))


def run_cli(capsys, *argv):
    status = main(["scores", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_import_export_progress(tmp_path, capsys):
    where = ["--store", tmp_path/"scores", "--completions", tmp_path/"completions"]
    status, out, err = run_cli(capsys, "import", QUIRKS, "--rater", "ana", "--prompts", FIXTURES/"wide_prompts.csv", *where)
    assert (status, err) == (0, "")
    assert "10 row(s); 10 new completion(s)" in out and "31 score(s) added for ana" in out
    status, out, err = run_cli(capsys, "import", QUIRKS, "--rater", "ana", "--prompts", FIXTURES/"wide_prompts.csv", *where)
    assert status == 0 and "no new completions, 10 row(s) already known; 0 score(s) added" in out
    status, out, err = run_cli(capsys, "export", tmp_path/"wide.csv", *where)
    assert (status, out.strip(), err) == (0, f"wrote {tmp_path/'wide.csv'}: 9 row(s), wide format", "")
    status, out, err = run_cli(capsys, "export", "--format", "long", tmp_path/"long.csv", *where)
    assert status == 0 and "31 row(s), long format" in out
    status, out, err = run_cli(capsys, "progress", "--rater", "ana", *where)
    assert status == 0 and out.splitlines()[0] == "ana: 8 / 10 scored"  # ID 7 lacks Creativity_B, ID 8 is empty


def test_cli_errors_are_one_line_each(tmp_path, capsys):
    where = ["--store", tmp_path/"scores", "--completions", tmp_path/"completions"]
    status, out, err = run_cli(capsys, "import", BROKEN, "--rater", "ana", *where)
    lines = err.splitlines()
    assert status == 1 and out == ""
    assert len(lines) == len(EXPECTED_PROBLEMS) + 1
    assert all(line.startswith("tinyscale: error: ") for line in lines)
    assert lines[-1].endswith("wide_broken.csv: 8 problem(s); nothing was imported")
    assert not tmp_path.joinpath("scores").exists() and not tmp_path.joinpath("completions").exists()
    status, out, err = run_cli(capsys, "import", tmp_path/"missing.csv", "--rater", "ana", *where)
    assert (status, err) == (1, f"tinyscale: error: {tmp_path/'missing.csv'}: file not found\n")
    status, out, err = run_cli(capsys, "import", QUIRKS, "--rater", " ", *where)
    assert status == 1 and len(err.splitlines()) == 1 and "non-empty rater name" in err
    run_cli(capsys, "import", QUIRKS, "--rater", "ana", *where)
    run_cli(capsys, "import", CANONICAL, "--rater", "bo", *where)
    status, out, err = run_cli(capsys, "export", tmp_path/"wide.csv", *where)
    assert status == 1 and err.count("\n") == 1 and "2 raters (ana, bo); pick one (--rater NAME)" in err
    assert not (tmp_path/"wide.csv").exists()
    status, out, err = run_cli(capsys, "export", tmp_path/"wide.csv", "--rater", "bo", *where)
    assert status == 0 and (tmp_path/"wide.csv").read_bytes() == CANONICAL.read_bytes()


def test_console_script_exit_codes(tmp_path):
    script = Path(sys.executable).parent/"tinyscale"
    if not script.exists(): pytest.skip("the tinyscale console script is not installed")
    env = {**os.environ, "TINYSCALE_ROOT": str(tmp_path)}
    shutil.copytree(Path(__file__).parents[1]/"data", tmp_path/"data", ignore=shutil.ignore_patterns("completions"))
    ok = subprocess.run([script, "scores", "import", QUIRKS, "--rater", "ana"], env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path/"scores"/"ana.jsonl").exists() and list((tmp_path/"data"/"completions").glob("import-*.jsonl"))
    bad = subprocess.run([script, "scores", "import", BROKEN, "--rater", "ana"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == len(EXPECTED_PROBLEMS) + 1
    usage = subprocess.run([script, "scores", "import", QUIRKS], env=env, capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "--rater" in usage.stderr


RACE = """
import sys, time
from tinyscale.cli import main
from tinyscale.store import ScoreStore
append = ScoreStore._append
def slow_append(self, events):  # a slow disk: the other import runs its already-imported check meanwhile
    time.sleep(1.0)
    append(self, events)
ScoreStore._append = slow_append
print("ready", flush=True)
sys.stdin.readline()  # start together
sys.exit(main(["scores", "import", sys.argv[1], "--rater", "ana", "--store", sys.argv[2], "--completions", sys.argv[3]]))
"""


def test_two_imports_of_one_file_at_once_write_every_score_once(tmp_path):
    wide = FIXTURES/"analysis_wide_scores.csv"
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TINYSCALE_ROOT": str(repo)}
    children = [subprocess.Popen([sys.executable, "-c", RACE, str(wide), str(tmp_path/"scores"), str(tmp_path/"completions")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=repo)
                for _ in range(2)]
    for child in children: assert child.stdout.readline().strip() == "ready"
    for child in children:
        child.stdin.write("go\n"); child.stdin.flush()
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    events = [json.loads(line) for line in (tmp_path/"scores"/"ana.jsonl").read_text().splitlines()]
    keys = [(e["completion_id"], e["criterion"]) for e in events]
    scores = sum(len(row.scores) for row in read_wide_csv(wide))
    assert len(keys) == len(set(keys)) == scores  # every score once
    completions = [json.loads(line) for path in (tmp_path/"completions").glob("*.jsonl") for line in path.read_text().splitlines()]
    assert len(completions) == len({c["completion_id"] for c in completions})  # every completion once
    summaries = sorted((out for out, _ in outputs), key=lambda out: "no new completions" in out)  # the one that wrote, first
    assert f"; {scores} score(s) added" in summaries[0] and ", 0 already imported" in summaries[0], summaries
    assert "; 0 score(s) added" in summaries[1] and f", {scores} already imported" in summaries[1], summaries
    assert "no new completions" in summaries[1]
