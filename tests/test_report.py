"""`tinyscale report` end to end: a wide score CSV imported with `tinyscale scores import`, then reported.

The expected numbers are computed here straight from the wide CSV (one score per filled cell), not
with tinyscale's analysis, so the report is checked against an independent count.
"""
import csv, io, json, os, shutil, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest

from tinyscale.cli import main
from tinyscale.core import TinyscaleError
from tinyscale.report import CALIBRATION_NOTE, build_report, write_report
from tinyscale.rubric import load_paper_targets, load_rubric
from tinyscale.analysis import example_scores

REPO = Path(__file__).resolve().parents[1]
WIDE = REPO/"tests"/"fixtures"/"analysis_wide_scores.csv"
SCRIPT = Path(sys.executable).parent/"tinyscale"
HEADER = "level,category,criterion,model,mean,n,ci_low,ci_high"
FIGURES = ("category_bars", "criterion_heatmap", "scaling_curve", "ours_vs_paper")


def new_workbook(folder):
    (folder/"data").mkdir(parents=True)
    for name in ("criteria.csv", "prompts.csv", "paper_targets.csv"): shutil.copy(REPO/"data"/name, folder/"data"/name)
    return folder


def console(root, *argv):
    "Run the installed `tinyscale` script in the workbook `root`."
    env = {**os.environ, "TINYSCALE_ROOT": str(root), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(SCRIPT), *argv], cwd=root, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    "A workbook with nothing but the data files and the fixture wide CSV imported as rater `ada`."
    root = new_workbook(tmp_path_factory.mktemp("workbook"))
    result = console(root, "scores", "import", str(WIDE), "--rater", "ada")
    assert result.returncode == 0, result.stderr
    return root


def run(capsys, root, *argv):
    "Run `tinyscale report` in-process on the workbook `root`; returns (status, stdout, stderr)."
    status = main(["report", "--store", str(root/"scores"), "--completions", str(root/"data"/"completions"), *argv])
    out, err = capsys.readouterr()
    return status, out, err


def expected_cells():
    "Every (level, category, criterion, model) -> (sum, count) counted straight from the wide CSV."
    rubric = load_rubric()
    with open(WIDE, newline="", encoding="utf-8-sig") as f: rows = list(csv.DictReader(f))
    cells = {}
    def add(key, score):
        total, count = cells.get(key, (0.0, 0))
        cells[key] = (total + score, count + 1)
    for row in rows:
        for criterion in rubric.for_category(row["category"]):
            if not row[criterion.column].strip(): continue
            score, model = float(row[criterion.column]), row["model_name"]
            add(("overall", "", "", model), score)
            add(("category", criterion.category, "", model), score)
            add(("criterion", criterion.category, criterion.label, model), score)
    return cells


def test_wide_import_then_csv_report_gives_the_expected_numbers(imported):
    result = console(imported, "report", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == HEADER
    table = pd.read_csv(io.StringIO(result.stdout), keep_default_na=False, dtype={"category": str, "criterion": str})
    expected = expected_cells()
    found = {(r.level, r.category, r.criterion, r.model): r for r in table.itertuples()}
    for key, (total, count) in expected.items():
        row = found[key]
        assert row.n == count, key
        assert float(row.mean) == pytest.approx(total / count), key
        if row.ci_low != "": assert float(row.ci_low) - 1e-9 <= float(row.mean) <= float(row.ci_high) + 1e-9, key
    # rows the CSV has beyond the scored cells are the empty ones: 28M never scored on Reasoning
    empty = table[table.n == 0]
    assert set(zip(empty.level, empty.category, empty.criterion, empty.model)) == {
        ("category", "Reasoning", "", "roneneldan/TinyStories-28M"), ("criterion", "Reasoning", "A", "roneneldan/TinyStories-28M")}
    assert (empty[["mean", "ci_low", "ci_high"]] == "").all().all()
    assert len(table) == len(expected) + len(empty)
    assert set(table[table.level == "overall"].category) == {""}
    assert set(table[table.level != "criterion"].criterion) == {""}
    # by hand: TinyStories-1M's pl-04 left Plot D blank, so its Plot D mean rests on 3 scores
    assert found[("criterion", "Plot", "D", "roneneldan/TinyStories-1M")].n == 3


def test_csv_report_is_reproducible_and_seeded(imported, capsys):
    _, first, _ = run(capsys, imported, "--format", "csv", "--resamples", "500")
    _, again, _ = run(capsys, imported, "--format", "csv", "--resamples", "500")
    _, other, _ = run(capsys, imported, "--format", "csv", "--resamples", "500", "--seed", "1")
    assert first == again
    first, other = (pd.read_csv(io.StringIO(t), keep_default_na=False) for t in (first, other))
    assert first["mean"].tolist() == other["mean"].tolist()
    assert first["ci_low"].tolist() != other["ci_low"].tolist()


def test_markdown_report_and_figures_are_written(imported, tmp_path):
    out = tmp_path/"reports"
    result = console(imported, "report", "--out", str(out), "--resamples", "500")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["report.md"] + [f"{f}.{k}" for f in FIGURES for k in ("png", "svg")])
    assert [line for line in result.stdout.splitlines()] == [f"wrote {out/name}" for name in ["report.md"] + [f"{f}.{k}" for f in FIGURES for k in ("png", "svg")]]
    for figure in FIGURES:
        assert (out/f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out/f"{figure}.svg").read_bytes()[:1000]
    markdown = (out/"report.md").read_text()
    for heading in ("# Scores of ada", "## Overall", "## Per category", "## Per criterion", "## Paired differences",
                    "## Comparison with the TinyStories paper", "## Figures"):
        assert heading in markdown
    assert "| category | TinyStories-1M (3.7M params) | TinyStories-8M (19.7M params) | TinyStories-28M (52.0M params) |" in markdown
    assert CALIBRATION_NOTE in markdown
    assert "![category bars](category_bars.png)" in markdown
    assert "| TinyStories-8M − TinyStories-1M | All criteria |" in markdown


