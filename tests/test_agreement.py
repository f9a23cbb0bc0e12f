"""Agreement statistics on hand-made pairs (checked by hand and against scikit-learn), edge cases, the review kept apart,
and `tinyscale agreement` end to end."""
import csv, io, json, math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from judge_support import make_workbook
from tinyscale.agreement import (AGREEMENT_COLUMNS, REVIEWED_LABEL, Review, agreement_table, confusion_matrix,
                                 disagreements, exact_agreement, kappa_from_counts, completion_counts, ordinal_alpha,
                                 paired_scores, rater_means, weighted_kappa, within_one)
from tinyscale.core import TinyscaleError
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore

LEVEL = {0: 0.0, 1: 0.5, 2: 1.0}


def scores_of(levels):
    return [LEVEL[i] for i in levels]


def pairs_frame(a, b, completions=None, category="Plot", criterion="A", model="m"):
    n = len(a)
    return pd.DataFrame(dict(completion_id=completions or [f"c{i}" for i in range(n)], prompt_id=[f"pl-{i:02d}" for i in range(n)],
                             category=category, criterion=criterion, model=model, score_a=a, score_b=b, note_a=None, note_b=None))


# Case 1: levels A 0 1 2 2 1 0, B 0 2 2 1 1 0. Exact 4/6; within one 6/6. Quadratic weights (i-j)^2/4:
# observed disagreement = 2 pairs x 1/4 / 6 = 1/12; both marginals (1/3, 1/3, 1/3), expected = (4 x 1/4 + 2 x 1)/9 = 1/3;
# kappa = 1 - (1/12)/(1/3) = 3/4.
# Case 2: levels A 0 0 0 0 2 2, B 0 0 0 1 2 1. Exact 4/6; within one 6/6. Observed = 1/12; marginals A (4/6, 0, 2/6),
# B (3/6, 2/6, 1/6): expected = 4/6 x (2/6 x 1/4 + 1/6 x 1) + 2/6 x (3/6 x 1 + 2/6 x 1/4) = 1/6 + 7/36 = 13/36;
# kappa = 1 - (1/12)/(13/36) = 10/13.
# Case 3: A 0 2, B 2 0: exact 0, within one 0; marginals (1/2, 0, 1/2) each; observed 1, expected 1/2; kappa = -1.
CASES = [([0, 1, 2, 2, 1, 0], [0, 2, 2, 1, 1, 0], 4 / 6, 1.0, 3 / 4),
         ([0, 0, 0, 0, 2, 2], [0, 0, 0, 1, 2, 1], 4 / 6, 1.0, 10 / 13),
         ([0, 2], [2, 0], 0.0, 0.0, -1.0)]


@pytest.mark.parametrize("a, b, exact, within, kappa", CASES)
def test_hand_computed_agreement_and_scikit_learn(a, b, exact, within, kappa):
    sa, sb = scores_of(a), scores_of(b)
    assert exact_agreement(sa, sb) == pytest.approx(exact)
    assert within_one(sa, sb) == pytest.approx(within)
    assert weighted_kappa(sa, sb) == pytest.approx(kappa)
    assert weighted_kappa(sa, sb) == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
    table = agreement_table(pairs_frame(sa, sb), n_resamples=199)
    assert table.loc[0, ["exact", "within_one", "kappa_w"]].tolist() == pytest.approx([exact, within, kappa])


def test_alpha_is_the_krippendorff_ordinal_value():
    # two raters, no missing values, ordinal metric: agrees with the package on the raw levels
    import krippendorff
    a, b = [0, 1, 2, 2, 1, 0, 1], [0, 2, 2, 1, 1, 0, 0]
    expected = krippendorff.alpha(reliability_data=[a, b], level_of_measurement="ordinal")
    assert ordinal_alpha(scores_of(a), scores_of(b)) == pytest.approx(expected)


