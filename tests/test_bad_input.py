"""Every bad input is one clear line: for each command, inputs a careless or hostile user gives (files in the wrong
encoding or shape, paths that escape or collide, numbers out of range, names that do not exist). Each case checks the
exit status, that stderr is one `tinyscale: error:` line naming the file and line or the argument (a score file's
import adds its summary line), that no traceback is printed, and that nothing in the workbook was written or changed."""
import csv, hashlib, io
from pathlib import Path

import pytest

from support import ROOT

FIXTURES = ROOT/"tests"/"fixtures"
PROMPT_HEADER = "id,category,prompt,expected,source_id\n"


def files(folder: Path) -> dict:
    "Every file under `folder` and a hash of its bytes (the score store's derived caches aside)."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and ".cache" not in p.parts}


@pytest.fixture
def bad_workbook(workbook, cli):
    "A workbook with one rater's scores (ana) and every bad file the cases name."
    assert cli("scores", "import", FIXTURES/"wide_canonical.csv", "--rater", "ana", root=workbook).status == 0
    (workbook/"latin1.csv").write_bytes((PROMPT_HEADER + "x-1,Plot,Once upon a time there was a caf\xe9,,\n").encode("latin-1"))
    (workbook/"adir").mkdir()
    (workbook/"afile").write_text("not a folder\n")
    (workbook/"big.csv").write_text(PROMPT_HEADER + "x-1,Plot," + "a" * 200_000 + ",,\n")
    (workbook/"unterminated.csv").write_text(PROMPT_HEADER + 'x-1,Plot,"Once upon a time,,\nx-2,Plot,Tom ran,,\n')
    (workbook/"empty.csv").write_text("")
    prompts = (workbook/"data"/"prompts.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    first = prompts[1].split(",", 1)[1]
    (workbook/"same_text.csv").write_text("".join(prompts) + "zz-99," + first, encoding="utf-8")  # a second id, same text
    wide = (FIXTURES/"wide_canonical.csv").read_text(encoding="utf-8")
    header, row = list(csv.reader(io.StringIO(wide, newline="")))[:2]
    (workbook/"wide_latin1.csv").write_bytes(wide.replace("One day", "Caf\xe9 day").encode("latin-1", "replace"))
    score_at = header.index("Grammar_A_score")
    def with_score(value):
        text = io.StringIO(newline="")
        csv.writer(text, lineterminator="\r\n").writerows([header, row[:score_at] + [value] + row[score_at + 1:]])
        return text.getvalue()
    (workbook/"wide_negzero.csv").write_text(with_score("-0"), encoding="utf-8")
    (workbook/"wide_fullwidth.csv").write_text(with_score("\uff11"), encoding="utf-8")
    (workbook/"wide_unterminated.csv").write_text(",".join(header) + '\r\n99,Grammar,"One day,x,m\r\n', encoding="utf-8")
    return workbook


JUDGE = ["judge", "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9"]
CASES = [
    # prompt files
    (["prompts", "check", "latin1.csv"], "latin1.csv, line 2: not UTF-8 text (byte 0xe9)"),
    (["prompts", "check", "adir"], "adir: is a folder, not a prompt file"),
    (["prompts", "check", "missing.csv"], "missing.csv: prompt file not found"),
    (["prompts", "check", "big.csv"], "big.csv, line 2: not CSV: field larger than field limit"),
    (["prompts", "check", "unterminated.csv"], "a quote that is never closed"),
    (["prompts", "check", "empty.csv"], "empty.csv: empty file"),
    # generate (each refused before a model loads)
    (["generate", "--prompts", "latin1.csv", "--dry-run"], "latin1.csv, line 2: not UTF-8 text"),
    (["generate", "--prompts", "adir", "--dry-run"], "adir: is a folder, not a prompt file"),
    (["generate", "--prompts", "same_text.csv", "--dry-run"], "prompt zz-99 repeats"),
    (["generate", "--run", "../../escaped", "--dry-run"], "--run '../../escaped': a run name is a file name"),
    (["generate", "--run", "sub/run", "--dry-run"], "--run 'sub/run': a run name is a file name"),
    (["generate", "--run", "/tmp/run", "--dry-run"], "--run '/tmp/run': a run name is a file name"),
    (["generate", "--completions", "afile", "--dry-run"], "--completions afile: is a file, not a completions folder"),
    (["generate", "--limit", "0", "--dry-run"], "--limit 0: must be at least 1"),
    (["generate", "--limit", "-3", "--dry-run"], "--limit -3: must be at least 1"),
    (["generate", "--batch-size", "0", "--dry-run"], "--batch-size 0"),
    (["generate", "--max-new-tokens", "-5", "--dry-run"], "-5"),
    # score files
    (["scores", "import", "wide_latin1.csv", "--rater", "bo"], "not UTF-8 text"),
    (["scores", "import", "adir", "--rater", "bo"], "adir: is a folder, not a file"),
    (["scores", "import", "missing.csv", "--rater", "bo"], "missing.csv: file not found"),
    (["scores", "import", "wide_negzero.csv", "--rater", "bo"], "'-0' is not a score"),
    (["scores", "import", "wide_fullwidth.csv", "--rater", "bo"], "'\uff11' is not a score"),
    (["scores", "import", "wide_unterminated.csv", "--rater", "bo"], "not CSV"),
    (["scores", "import", str(FIXTURES/"wide_canonical.csv"), "--rater", " "], "pick a non-empty rater name"),
    (["scores", "export", "adir", "--rater", "ana"], "adir: is a folder; give a file name"),
    (["scores", "export", "afile/x.csv", "--rater", "ana"], "afile: is a file, not a folder"),
    (["scores", "export", "x.csv", "--rater", "nobody"], "rater 'nobody' has no scores"),
    (["scores", "export", "x.csv", "--format", "long", "--rater", "nobody"], "rater 'nobody' has no scores"),
    (["scores", "export", "x.csv", "--completions", "nope.jsonl"], "--completions nope.jsonl: no such file or folder"),
    (["scores", "progress", "--rater", "nobody"], "(raters: ana)"),
    (["scores", "todo", "--rater", "nobody"], "(raters: ana)"),
    # report, agreement, curves
    (["report", "--out", "afile"], "afile: is a file, not a folder"),
    (["report", "--out", "afile/sub"], "afile is a file"),
    (["report", "--rater", "nobody"], "rater 'nobody' has no scores"),
    (["report", "--completions", "nope.jsonl"], "--completions nope.jsonl: no such file or folder"),
    (["agreement", "--a", "nobody", "--b", "ana"], "nobody"),
    (["agreement", "--a", "ana", "--b", "judge:none"], "judge:none"),
    (["curves", "--out", "afile"], "so there is no training axis"),
    # the sweep: its judge's calibration needs a judge
    (["sweep", "adir", "--calibration", "x.json"], "--calibration: only with --judge and --judge-model"),
    # the judge: bad numbers are refused before any request
    (JUDGE + ["--retries", "-1"], "--retries -1: must be 0 or more"),
    (JUDGE + ["--timeout", "-1"], "--timeout -1"),
    (JUDGE + ["--max-tokens", "-5"], "--max-tokens -5"),
    (JUDGE + ["--limit", "-3"], "--limit -3"),
    (JUDGE + ["--concurrency", "0"], "--concurrency 0"),
    (JUDGE + ["--completions", "nope.jsonl"], "--completions nope.jsonl: no such file or folder"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a[:3]) + f" [{i}]" for i, (a, _) in enumerate(CASES)])
