"""`tinyscale report` end to end: a wide score CSV imported with `tinyscale scores import`, then reported.

The expected numbers are computed here straight from the wide CSV (one score per filled cell), not
with tinyscale's analysis, so the report is checked against an independent count.
"""
import csv, io, json, shutil
from pathlib import Path

import pandas as pd
import pytest

from agreement_support import add_fake_judge, assert_tables_match, markdown_rows
from support import make_workbook, run_tinyscale
from tinyscale.agreement import REVIEWED_HEADING, REVIEWED_WARNING, Review
from tinyscale.report import CALIBRATION_NOTE, build_report, write_report
from tinyscale.rubric import load_paper_targets, load_rubric
from tinyscale.analysis import example_scores

REPO = Path(__file__).resolve().parents[1]
WIDE = REPO/"tests"/"fixtures"/"analysis_wide_scores.csv"
HEADER = "level,category,criterion,model,mean,n,ci_low,ci_high"
FIGURES = ("category_bars", "criterion_heatmap", "scaling_curve", "ours_vs_paper")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    "A workbook with nothing but the data files and the fixture wide CSV imported as rater `ada`."
    root = make_workbook(tmp_path_factory.mktemp("workbook"))
    result = run_tinyscale("scores", "import", WIDE, "--rater", "ada", root=root, timeout=180)
    assert result.status == 0, result.err
    return root


def store_of(root):
    "The arguments that name the workbook `root`'s score store and completions."
    return ["--store", root/"scores", "--completions", root/"data"/"completions"]


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


def test_wide_import_then_csv_report_gives_the_expected_numbers(cli_process, imported):
    result = cli_process("report", "--format", "csv", root=imported, timeout=180)
    assert result.status == 0, result.err
    assert result.out.splitlines()[0] == HEADER
    table = pd.read_csv(io.StringIO(result.out), keep_default_na=False, dtype={"category": str, "criterion": str})
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


def test_csv_report_is_reproducible_and_seeded(cli, imported):
    _, first, _ = cli("report", *store_of(imported), "--format", "csv", "--resamples", "500")
    _, again, _ = cli("report", *store_of(imported), "--format", "csv", "--resamples", "500")
    _, other, _ = cli("report", *store_of(imported), "--format", "csv", "--resamples", "500", "--seed", "1")
    assert first == again
    first, other = (pd.read_csv(io.StringIO(t), keep_default_na=False) for t in (first, other))
    assert first["mean"].tolist() == other["mean"].tolist()
    assert first["ci_low"].tolist() != other["ci_low"].tolist()


def test_markdown_report_and_figures_are_written(cli_process, imported, tmp_path):
    out = tmp_path/"reports"
    result = cli_process("report", "--out", str(out), "--resamples", "500", root=imported, timeout=180)
    assert result.status == 0, result.err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["report.md"] + [f"{f}.{k}" for f in FIGURES for k in ("png", "svg")])
    assert [line for line in result.out.splitlines()] == [f"wrote {out/name}" for name in ["report.md"] + [f"{f}.{k}" for f in FIGURES for k in ("png", "svg")]]
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


def test_markdown_is_printed_without_out(cli, imported):
    status, out, err = cli("report", *store_of(imported), "--resamples", "200")
    assert (status, err) == (0, "")
    assert out.startswith("# Scores of ada") and "## Figures" not in out


def test_json_report(cli, imported):
    status, out, _ = cli("report", *store_of(imported), "--format", "json", "--resamples", "200")
    data = json.loads(out)
    assert status == 0 and data["rater"] == "ada" and data["n_resamples"] == 200
    assert [m["params"] for m in data["models"]] == [3745984, 19702528, 51987968]
    assert {r["level"] for r in data["summary"]} == {"overall", "category", "criterion"}
    empty = [r for r in data["summary"] if r["n"] == 0]
    assert empty and all(r["mean"] is None for r in empty)
    assert len(data["paper_comparison"]) == 12 and len(data["differences"]) > 0


