"""Tables, intervals, paired differences, the paper comparison, the figures and the explorer's filters on hand-made scores.

The hand-made set (`HAND`) is small enough to check every number by hand; the comments next to the
expected values show the arithmetic.
"""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tinyscale.core import TinyscaleError
from tinyscale.rubric import load_paper_targets, load_rubric
from tinyscale.analysis import (REPORT_COLUMNS, bootstrap_interval, check_scores, example_scores, model_labels,
                                model_order, model_params, paired_differences, paper_comparison, paper_shape,
                                summary_table, wide_summary)
from tinyscale.plots import category_bars, criterion_heatmap, paper_scatter, scaling_curve
from tinyscale.explorer import (Explorer, choices, completion_scores, disagreeing_scores, filter_scores,
                                matching_completions)

RUBRIC, TARGETS = load_rubric(), load_paper_targets()
ONE, EIGHT, CUSTOM = "x/TinyStories-1M", "x/TinyStories-8M", "y/custom"


def tidy(rows, rater="ada"):
    "A tidy score table in the store's shape from (prompt_id, category, criterion, model, score) rows."
    frame = pd.DataFrame(rows, columns=["prompt_id", "category", "criterion", "model", "score"])
    frame["completion_id"] = frame.model + "|" + frame.prompt_id
    frame["rater"] = rater
    frame["note"] = None
    frame["prompt"] = "Once upon a time, " + frame.prompt_id
    frame["completion"] = " a story by " + frame.model
    return frame


def grammar(prompt, model, *values):
    return [(prompt, "Grammar", label, model, v) for label, v in zip("ABCDE", values) if v is not None]


HAND = tidy(
    grammar("gr-01", ONE, 1, 1, 0.5, 0, 1) + grammar("gr-02", ONE, 0, 0, 0, 0, 0.5)
    + [("re-01", "Reasoning", "A", ONE, 1), ("re-02", "Reasoning", "A", ONE, 0.5), ("fk-01", "Factual Knowledge", "A", ONE, 0),
       ("pl-01", "Plot", "A", ONE, 1), ("pl-01", "Plot", "B", ONE, 0), ("pl-01", "Plot", "C", ONE, 0.5)]
    + grammar("gr-01", EIGHT, 1, 1, 1, 1, None) + grammar("gr-02", EIGHT, 1, 1, 1, 1, 1)  # gr-01 half scored (no E)
    + [("fk-01", "Factual Knowledge", "A", EIGHT, 1)]  # 8M has no Reasoning and no Plot scores
)


@pytest.fixture(scope="module")
def hand_summary():
    return summary_table(HAND, RUBRIC, n_resamples=999)


def cell(summary, level, model, category="", criterion=""):
    rows = summary[(summary.level == level) & (summary.model == model) & (summary.category == category) & (summary.criterion == criterion)]
    assert len(rows) == 1, (level, model, category, criterion)
    return rows.iloc[0]


@pytest.mark.parametrize("level,model,category,criterion,mean,n,prompts", [
    ("overall", ONE, "", "", (3.5 + 0.5 + 1 + 0.5 + 0 + 1.5) / 16, 16, 6),  # every score once: 7 / 16
    ("overall", EIGHT, "", "", 10 / 10, 10, 3),
    ("category", ONE, "Grammar", "", (3.5 + 0.5) / 10, 10, 2),
    ("category", ONE, "Reasoning", "", (1 + 0.5) / 2, 2, 2),
    ("category", ONE, "Factual Knowledge", "", 0.0, 1, 1),
    ("category", ONE, "Plot", "", 1.5 / 3, 3, 1),
    ("category", EIGHT, "Grammar", "", 9 / 9, 9, 2),  # the half-scored prompt brings 4 scores
    ("criterion", ONE, "Grammar", "A", (1 + 0) / 2, 2, 2),
    ("criterion", ONE, "Grammar", "C", (0.5 + 0) / 2, 2, 2),
    ("criterion", EIGHT, "Grammar", "E", 1.0, 1, 1),
    ("criterion", ONE, "Plot", "C", 0.5, 1, 1),
])
def test_hand_checked_means_and_counts(hand_summary, level, model, category, criterion, mean, n, prompts):
    row = cell(hand_summary, level, model, category, criterion)
    assert row["mean"] == pytest.approx(mean)
    assert (row.n, row.prompts) == (n, prompts)