def test_perfect_agreement_gives_one_at_every_level():
    rng = np.random.default_rng(0)
    levels = rng.choice([0.0, 0.5, 1.0], 60)
    pairs = pd.concat([pairs_frame(list(levels[:30]), list(levels[:30]), category="Plot", criterion="A"),
                       pairs_frame(list(levels[30:]), list(levels[30:]), [f"d{i}" for i in range(30)], category="Grammar", criterion="B")],
                      ignore_index=True)
    table = agreement_table(pairs, n_resamples=199)
    assert len(table) == 5  # overall, 2 categories, 2 criteria
    for column in ("exact", "within_one", "kappa_w", "alpha", "exact_ci_low", "exact_ci_high", "kappa_w_ci_low", "kappa_w_ci_high"):
        assert table[column].tolist() == pytest.approx([1.0] * 5), column
    assert table.attrs["notes"] == []


def test_constant_raters_give_nan_or_zero_with_a_note_not_an_error():
    both_constant = agreement_table(pairs_frame([1.0] * 8, [1.0] * 8), names=("ana", "judge:x"), n_resamples=199)
    assert math.isnan(both_constant.kappa_w[0]) and math.isnan(both_constant.alpha[0])
    assert both_constant.exact[0] == 1.0
    assert both_constant.attrs["notes"][0] == "All criteria: kappa and alpha undefined: both raters gave every pair 1"
    one_constant = agreement_table(pairs_frame([1.0] * 6, [0.0, 0.5, 1.0, 1.0, 0.5, 1.0]), names=("ana", "judge:x"), n_resamples=199)
    assert one_constant.kappa_w[0] == 0.0 and math.isnan(one_constant.kappa_w_ci_low[0])
    assert "ana gave every pair 1: kappa is 0 by construction" in one_constant.attrs["notes"][0]
    assert weighted_kappa([], []) != weighted_kappa([], [])  # NaN for no pairs


def test_vectorised_kappa_matches_scikit_learn():
    rng = np.random.default_rng(7)
    for _ in range(20):
        a, b = rng.choice([0.0, 0.5, 1.0], 50), rng.choice([0.0, 0.5, 1.0], 50)
        counts = completion_counts(pairs_frame(list(a), list(b), [f"c{i // 5}" for i in range(50)]))
        cells = [counts[f"c{i}{j}"] for i in range(3) for j in range(3)]
        assert float(kappa_from_counts(*cells)) == pytest.approx(weighted_kappa(a, b))
        stacked = [np.vstack([c, c]) for c in cells]  # vectorised over resamples
        assert kappa_from_counts(*stacked, axis=-1).tolist() == pytest.approx([weighted_kappa(a, b)] * 2)


def test_intervals_resample_completions_and_are_reproducible():
    rng = np.random.default_rng(3)
    a = rng.choice([0.0, 0.5, 1.0], 120)
    b = np.where(rng.random(120) < 0.7, a, rng.choice([0.0, 0.5, 1.0], 120))
    pairs = pairs_frame(list(a), list(b), [f"c{i // 4}" for i in range(120)])
    first, second = agreement_table(pairs, n_resamples=999, seed=5), agreement_table(pairs, n_resamples=999, seed=5)
    pd.testing.assert_frame_equal(first, second)
    row = first.iloc[0]
    assert row.exact_ci_low < row.exact < row.exact_ci_high and row.kappa_w_ci_low < row.kappa_w < row.kappa_w_ci_high
    # whole completions are resampled: grouping the same pairs 4 to a completion changes the interval
    independent = agreement_table(pairs.assign(completion_id=[f"c{i}" for i in range(120)]), n_resamples=999, seed=5).iloc[0]
    assert (row.exact_ci_high - row.exact_ci_low) != pytest.approx(independent.exact_ci_high - independent.exact_ci_low)


def test_means_confusion_and_disagreements():
    pairs = pd.concat([pairs_frame([0.0, 0.5, 1.0], [0.5, 0.5, 1.0], ["a1", "a2", "a3"], model="small"),
                       pairs_frame([0.0, 0.0, 1.0], [1.0, 0.5, 1.0], ["b1", "b2", "b3"], model="large")], ignore_index=True)
    means = rater_means(pairs, n_resamples=199).set_index(["model", "category"])
    assert means.loc[("small", ""), ["mean_a", "mean_b", "difference"]].tolist() == pytest.approx([0.5, 2 / 3, 1 / 6])
    assert means.loc[("large", ""), "difference"] == pytest.approx(0.5)
    matrix = confusion_matrix(pairs, ("ana", "judge"))
    assert matrix.loc[0.0, 0.5] == 2 and matrix.loc[0.0, 1.0] == 1 and matrix.loc[1.0, 1.0] == 2 and matrix.to_numpy().sum() == 6
    listed = disagreements(pairs)
    assert listed.completion_id.tolist() == ["b1", "a1", "b2"] and listed.difference.tolist() == [1.0, 0.5, 0.5]