def test_several_raters_need_rater(cli, cli_process, tmp_path):
    root = make_workbook(tmp_path/"workbook")
    for rater in ("ada", "bo"):
        assert cli_process("scores", "import", WIDE, "--rater", rater, root=root, timeout=180).status == 0
    status, out, err = cli("report", *store_of(root), "--format", "csv")
    assert (status, out) == (1, "")
    assert err == f"tinyscale: error: {root/'scores'} holds the scores of 2 raters (ada, bo); pick one with --rater\n"
    status, out, err = cli("report", *store_of(root), "--format", "csv", "--rater", "bo", "--resamples", "200")
    assert status == 0 and out.startswith(HEADER)
    status, _, err = cli("report", *store_of(root), "--rater", "cy")
    assert status == 1 and "rater 'cy' has no scores" in err and "(raters: ada, bo)" in err


def test_no_scores_is_one_clear_line(cli_process, tmp_path):
    root = make_workbook(tmp_path/"workbook")
    result = cli_process("report", root=root, timeout=180)
    assert result.status == 1 and result.out == ""
    assert result.err.startswith("tinyscale: error: no scores yet in ") and result.err.count("\n") == 1


def test_bad_arguments(cli, imported):
    status, _, err = cli("report", *store_of(imported), "--resamples", "10")
    assert status == 1 and "--resamples 10: use at least 100 resamples" in err
    with pytest.raises(SystemExit): cli("report", "--format", "html")


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


# The blind agreement with an LLM judge. `judged` is the fixture CSV imported as `ada` plus a fake judge's scores of
# the same completions (some moved one or two levels, some missing); the numbers the report shows are checked
# against `tinyscale agreement` run on the same store.

@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    root = make_workbook(tmp_path_factory.mktemp("judged"))
    assert run_tinyscale("scores", "import", WIDE, "--rater", "ada", root=root, timeout=180).status == 0
    add_fake_judge(root)
    return root


def agreement(cli, root, *argv):
    "Run `tinyscale agreement` in-process on `root`, which must succeed; returns its stdout."
    status, out, err = cli("agreement", *store_of(root), "--resamples", "500", *argv)
    assert (status, err) == (0, ""), err
    return out


def test_markdown_report_shows_the_blind_agreement_with_the_judge(cli, judged):
    status, out, err = cli("report", *store_of(judged), "--resamples", "500")  # one person and a judge: the report is the person's
    assert (status, err) == (0, "")
    assert out.startswith("# Scores of ada")
    headline = json.loads(agreement(cli, judged, "--a", "ada", "--b", "judge:fake", "--format", "json"))["headline"]
    assert headline.startswith("Blind agreement of judge:fake with ada: exact ")
    section = out[out.index("## Blind agreement of judge:fake with ada\n"):]
    assert out.index("## Comparison with the TinyStories paper") < out.index("## Blind agreement")
    assert section.split("\n\n")[1] == headline
    assert "Blind: each rater scored without seeing the other's scores" in section
    assert_tables_match(section, agreement(cli, judged, "--a", "ada", "--b", "judge:fake", "--format", "csv"))
    assert "`tinyscale agreement --a ada --b judge:fake --format csv`" in section
    assert REVIEWED_HEADING not in out  # nobody reviewed the judge yet


def test_the_tables_really_compare_the_two_raters(cli, judged):
    "Independent of tinyscale.agreement: the overall exact agreement counted here from the two raters' scores."
    from tinyscale.store import ScoreStore
    from tinyscale.completions import load_completions
    store = ScoreStore(judged/"scores", completions=load_completions(judged/"data"/"completions"), rubric=load_rubric())
    ada, judge = (store.current(r).set_index(["completion_id", "criterion"]).score for r in ("ada", "judge:fake"))
    both = pd.concat([ada, judge], axis=1, join="inner", keys=["ada", "judge"])
    _, out, _ = cli("report", *store_of(judged), "--resamples", "200")
    overall = markdown_rows(out, "### Per category")[0]
    assert overall[:2] == ["All criteria", str(len(both))]
    assert overall[2].startswith(f"{(both.ada == both.judge).mean():.0%} [")
    assert 0 < (both.ada == both.judge).mean() < 1 and len(both) < len(ada)