def test_missing_category_and_unscored_criterion_are_rows_with_n_zero(hand_summary):
    missing = cell(hand_summary, "category", EIGHT, "Reasoning")
    assert missing.n == 0 and math.isnan(missing["mean"]) and math.isnan(missing.ci_low)
    assert [cell(hand_summary, "criterion", m, "Plot", "D").n for m in (ONE, EIGHT)] == [0, 0]  # nobody scored Plot D
    assert cell(hand_summary, "category", EIGHT, "Plot").n == 0
    without_rubric = summary_table(HAND, n_resamples=99)
    assert "D" not in set(without_rubric.query("level == 'criterion' and category == 'Plot'").criterion)
    assert list(hand_summary.columns[:8]) == list(REPORT_COLUMNS)
    # six categories were scored by someone; every model gets a row for each
    assert len(hand_summary) == 2 * (1 + 4 + (5 + 1 + 1 + 4))


def test_single_prompt_and_zero_variance_intervals(hand_summary):
    single = cell(hand_summary, "category", ONE, "Factual Knowledge")
    assert math.isnan(single.ci_low) and math.isnan(single.ci_high)  # one prompt: nothing to resample
    flat = cell(hand_summary, "category", EIGHT, "Grammar")
    assert (flat.ci_low, flat["mean"], flat.ci_high) == (1.0, 1.0, 1.0)  # every resample gives 1


def test_interval_contains_the_mean_in_every_cell():
    summary = summary_table(example_scores(RUBRIC, prompts_per_category=10, seed=4), RUBRIC, n_resamples=999)
    with_interval = summary.dropna(subset=["ci_low"])
    assert len(with_interval) == len(summary)
    assert ((with_interval.ci_low <= with_interval["mean"] + 1e-12) & (with_interval["mean"] <= with_interval.ci_high + 1e-12)).all()


def test_interval_shrinks_with_more_prompts():
    "The same scores seen on eight times as many prompts (each prompt copied as new slots) give narrower intervals."
    scores = example_scores(RUBRIC, prompts_per_category=5)
    copies = pd.concat([scores.assign(prompt_id=scores.prompt_id + f"-{k}", completion_id=scores.completion_id + f"-{k}")
                        for k in range(8)], ignore_index=True)
    few, many = (summary_table(s, RUBRIC, n_resamples=999) for s in (scores, copies))
    np.testing.assert_allclose(few["mean"], many["mean"])
    width_few, width_many = few.ci_high - few.ci_low, many.ci_high - many.ci_low
    spread = width_few > 0
    assert spread.sum() > 0.8 * len(few)
    assert (width_many[spread] < 0.6 * width_few[spread]).all()
    assert (width_many[~spread] == 0).all()  # a zero-variance cell stays a point


def test_same_seed_same_interval_and_cells_are_independent():
    scores = example_scores(RUBRIC, prompts_per_category=6)
    first = summary_table(scores, RUBRIC, n_resamples=999, seed=3)
    again = summary_table(scores, RUBRIC, n_resamples=999, seed=3)
    pd.testing.assert_frame_equal(first, again)
    other = summary_table(scores, RUBRIC, n_resamples=999, seed=4)
    assert not np.allclose(first.ci_low, other.ci_low, equal_nan=True)
    np.testing.assert_allclose(first["mean"], other["mean"])
    # an interval does not depend on which other models are in the table
    alone = summary_table(scores[scores.model == scores.model.iloc[0]], RUBRIC, n_resamples=999, seed=3)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True),
                                  first[first.model == scores.model.iloc[0]].reset_index(drop=True))