def test_markdown_is_printed_without_out(imported, capsys):
    status, out, err = run(capsys, imported, "--resamples", "200")
    assert (status, err) == (0, "")
    assert out.startswith("# Scores of ada") and "## Figures" not in out


def test_json_report(imported, capsys):
    status, out, _ = run(capsys, imported, "--format", "json", "--resamples", "200")
    data = json.loads(out)
    assert status == 0 and data["rater"] == "ada" and data["n_resamples"] == 200
    assert [m["params"] for m in data["models"]] == [3745984, 19702528, 51987968]
    assert {r["level"] for r in data["summary"]} == {"overall", "category", "criterion"}
    empty = [r for r in data["summary"] if r["n"] == 0]
    assert empty and all(r["mean"] is None for r in empty)
    assert len(data["paper_comparison"]) == 12 and len(data["differences"]) > 0


def test_several_raters_need_rater(tmp_path, capsys):
    root = new_workbook(tmp_path/"workbook")
    for rater in ("ada", "bo"):
        assert console(root, "scores", "import", str(WIDE), "--rater", rater).returncode == 0
    status, out, err = run(capsys, root, "--format", "csv")
    assert (status, out) == (1, "")
    assert err == f"tinyscale: error: {root/'scores'} holds the scores of 2 raters (ada, bo); pick one with --rater\n"
    status, out, err = run(capsys, root, "--format", "csv", "--rater", "bo", "--resamples", "200")
    assert status == 0 and out.startswith(HEADER)
    status, _, err = run(capsys, root, "--rater", "cy")
    assert status == 1 and "rater 'cy' has no scores" in err and "(raters: ada, bo)" in err


def test_no_scores_is_one_clear_line(tmp_path):
    root = new_workbook(tmp_path/"workbook")
    result = console(root, "report")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("tinyscale: error: no scores yet in ") and result.stderr.count("\n") == 1


def test_bad_arguments(imported, capsys):
    status, _, err = run(capsys, imported, "--resamples", "10")
    assert status == 1 and "--resamples 10: use at least 100 resamples" in err
    with pytest.raises(SystemExit): main(["report", "--format", "html"])


def test_a_failure_while_writing_leaves_nothing_half_written(tmp_path, monkeypatch):
    rubric = load_rubric()
    report = build_report(example_scores(rubric, prompts_per_category=3), rubric, load_paper_targets(), n_resamples=200)
    out = tmp_path/"reports"
    out.mkdir()
    (out/"report.md").write_text("the previous report\n")
    import tinyscale.report as module
    calls = []
    def failing(figure, format="png", dpi=150):
        calls.append(format)
        if len(calls) == 5: raise RuntimeError("disk full")
        return b"figure"
    monkeypatch.setattr(module, "figure_bytes", failing)
    with pytest.raises(RuntimeError, match="disk full"): write_report(report, out)
    assert [p.name for p in out.iterdir()] == ["report.md"]  # no figure written, no temporary file left
    assert (out/"report.md").read_text() == "the previous report\n"