def test_json_report_holds_what_tinyscale_agreement_prints(cli, judged):
    status, out, _ = cli("report", *store_of(judged), "--format", "json", "--resamples", "500")
    data = json.loads(out)
    assert status == 0 and data["rater"] == "ada" and data["agreement_notes"] == []
    assert data["agreements"] == [json.loads(agreement(cli, judged, "--a", "ada", "--b", "judge:fake", "--format", "json"))]
    assert data["agreements"][0]["reviewed_agreement"] is None
    status, out, _ = cli("report", *store_of(judged), "--format", "json", "--resamples", "200", "--no-agreement")
    assert status == 0 and json.loads(out)["agreements"] == []


def test_csv_report_is_unchanged_by_the_judge(cli, judged, imported):
    status, with_judge, err = cli("report", *store_of(judged), "--format", "csv", "--resamples", "300")
    assert (status, err) == (0, "")
    _, without_judge, _ = cli("report", *store_of(imported), "--format", "csv", "--resamples", "300")
    assert with_judge.splitlines()[0] == HEADER
    assert with_judge == without_judge  # the same scores of ada, with or without a judge in the store
    status, out, err = cli("report", *store_of(judged), "--format", "csv", "--agreement-with", "judge:fake")
    assert (status, out) == (1, "")
    assert err.startswith(f"tinyscale: error: --agreement-with judge:fake: the CSV report keeps its columns ({HEADER}); ")
    assert "`tinyscale agreement --a RATER --b judge:fake --format csv`" in err and err.count("\n") == 1


def test_unknown_agreement_rater_is_one_clear_line(cli, judged):
    status, out, err = cli("report", *store_of(judged), "--agreement-with", "cy")
    assert (status, out) == (1, "")
    assert err == f"tinyscale: error: --agreement-with cy: no scores of 'cy' in {judged/'scores'} (raters: ada, judge:fake)\n"
    status, _, err = cli("report", *store_of(judged), "--agreement-with", "ada")
    assert status == 1 and "that is the report's own rater" in err and err.count("\n") == 1
    with pytest.raises(SystemExit): cli("report", "--agreement-with", "judge:fake", "--no-agreement")


def test_agreement_with_names_the_raters_in_order(cli, cli_process, judged, tmp_path):
    "Repeatable: one section per rater named, a person too; by default only judges are compared."
    root = tmp_path/"workbook"
    shutil.copytree(judged, root)
    assert cli_process("scores", "import", WIDE, "--rater", "bo", root=root, timeout=180).status == 0
    status, out, _ = cli("report", *store_of(root), "--rater", "ada", "--resamples", "200", "--agreement-with", "bo", "--agreement-with", "judge:fake")
    assert status == 0
    assert out.index("## Blind agreement of bo with ada") < out.index("## Blind agreement of judge:fake with ada")
    assert "Blind agreement of bo with ada: exact 100% [100%, 100%]" in out  # bo's scores are ada's
    _, out, _ = cli("report", *store_of(root), "--rater", "ada", "--resamples", "200")
    assert "## Blind agreement of judge:fake with ada" in out and "of bo with" not in out
    _, out, _ = cli("report", *store_of(root), "--rater", "judge:fake", "--resamples", "200")  # a judge's report compares only when asked
    assert out.startswith("# Scores of judge:fake") and "## Blind agreement" not in out


def test_a_review_of_the_judge_follows_the_blind_tables_labelled(cli, judged, tmp_path):
    root = tmp_path/"workbook"
    shutil.copytree(judged, root)
    from tinyscale.store import ScoreStore
    from tinyscale.completions import load_completions
    store = ScoreStore(root/"scores", completions=load_completions(root/"data"/"completions"), rubric=load_rubric())
    review = Review(store, "judge:fake", "ada")
    for verdict in ("agree", "agree", "disagree"):
        review.mark(verdict); review.go_next()
    status, out, _ = cli("report", *store_of(root), "--resamples", "200")
    assert status == 0
    section = out[out.index("## Blind agreement of judge:fake with ada"):]
    assert section.split("\n\n")[1].startswith("Blind agreement of judge:fake with ada: exact ")
    assert section.index("### Per criterion") < section.index(f"### {REVIEWED_HEADING}\n\n{REVIEWED_WARNING}")
    assert markdown_rows(section, f"### {REVIEWED_HEADING}")[0][:3] == ["All criteria", "3", "67%"]
    _, out, _ = cli("report", *store_of(root), "--format", "json", "--resamples", "200")
    reviewed = json.loads(out)["agreements"][0]["reviewed_agreement"]
    assert reviewed["label"].startswith("reviewed agreement (not blind") and reviewed["rows"][0]["agreed"] == 2