def test_scores_of_one_prompt_move_together():
    "Five criteria that always agree carry the information of one prompt, not five: the interval is as wide as 10 prompts'."
    rows = [(f"gr-{i:02d}", "Grammar", label, ONE, float(i % 2)) for i in range(10) for label in "ABCDE"]
    summary = summary_table(tidy(rows), n_resamples=2999)
    grouped = cell(summary, "category", ONE, "Grammar")
    _, low, high = bootstrap_interval((np.array([r[4] for r in rows]), np.ones(50)), n_resamples=2999)  # as if 50 prompts
    assert grouped.prompts == 10
    assert (grouped.ci_high - grouped.ci_low) > 1.5 * (high - low)


def test_grammar_slots_are_separate_prompts_even_with_the_same_text():
    rows = tidy([("gr-01", "Grammar", "A", ONE, 1.0), ("gr-02", "Grammar", "A", ONE, 0.0)])
    rows["prompt"] = "The same opening"
    assert cell(summary_table(rows, n_resamples=99), "category", ONE, "Grammar").prompts == 2


@pytest.mark.parametrize("change,message", [
    (lambda s: s.drop(columns="model"), "missing column(s) model"),
    (lambda s: s.assign(score=s.score.replace(0.5, 0.3)), "score 0.3 is not one of"),
    (lambda s: s.assign(score=s.score.replace(0.5, 2)), "score 2"),
    (lambda s: s.assign(score=s.score.astype(object).where(s.index != 0, "good")), "score 'good'"),
    (lambda s: pd.concat([s, tidy([("re-01", "Reasoning", "A", ONE, 1.0)], rater="bo")]), "2 raters (ada, bo)"),
    (lambda s: pd.concat([s, s.iloc[[0]]]), "is scored more than once"),
])
def test_bad_scores_are_refused(change, message):
    with pytest.raises(TinyscaleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        summary_table(change(HAND.copy()), n_resamples=99)


def test_cleared_scores_are_left_out():
    cleared = HAND.assign(score=HAND.score.where(HAND.prompt_id != "re-02"))
    assert cell(summary_table(cleared, n_resamples=99), "category", ONE, "Reasoning").n == 1


def test_paired_differences_by_hand():
    diff = paired_differences(HAND, EIGHT, ONE, RUBRIC, levels=("overall", "category", "criterion"), n_resamples=999)
    grammar_row = diff[(diff.level == "category") & (diff.category == "Grammar")].iloc[0]
    # shared (prompt, criterion) pairs: gr-01 A-D and gr-02 A-E; 1M has 2.5 + 0.5 of 9, 8M has 9 of 9
    assert (grammar_row.prompts, grammar_row.n) == (2, 9)
    assert grammar_row.baseline_mean == pytest.approx(3 / 9) and grammar_row.model_mean == pytest.approx(1.0)
    assert grammar_row.difference == pytest.approx(1 - 3 / 9)
    assert grammar_row.ci_low <= grammar_row.difference <= grammar_row.ci_high
    overall = diff[diff.level == "overall"].iloc[0]
    assert overall.difference == pytest.approx(10 / 10 - 3 / 10)  # Grammar's 9 shared scores and Factual Knowledge's 1
    reasoning = diff[(diff.level == "category") & (diff.category == "Reasoning")].iloc[0]
    assert reasoning.prompts == 0 and math.isnan(reasoning.difference)
    knowledge = diff[(diff.level == "category") & (diff.category == "Factual Knowledge")].iloc[0]
    assert knowledge.difference == 1.0 and math.isnan(knowledge.ci_low)  # one shared prompt
    assert set(diff.level) == {"overall", "category", "criterion"}
    with pytest.raises(TinyscaleError, match="same model"): paired_differences(HAND, ONE, ONE)


def test_pairing_removes_shared_prompt_difficulty():
    "B scores half a point more than A on A's failures: pairing by prompt gives a much narrower interval than unpaired resampling."
    a = [float(i % 2) for i in range(40)]
    b = [s if s == 1 else 0.5 for s in a]
    rows = tidy([(f"re-{i:02d}", "Reasoning", "A", ONE, s) for i, s in enumerate(a)] +
                [(f"re-{i:02d}", "Reasoning", "A", EIGHT, s) for i, s in enumerate(b)])
    summary = summary_table(rows, n_resamples=1999)
    diff = paired_differences(rows, EIGHT, ONE, n_resamples=1999)
    paired = diff[diff.level == "category"].iloc[0]
    assert paired.difference == pytest.approx(0.25)
    rng = np.random.default_rng(0)  # unpaired: each model's prompts resampled on their own
    unpaired = [np.mean(rng.choice(b, 40)) - np.mean(rng.choice(a, 40)) for _ in range(4000)]
    low, high = np.percentile(unpaired, [2.5, 97.5])
    assert paired.ci_low <= 0.25 <= paired.ci_high
    assert paired.ci_high - paired.ci_low < 0.6 * (high - low)
    assert (paired.ci_high - paired.ci_low) < (cell(summary, "category", ONE, "Reasoning").ci_high - cell(summary, "category", ONE, "Reasoning").ci_low)


def test_model_sizes_order_and_labels():
    params = model_params(HAND, TARGETS)
    assert params == {ONE: 3745984, EIGHT: 19702528}  # from the paper's table, by the name's last part
    assert model_params(HAND.assign(model=CUSTOM), TARGETS) == {CUSTOM: None}
    with_params = HAND.assign(params=np.where(HAND.model == ONE, 5_000_000, np.nan))
    assert model_params(with_params, TARGETS)[ONE] == 5_000_000  # the completions' own count wins
    assert model_order([CUSTOM, EIGHT, ONE], {ONE: 1, EIGHT: 2}) == [ONE, EIGHT, CUSTOM]
    assert model_labels([ONE, CUSTOM], params) == {ONE: "TinyStories-1M (3.7M params)", CUSTOM: "custom"}


def test_paper_comparison_matches_shapes_and_checks_the_interval():
    summary = pd.DataFrame([
        dict(level="category", category="Grammar", criterion="", model=EIGHT, mean=0.70, n=50, ci_low=0.60, ci_high=0.80),
        dict(level="category", category="Creativity", criterion="", model=EIGHT, mean=0.15, n=40, ci_low=0.10, ci_high=0.20),
        dict(level="category", category="Reasoning", criterion="", model=EIGHT, mean=0.50, n=25, ci_low=0.30, ci_high=0.70),
        dict(level="category", category="Plot", criterion="", model=CUSTOM, mean=0.50, n=40, ci_low=0.45, ci_high=0.55),
    ])
    comparison = paper_comparison(summary, TARGETS, {EIGHT: 19702528, CUSTOM: 96856320})
    eight = comparison[comparison.model == EIGHT].set_index("category")
    assert list(eight.index) == ["Grammar", "Creativity", "Plot", "Context-Tracking"]  # Reasoning has no paper grade
    assert eight.loc["Grammar", "target"] == pytest.approx(0.772) and bool(eight.loc["Grammar", "inside"]) is True
    assert bool(eight.loc["Creativity", "inside"]) is False
    assert pd.isna(eight.loc["Plot", "inside"]) and eight.loc["Plot", "n"] == 0
    assert eight.loc["Grammar", "difference"] == pytest.approx(0.70 - 0.772)
    custom = comparison[comparison.model == CUSTOM].set_index("category")
    assert set(custom.paper_model) == {"768×8"} and custom.loc["Plot", "target"] == pytest.approx(0.734)  # matched by size
    assert paper_shape("roneneldan/TinyStories-28M", None, TARGETS) == "TinyStories-28M"
    assert paper_shape("roneneldan/TinyStories-33M", None, TARGETS) is None


def test_wide_summary_formats_cells(hand_summary):
    table = wide_summary(hand_summary, "category", model_labels([ONE, EIGHT], model_params(HAND, TARGETS)))
    assert list(table.columns) == ["TinyStories-1M (3.7M params)", "TinyStories-8M (19.7M params)"]
    assert table.loc["Reasoning", "TinyStories-8M (19.7M params)"] == "—"
    # one and two prompts: fewer than MIN_INTERVAL_PROMPTS, so no interval (a zero-width one would look precise)
    assert table.loc["Factual Knowledge", "TinyStories-1M (3.7M params)"] == "0.00 n=1, interval not meaningful (1 prompt)"
    assert table.loc["Grammar", "TinyStories-8M (19.7M params)"] == "1.00 n=9, interval not meaningful (2 prompts)"


# Figures

def test_figures_have_the_expected_artists(hand_summary):
    params = model_params(HAND, TARGETS)
    comparison = paper_comparison(hand_summary, TARGETS, params)
    bars = category_bars(hand_summary, comparison)
    assert isinstance(bars, Figure)
    ax = bars.axes[0]
    assert len(ax.patches) == 2 * 4  # two models, four categories
    assert sorted(t.get_text() for t in ax.texts) == ["not scored"] * 2  # 8M: Plot and Reasoning
    assert ax.get_ylabel() and ax.get_title()
    heatmap = criterion_heatmap(hand_summary, rubric=RUBRIC)
    texts = [t.get_text() for t in heatmap.axes[0].texts]
    assert len(texts) == 11 * 2 and texts.count("—") == 1 + 3 + 2  # 8M Grammar E is scored; Reasoning, Plot A-D missing
    curve = scaling_curve(hand_summary, {**params, EIGHT: None}, TARGETS)
    assert "TinyStories-8M" in curve.texts[0].get_text()  # left out, and said so
    assert curve.axes[0].get_xscale() == "log"
    scatter = paper_scatter(comparison)
    assert len(scatter.axes[0].containers) == comparison["mean"].notna().sum()
    with pytest.raises(TinyscaleError): paper_scatter(comparison.iloc[0:0])


# The explorer's filters

TWO_RATERS = pd.concat([HAND, HAND.assign(rater="bo", score=np.where(HAND.criterion == "A", 1 - HAND.score, HAND.score))],
                       ignore_index=True)


def test_disagreements_are_the_pairs_scored_differently():
    differ = disagreeing_scores(TWO_RATERS)
    # bo flipped every criterion A score; those with score 0.5 stay equal (1 - 0.5 = 0.5)
    flipped = HAND[(HAND.criterion == "A") & (HAND.score != 0.5)]
    assert set(zip(differ.completion_id, differ.criterion)) == set(zip(flipped.completion_id, flipped.criterion))
    assert sorted(differ.rater.value_counts().tolist()) == [len(flipped)] * 2
    assert disagreeing_scores(HAND).empty


def test_matching_completions_and_their_scores():
    found = matching_completions(TWO_RATERS, category="Grammar", criterion="A", score=0.0, rater="ada")
    assert found.completion_id.tolist() == [f"{ONE}|gr-02"]
    assert set(matching_completions(TWO_RATERS, category="Grammar", model=EIGHT).prompt_id) == {"gr-01", "gr-02"}
    contested = matching_completions(TWO_RATERS, only_disagreements=True)
    assert set(contested.completion_id) == set(disagreeing_scores(TWO_RATERS).completion_id)
    details = completion_scores(TWO_RATERS, f"{ONE}|gr-01")
    assert len(details) == 10 and list(details.criterion[:2]) == ["A", "A"] and list(details.rater[:2]) == ["ada", "bo"]
    assert len(filter_scores(TWO_RATERS, category="Plot", rater="bo")) == 3


def test_choices_narrow_each_other():
    assert choices(HAND, "criterion", category="Plot") == ["A", "B", "C"]
    assert choices(HAND, "model", category="Reasoning") == [ONE]
    assert choices(HAND, "category", model=EIGHT) == ["Grammar", "Factual Knowledge"]
    assert choices(HAND, "score", category="Factual Knowledge") == [0.0, 1.0]


def test_explorer_drills_from_a_cell_to_its_completions():
    explorer = Explorer(TWO_RATERS, RUBRIC, rater="ada")
    matches = explorer.select_cell("Grammar", "A", ONE)
    assert set(matches.completion_id) == {f"{ONE}|gr-01", f"{ONE}|gr-02"}
    explorer.score_picker.value = 1.0  # what a user picking a score does
    assert explorer.matches.completion_id.tolist() == [f"{ONE}|gr-01"]
    assert explorer.cards.value.count("<b>Prompt:</b>") == 1 and "bo" in explorer.cards.value  # every rater's scores
    explorer.select(category="Reasoning")  # criterion A, the model and the score all exist there too, so they stay
    assert (explorer.selection["criterion"], explorer.selection["model"], explorer.selection["score"]) == ("A", ONE, 1.0)
    assert explorer.matches.completion_id.tolist() == [f"{ONE}|re-01"]
    explorer.select(category="Plot", criterion="C")  # ada gave Plot C 0.5, never 1: the score filter opens
    assert explorer.selection["score"] is None and explorer.score_picker.value == "(any)"
    explorer.select(category=None, criterion=None, model=None)
    explorer.disagreement_box.value = True
    assert set(explorer.matches.completion_id) == set(disagreeing_scores(TWO_RATERS).completion_id)


def test_the_explore_notebook_opens_on_the_rater_with_most_scores(tmp_path):
    "nbs/explore.ipynb run as a researcher runs it: the explorer over the workbook's store, on the rater with most scores, or a plain message."
    import json, os, shutil
    import nbformat
    from nbclient import NotebookClient
    from tinyscale.completions import load_completions
    from tinyscale.store import ScoreStore
    from tinyscale.wide import import_wide_csv
    from tinyscale.prompts import load_prompts
    repo = Path(__file__).resolve().parents[1]

    def run(root):
        env = {k: v for k, v in os.environ.items() if k != "TINYSCALE_RATER"}
        env.update(TINYSCALE_ROOT=str(root), HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
        notebook = nbformat.read(repo/"nbs"/"explore.ipynb", as_version=4)
        NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(repo/"nbs")}}).execute(env=env)
        assert not [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
        return notebook

    for folder in ("empty", "scored"):
        (tmp_path/folder/"data").mkdir(parents=True)
        for name in ("criteria.csv", "prompts.csv", "paper_targets.csv", "scoring_rules.toml"): shutil.copy(repo/"data"/name, tmp_path/folder/"data"/name)
    empty = run(tmp_path/"empty")
    assert "No scores to explore yet" in json.dumps(empty.cells[-1].outputs)
    root = tmp_path/"scored"
    store = ScoreStore(root/"scores", completions=load_completions(root/"data"/"completions"), rubric=RUBRIC)
    import_wide_csv(repo/"tests"/"fixtures"/"analysis_wide_scores.csv", "bo", store, root/"data"/"completions", prompts=load_prompts())
    store = ScoreStore(root/"scores", completions=load_completions(root/"data"/"completions"), rubric=RUBRIC)
    first = store.current("bo").iloc[:5]
    store.set_scores(first[["completion_id", "criterion", "score"]].to_dict("records"), "ada")  # ada: fewer scores, first by name
    scored = run(root)
    state = scored.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    rater, = [m["state"] for m in state.values() if m["state"].get("description") == "rater"]
    assert rater["_options_labels"] == ["ada", "bo"] and rater["index"] == 1  # bo, who has the most scores
    buttons = [m["state"]["description"] for m in state.values() if m["model_name"] == "ButtonModel"]
    assert sum(" n=" in b for b in buttons) == 18 * 3  # every cell of the table shows its n