def test_bad_input_is_one_clear_line_and_writes_nothing(bad_workbook, cli, monkeypatch, args, message):
    monkeypatch.chdir(bad_workbook)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    before = files(bad_workbook)
    status, out, err = cli(*args, root=bad_workbook)
    lines = err.strip().splitlines()
    assert status != 0, (status, out, err)
    assert "Traceback" not in err and all(line.startswith("tinyscale: error: ") for line in lines), err
    # one line; a score file's import lists each broken row, then says that nothing was imported
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].endswith("1 problem(s); nothing was imported")), err
    assert message in lines[0], lines[0]
    assert files(bad_workbook) == before


def test_there_are_forty_cases_over_every_command():
    from tinyscale.cli import COMMANDS
    covered = {args[0] for args, _ in CASES}
    assert len(CASES) >= 40
    assert {"prompts", "generate", "scores", "report", "agreement", "curves", "judge", "sweep"} <= covered <= set(COMMANDS)


def test_a_long_rater_name_and_lookalike_names_get_files_of_their_own(bad_workbook, cli):
    long_name = "r" * 300
    for rater in (long_name, "a b", "a_b", "Zoë", "Zoé"):
        assert cli("scores", "import", FIXTURES/"wide_canonical.csv", "--rater", rater, root=bad_workbook).status == 0
    names = sorted(p.name for p in (bad_workbook/"scores").glob("*.jsonl"))
    assert len(names) == 6 and all(len(n) < 100 for n in names)  # ana and the five, one file each
    status, out, err = cli("scores", "progress", root=bad_workbook)
    assert status == 0
    for rater in ("a b", "a_b", "Zoë", "Zoé"): assert rater in out