# The rater's self-agreement, the ceiling of the judge's: a person shown items again (a planted rater who gives an item shown
# again its first score 80% of the time) and a judge of the same completions; the numbers are checked against
# `tinyscale consistency`, which measures the same pairs.

def planted_workbook(root):
    "Planted events of `ana` (a quarter of 80 items shown again) and of `judge:x` (ana's first scores, one in four a level away)."
    from tinyscale.completions import append_completions, example_completion
    from tinyscale.consistency import planted_events
    table = pd.DataFrame([example_completion(f"gr-{i:03d}", "Grammar", f"prompt {i}", f" story {i} by {model}", model).to_dict()
                          for i in range(40) for model in ("m-1M", "m-8M")])
    append_completions(root/"completions"/"run.jsonl", [example_completion(r.prompt_id, r.category, r.prompt, r.completion, r.model)
                                                       for r in table.itertuples()])
    events = planted_events(table, "ana", repeats=0.25, seed=2)
    away = {0.0: 0.5, 0.5: 1.0, 1.0: 0.5}
    judged = [{**e, "rater": "judge:x", "source": "judge:x", "score": away[e["score"]] if i % 4 == 0 else e["score"]}
              for i, e in enumerate(e for e in events if not e.get("repeat"))]
    (root/"scores").mkdir(parents=True)
    for name, rows in (("ana", events), ("judge_x", judged)):
        (root/"scores"/f"{name}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in rows), encoding="utf-8")
    return ["--store", root/"scores", "--completions", root/"completions", "--resamples", "300"]


def test_the_report_sets_the_raters_self_agreement_next_to_the_judges(cli, workbook):
    where = planted_workbook(workbook)
    measured = json.loads(cli("consistency", "--rater", "ana", "--format", "json", *where, root=workbook).out)
    ceiling, = measured["ceiling"]
    assert ceiling.startswith("judge:x agrees with ana ") and "; ana agrees with themselves " in ceiling
    status, out, err = cli("report", *where, root=workbook)
    assert (status, err) == (0, "")
    section = out[out.index("## Blind agreement of judge:x with ana\n"):]
    assert section.split("\n\n")[2] == ceiling  # right after the judge's blind headline
    own = out[out.index("## Self-agreement of ana\n"):]
    assert own.split("\n\n")[1] == measured["self_headline"]
    overall = measured["self_agreement"][0]
    assert markdown_rows(own, "## Self-agreement of ana")[0][:3] == [
        "All criteria", str(overall["n"]), f"{overall['exact']:.0%} [{overall['exact_ci_low']:.0%}, {overall['exact_ci_high']:.0%}]"]
    status, out, _ = cli("report", *where, "--format", "json", root=workbook)
    data = json.loads(out)["self_agreement"]
    assert status == 0 and (data["measured"], data["headline"], data["ceiling"]) == (True, measured["self_headline"], [ceiling])
    assert data["table"] == measured["self_agreement"]
    status, out, _ = cli("report", *where, "--format", "csv", root=workbook)
    assert status == 0 and out.splitlines()[0] == HEADER and "themselves" not in out


def test_a_report_says_plainly_that_self_agreement_is_not_measured(cli, judged):
    "Imported scores have no second showings: one sentence says so, in the judge's section and at the end of the agreement."
    status, out, _ = cli("report", *store_of(judged), "--resamples", "200")
    assert status == 0
    section = out[out.index("## Blind agreement of judge:fake with ada\n"):]
    assert "; ada's agreement with themselves is not measured yet (no item shown again): the most a judge" in section.split("\n\n")[2]
    assert out[out.index("## Self-agreement of ada\n"):].split("\n\n")[1].startswith(
        "ada's agreement with themselves is not measured yet: no item was shown to ada a second time and scored")
    status, out, _ = cli("report", *store_of(judged), "--format", "json", "--resamples", "200")
    data = json.loads(out)["self_agreement"]
    assert (data["measured"], data["table"], data["items"]) == (False, [], 0)