def test_pairing_keeps_only_what_both_scored():
    scores = pd.DataFrame([dict(completion_id=c, prompt_id="p", category="Plot", criterion=k, model="m", rater=r, score=s, note=None)
                           for c, k, r, s in [("c1", "A", "ana", 1.0), ("c1", "A", "judge:x", 0.5), ("c1", "B", "ana", 1.0),
                                              ("c2", "A", "judge:x", 0.0)]])
    pairs = paired_scores(scores, "ana", "judge:x")
    assert pairs[["completion_id", "criterion", "score_a", "score_b"]].values.tolist() == [["c1", "A", 1.0, 0.5]]
    with pytest.raises(TinyscaleError, match="rater 'bob' has no scores"):
        paired_scores(scores, "ana", "bob")
    with pytest.raises(TinyscaleError, match="no \\(completion, criterion\\) scored by both"):
        agreement_table(pairs.iloc[0:0], names=("ana", "judge:x"))


@pytest.fixture
def workbook(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    completions = make_workbook(tmp_path, per_category=3)
    store = ScoreStore(tmp_path / "scores", completions=completions)
    rubric = load_rubric()
    rng = np.random.default_rng(0)
    human, judge = [], []
    for c in completions.itertuples():
        for criterion in rubric.for_category(c.category):
            score = float(rng.choice([0.0, 0.5, 1.0]))
            human.append(dict(completion_id=c.completion_id, criterion=criterion.label, score=score))
            other = score if rng.random() < 0.6 else float(rng.choice([0.0, 0.5, 1.0]))
            judge.append(dict(completion_id=c.completion_id, criterion=criterion.label, score=other, note=f"because {criterion.label}"))
    store.set_scores(human, rater="ana")
    store.set_scores(judge, rater="judge:gpt-4o-mini", source="judge:gpt-4o-mini")
    return tmp_path, store


def test_cli_csv_has_exactly_the_columns(cli_process, workbook):
    root, store = workbook
    result = cli_process("agreement", "--a", "ana", "--b", "judge:gpt-4o-mini", "--format", "csv", "--resamples", "200",
                         root=root, timeout=120)
    assert result.status == 0, result.err
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert tuple(csv.reader(io.StringIO(result.out)).__next__()) == AGREEMENT_COLUMNS
    assert [r["level"] for r in rows[:7]] == ["overall"] + ["category"] * 6 and len(rows) == 1 + 6 + 18
    assert (rows[0]["category"], rows[0]["criterion"]) == ("", "") and rows[1]["criterion"] == ""
    pairs = paired_scores(store.current(), "ana", "judge:gpt-4o-mini")
    assert int(rows[0]["n"]) == len(pairs) == 3 * 18
    assert float(rows[0]["exact"]) == pytest.approx(exact_agreement(pairs.score_a, pairs.score_b))
    assert float(rows[0]["kappa_w"]) == pytest.approx(weighted_kappa(pairs.score_a, pairs.score_b))


def test_cli_markdown_and_json_keep_the_review_apart(cli_process, workbook):
    root, store = workbook
    plain = cli_process("agreement", "--a", "ana", "--b", "judge:gpt-4o-mini", "--resamples", "200", root=root, timeout=120)
    assert plain.status == 0, plain.err
    assert plain.out.startswith("# Agreement: ana vs judge:gpt-4o-mini\n\nBlind agreement of judge:gpt-4o-mini with ana: exact ")
    assert "Reviewed agreement" not in plain.out
    review = Review(store, "judge:gpt-4o-mini", "ana", only_disagreements=True)
    for _ in range(4):
        review.mark("agree"); review.go_next()
    assert len(Review(store, "judge:gpt-4o-mini", "ana").reviews()) == 4  # marks survive a new session
    assert store.raters() == ["ana", "judge:gpt-4o-mini"]  # and are not score events
    markdown = cli_process("agreement", "--a", "ana", "--b", "judge:gpt-4o-mini", "--resamples", "200", root=root, timeout=120).out
    assert markdown.index("## Per category") < markdown.index("## Reviewed agreement (not blind)")
    assert REVIEWED_LABEL in markdown
    assert "| All criteria | 4 | 100% | 0% |" in markdown  # reviewed 100% on items where the blind scores differed
    assert markdown.split("\n\n")[1] == plain.out.split("\n\n")[1]  # the headline is the blind number either way
    data = json.loads(cli_process("agreement", "--a", "ana", "--b", "judge:gpt-4o-mini", "--format", "json", "--resamples", "200",
                                  root=root, timeout=120).out)
    assert data["reviewed_agreement"]["label"] == REVIEWED_LABEL and data["reviewed_agreement"]["rows"][0]["reviewed"] == 4
    assert data["blind_agreement"][0]["level"] == "overall" and data["headline"].startswith("Blind agreement")
    assert sum(map(sum, data["confusion"]["counts"])) == 54 and len(data["disagreements"]) > 0


def test_cli_errors_are_one_line(cli_process, workbook):
    root, _ = workbook
    unknown = cli_process("agreement", "--a", "ana", "--b", "bob", root=root, timeout=120)
    assert unknown.status == 1
    assert unknown.err.strip() == "tinyscale: error: rater 'bob' has no scores (raters: ana, judge:gpt-4o-mini)"
    same = cli_process("agreement", "--a", "ana", "--b", "ana", root=root, timeout=120)
    assert same.status == 1 and "compare two different raters" in same.err
    few = cli_process("agreement", "--a", "ana", "--b", "judge:gpt-4o-mini", "--resamples", "10", root=root, timeout=120)
    assert few.status == 1 and "--resamples 10" in few.err


# The constant baseline: rater A's most common score of the criterion, taken from the other prompts. Four prompts, one pair
# each: four folds of one prompt. A 1 1 0 1: each prompt sees a held-out mode of 1, so the baseline matches 3 of 4.
# A 1 0 0.5 1: the held-out modes are 0 (tie of 0, 0.5, 1 -> lowest), 1, 1, 0 -> it matches none, where the in-sample
# mode (1) would match 2 of 4.
OLD_COLUMNS = ("level", "category", "criterion", "n", "exact", "within_one", "kappa_w", "alpha",
               "exact_ci_low", "exact_ci_high", "kappa_w_ci_low", "kappa_w_ci_high")


@pytest.mark.parametrize("a, b, baseline, exact", [([1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0], 3 / 4, 1.0),
                                                    ([1.0, 0.0, 0.5, 1.0], [1.0, 1.0, 1.0, 1.0], 0.0, 2 / 4)])
def test_baseline_is_rater_a_s_held_out_mode(a, b, baseline, exact):
    table = agreement_table(pairs_frame(a, b), n_resamples=199)
    assert AGREEMENT_COLUMNS == OLD_COLUMNS + ("baseline_exact", "exact_over_baseline")
    assert tuple(table.columns) == AGREEMENT_COLUMNS
    for row in table.itertuples():  # one criterion: overall, category and criterion rows are the same pairs
        assert (row.baseline_exact, row.exact) == pytest.approx((baseline, exact))
        assert row.exact_over_baseline == pytest.approx(exact - baseline)


def test_baseline_folds_keep_a_prompt_whole_and_need_two_prompts():
    # two models' completions of each prompt: a prompt's pairs are held out together, so with two prompts each is scored
    # with the other's mode: A gives prompt 1 the scores 1, 1 and prompt 2 the scores 0, 0 -> the baseline matches nothing
    pairs = pairs_frame([1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]).assign(prompt_id=["pl-01", "pl-01", "pl-02", "pl-02"])
    assert agreement_table(pairs, n_resamples=199).baseline_exact[0] == 0.0
    one_prompt = agreement_table(pairs.assign(prompt_id="pl-01"), n_resamples=199).iloc[0]
    assert math.isnan(one_prompt.baseline_exact) and math.isnan(one_prompt.exact_over_baseline)
