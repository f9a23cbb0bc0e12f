"""The explorer's agreement view on a hand-made store whose numbers are worked out by hand, and the calibrated judge's table.

`ana` scored Plot A on four prompts for two models; `judge:x` scored all eight pairs, `judge:y` only the first model's four.
The comments next to the expected values show the arithmetic (see also nbs/27_agreement_views.ipynb).
"""
import math

import pandas as pd
import pytest

from tinyscale.completions import example_completion
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore
from tinyscale.explorer import Explorer
from tinyscale.agreement import agreement_table, compare_raters, paired_scores
from tinyscale.agreement_views import (AgreementView, EVERY_JUDGE, SELECTION_COLUMNS, calibrated_markdown, explore_agreement,
                                       selection_agreement)

RUBRIC = load_rubric()
ONE, EIGHT = "hand/TinyStories-1M", "hand/TinyStories-8M"
PROMPTS = ("pl-01", "pl-02", "pl-03", "pl-04")
SCORES = {("ana", ONE): [1, 1, 0, 1], ("ana", EIGHT): [0, 0, 0, 0.5],
          ("judge:x", ONE): [1, 0, 0, 1], ("judge:x", EIGHT): [0, 0, 0.5, 0.5],
          ("judge:y", ONE): [1, 1, 0, 1]}


@pytest.fixture
def store(tmp_path):
    records = {(p, m): example_completion(p, "Plot", f"Prompt {p}", " a story.", m) for m in (ONE, EIGHT) for p in PROMPTS}
    store = ScoreStore(tmp_path/"scores", completions=pd.DataFrame([r.to_dict() for r in records.values()]), rubric=RUBRIC)
    for (rater, model), values in SCORES.items():
        store.set_scores([dict(completion_id=records[p, model].completion_id, criterion="A", score=v) for p, v in zip(PROMPTS, values)], rater)
    store.records = records
    return store


def overall(table, b):
    row = table[(table.b == b) & (table.level == "overall")]
    assert len(row) == 1
    return row.iloc[0]


def test_selection_agreement_by_hand(store):
    table = selection_agreement(store.current(), "ana", ["judge:x", "judge:y"], rubric=RUBRIC)
    assert tuple(table.columns) == SELECTION_COLUMNS
    x = overall(table, "judge:x")
    assert x.n == 8 and x.exact == 6/8            # all but (1M, pl-02) and (8M, pl-03)
    # held out by prompt (4 slots, 4 folds): pl-01 and pl-02 see ana's mode 0 on the other prompts (3 zeros of 6), pl-03 sees 1
    # (1 1 1 | 0 0 ½), pl-04 sees 0 (1 1 0 | 0 0 0): the constant matches only the 8M model's pl-01 and pl-02
    assert x.baseline_exact == 2/8 and x.exact_over_baseline == 1/2
    assert math.isclose(x.kappa_w, 3/5)            # 1 - (5/32) / (25/64)
    y = overall(table, "judge:y")                  # a copy of ana on the 1M model, whose held-out constant 1 matches 3 of 4
    assert (y.n, y.exact, y.baseline_exact, y.exact_over_baseline, y.kappa_w) == (4, 1.0, 3/4, 1/4, 1.0)
    eight = overall(selection_agreement(store.current(), "ana", ["judge:x"], model=EIGHT), "judge:x")
    # ana 0 0 0 ½: pl-04's held-out mode is 0 (misses), the others' is 0 (match); the judge misses pl-03 only
    assert (eight.n, eight.exact, eight.baseline_exact, eight.exact_over_baseline) == (4, 3/4, 3/4, 0.0)
    assert math.isclose(eight.kappa_w, 1/2)        # 1 - (1/16) / (1/8)


def test_selection_agreement_is_the_agreement_tables(store):
    "Without its intervals, the view's table holds the agreement table's numbers for the same pairs."
    scores = store.current()
    view = selection_agreement(scores, "ana", ["judge:x"], rubric=RUBRIC)
    full = agreement_table(paired_scores(scores, "ana", "judge:x"), RUBRIC, ("ana", "judge:x"), n_resamples=199)
    columns = list(SELECTION_COLUMNS[1:])
    pd.testing.assert_frame_equal(view[columns], full[columns])


def test_the_view_follows_the_explorer(store):
    explorer = explore_agreement(store, rater="ana")
    view, = explorer.views
    assert isinstance(view, AgreementView) and view.picker.value == EVERY_JUDGE
    assert sorted(view.table.b.unique()) == ["judge:x", "judge:y"]
    explorer.select_cell("Plot", "A", EIGHT)       # a click on a cell: judge:y has no 8M scores, and the view says so
    assert overall(view.table, "judge:x").n == 4 and "judge:y" not in set(view.table.b)
    assert "judge:y: no (completion, criterion) scored by both ana and it in this selection." in view.html.value
    assert "a constant rater that always gives ana&#x27;s most common score of the criterion" in view.html.value
    assert "Blind agreement with ana on Plot A, TinyStories-8M" in view.html.value
    view.picker.value = "judge:y"                  # the picker's callback calls compare_with
    assert view.b == "judge:y" and len(view.table) == 0
    explorer.select(model=None)
    assert overall(view.table, "judge:y").exact == 1.0
    assert "<td>judge:y</td><td>All criteria</td><td>4</td><td>100%</td><td>75%</td><td>+25 pts</td><td>1.00</td>" in view.html.value
    explorer.score_picker.value = 1.0              # the score filter does not narrow the agreement
    assert overall(view.table, "judge:y").n == 4


def test_errors_go_to_an_output(store):
    explorer = Explorer(store.current(), RUBRIC, rater="ana")
    view = AgreementView()
    explorer.add_view(view)
    view.picker.options = ("every judge", "judge:x", "nobody")
    view.picker.value = "nobody"
    assert "cannot compare with 'nobody'" in "".join(o["text"] for o in view.errors.outputs)
    explorer.select(category="Plot")               # still working, on the rater it showed before
    assert view.b == EVERY_JUDGE and overall(view.table, "judge:x").n == 8


def test_calibrated_judge_next_to_its_raw_scores(store):
    assert calibrated_markdown("ana", [compare_raters(store, "ana", "judge:x", n_resamples=199)]).startswith("**No calibrated judge yet.**")
    store.set_scores([dict(completion_id=store.records[p, m].completion_id, criterion="A", score=v)
                      for m, values in ((ONE, [1, 1, 1, 1]), (EIGHT, [0, 0, 0, 0])) for p, v in zip(PROMPTS, values)], "judge:x+cal")
    store = ScoreStore(store.folder, completions=store.completions, rubric=RUBRIC)
    text = calibrated_markdown("ana", [compare_raters(store, "ana", b, n_resamples=199) for b in ("judge:x", "judge:x+cal")])
    assert "| All criteria | judge:x (raw) | 8 | 75% [" in text and "| All criteria | judge:x+cal (held out) | 8 | 75% [" in text
    assert text.count("| 25% |") == 4              # the same pairs, the same held-out baseline of 2/8
