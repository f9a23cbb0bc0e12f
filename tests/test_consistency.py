"""Rater consistency (tinyscale.consistency): planted trends over many simulated raters, the command line end to end,
and the panel's second showings measured."""
import json

import pandas as pd
import pytest

from tinyscale.completions import append_completions, example_completion, load_completions
from tinyscale.consistency import DRIFT_COLUMNS, SELF_COLUMNS, drift_table, planted_events, rater_consistency
from tinyscale.store import ScoreStore


def completions_table(prompts=150, models=("m-1M", "m-8M"), category="Grammar"):
    return pd.DataFrame([example_completion(f"gr-{i:03d}", category, f"prompt {i}", f" story {i} by {model}", model).to_dict()
                         for i in range(prompts) for model in models])


def test_a_rater_0_2_stricter_over_300_items_is_detected_and_a_constant_rater_is_not():
    table = completions_table()  # 300 items
    stricter = [drift_table(pd.DataFrame(planted_events(table, drift=-0.2, seed=seed))) for seed in range(20)]
    constant = [drift_table(pd.DataFrame(planted_events(table, seed=seed))).drift[0] for seed in range(20)]
    assert [d.drift[0] for d in stricter] == ["stricter"] * 20
    assert all(-0.35 < d.change[0] < -0.05 for d in stricter), [round(d.change[0], 3) for d in stricter]
    assert constant.count("none detected") >= 18, constant  # a 95% interval misses zero about once in twenty
    assert "more lenient" not in [d.drift[0] for d in stricter]


def write_workbook(root, events, completions):
    append_completions(root/"completions"/"run.jsonl", [example_completion(r.prompt_id, r.category, r.prompt, r.completion, r.model)
                                                       for r in completions.itertuples()])
    (root/"scores").mkdir(parents=True)
    (root/"scores"/"ana.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return ["--store", root/"scores", "--completions", root/"completions", "--resamples", "200"]


def test_the_command_line_prints_each_table_and_refuses_bad_input_in_one_line(workbook, cli):
    completions = completions_table(60, ("m-1M", "m-8M", "m-28M"))
    where = write_workbook(workbook, planted_events(completions, drift=-0.2, repeats=0.2, seed=3), completions)
    csv = cli("consistency", "--rater", "ana", "--format", "csv", *where, root=workbook)
    assert csv.status == 0, csv.err
    lines = csv.out.splitlines()
    assert lines[0] == "level,category,criterion,n,exact,within_one,kappa_w,ci_low,ci_high" == ",".join(SELF_COLUMNS)
    assert lines[1].startswith("overall,,,") and [line.split(",")[0] for line in lines[1:3]] == ["overall", "category"]
    drift = cli("consistency", "--rater", "ana", "--format", "csv", "--table", "drift", *where, root=workbook)
    assert drift.out.splitlines()[0] == ",".join(DRIFT_COLUMNS) and drift.out.splitlines()[1].endswith(",stricter")
    report = cli("consistency", "--rater", "ana", *where, root=workbook)
    assert report.status == 0 and "ana agrees with themselves" in report.out and "stricter over time" in report.out
    data = json.loads(cli("consistency", "--rater", "ana", "--format", "json", *where, root=workbook).out)
    assert data["self_agreement"][0]["level"] == "overall" and data["drift"][0]["drift"] == "stricter"

    unknown = cli("consistency", "--rater", "bo", *where, root=workbook)
    assert unknown.status == 1 and unknown.out == ""
    assert unknown.err.count("\n") == 1 and unknown.err.startswith("tinyscale: error: rater 'bo' has no scores in")
    assert "(raters: ana)" in unknown.err
    (workbook/"scores"/"cy.jsonl").write_text("".join(
        json.dumps({**e, "rater": "cy"}) + "\n" for e in planted_events(completions, "cy", seed=4)), encoding="utf-8")
    no_repeats = cli("consistency", "--rater", "cy", *where, root=workbook)
    assert no_repeats.status == 1 and no_repeats.err.count("\n") == 1
    assert no_repeats.err.startswith("tinyscale: error: rater 'cy' has no repeat scores in")
    assert cli("consistency", "--rater", "cy", "--table", "drift", *where, root=workbook).status == 0
    judged = [e for e in planted_events(completions, seed=3) if e["category"] == "Grammar"][:100]
    (workbook/"scores"/"judge_x.jsonl").write_text("".join(
        json.dumps({**e, "rater": "judge:x", "source": "judge:x"}) + "\n" for e in judged), encoding="utf-8")
    ceiling = cli("consistency", "--rater", "ana", *where, root=workbook)
    assert "judge:x agrees with ana " in ceiling.out and "(100 scores, blind); ana agrees with themselves " in ceiling.out
    matrix = cli("consistency", "--table", "raters", *where, root=workbook)
    assert matrix.status == 0 and "| ana |" in matrix.out and "| cy |" in matrix.out and "judge:x" not in matrix.out, matrix.err
    no_rater = cli("consistency", *where, root=workbook)
    assert no_rater.status == 1 and "--rater: name the person" in no_rater.err
    few = cli("consistency", "--rater", "ana", "--resamples", "10", *where[:4], root=workbook)
    assert few.status == 1 and "use at least 100 resamples" in few.err


def test_an_imported_wide_csv_has_no_drift_and_says_so(workbook, cli):
    from test_real_import import RATER, imported_workbook, scores_args
    _, imported = imported_workbook(workbook, cli)
    assert imported.status == 0, imported.err
    drift = cli("consistency", "--rater", RATER, "--table", "drift", *scores_args(workbook), root=workbook)
    assert drift.status == 0, drift.err
    assert f"Drift of {RATER}: unknown. Drift is unknown: these scores were imported from a wide CSV, which records no scoring times" in drift.out
    csv = cli("consistency", "--rater", RATER, "--table", "drift", "--format", "csv", *scores_args(workbook), root=workbook)
    assert csv.out.splitlines()[1].endswith(",unknown")
    by_row = cli("consistency", "--rater", RATER, "--table", "drift", "--order-by-row", *scores_args(workbook), root=workbook)
    assert by_row.status == 0 and "taken in their file's row order, as asked (--order-by-row)" in by_row.out, by_row.err
    assert "items are too few to tell the scoring order from the models and prompts" in by_row.out  # one completion per prompt
    both = cli("consistency", "--rater", RATER, *scores_args(workbook), root=workbook)
    assert both.status == 1 and "has no repeat scores" in both.err


def test_the_panels_second_showings_are_measured(tmp_path):
    from tinyscale.panel import ScorePanel
    completions = completions_table(20)
    append_completions(tmp_path/"completions"/"run.jsonl", [example_completion(r.prompt_id, r.category, r.prompt, r.completion, r.model)
                                                           for r in completions.itertuples()])
    table = load_completions(tmp_path/"completions")
    store = ScoreStore(tmp_path/"scores", completions=table)
    panel = ScorePanel(table, store.rubric, store, "ana", reshow=0.1)
    for position in range(len(panel.order)):
        panel.go_to(position)
        for i, criterion in enumerate(panel.criteria):  # the second showing's first criterion differs, the rest agree
            panel.set_score(criterion.label, 0.0 if panel.is_repeat and i == 0 else 1.0 if i % 2 else 0.5)
    result = rater_consistency(store, "ana", n_resamples=200)
    assert len(result.pairs) == 4 * 5 and result.pairs.completion_id.nunique() == 4
    assert result.table.exact[0] == pytest.approx(16 / 20) and result.table.within_one[0] == pytest.approx(1.0)
    assert len(result.items) == 40 and result.drift["items"][0] == 40
