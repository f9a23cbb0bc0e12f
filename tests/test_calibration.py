"""Calibrating a judge to its rater: the remap and its held-out agreement on hand-made pairs (checked by hand), the check
that no held-out prediction used its own prompt's scores, and `tinyscale judge calibrate` end to end."""
import csv, io, json

import numpy as np
import pandas as pd
import pytest

from judge_support import make_workbook
from tinyscale.agreement import weighted_kappa
from tinyscale.calibration import CALIBRATION_COLUMNS, calibration_table, cross_fit, fit_ordinal, fit_remap, panel_pairs
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore


def tidy(rows):
    "Tidy scores from (rater, prompt number, score) on Plot A, one completion per prompt."
    return pd.DataFrame([dict(completion_id=f"c{p}", prompt_id=f"pl-{p:02d}", category="Plot", criterion="A", model="m", rater=r,
                              score=s, note=None) for r, p, s in rows])


# Four prompts, one completion each, folds=4: each prompt is calibrated by a remap fitted on the other three.
# ana:     1    1    1    0        judge: 0.5  0.5  0.5  0
# Held out prompt 0, 1 or 2: the other three map 0.5 -> 1 (ana gave 1 twice) and 0 -> 0, so 0.5 becomes 1: right.
# Held out prompt 3: the others map 0.5 -> 1; 0 was never seen there, so it keeps the judge's 0: right.
# Calibrated exact 4/4; raw exact 1/4. Baseline: prompts 0-2 see ana's mode 1 (of 1, 1, 0): right; prompt 3 sees 1: wrong: 3/4.
# Raw kappa_w (levels ana 2 2 2 0, judge 1 1 1 0): observed 3 x 1/4 / 4 = 3/16; marginals ana (1/4, 0, 3/4), judge (1/4, 3/4, 0);
# expected 1/4 x 3/4 x 1/4 + 3/4 x (1/4 x 1 + 3/4 x 1/4) = 3/64 + 21/64 = 3/8; kappa = 1 - (3/16)/(3/8) = 1/2. Calibrated: 1.
HAND = [("ana", 0, 1.0), ("ana", 1, 1.0), ("ana", 2, 1.0), ("ana", 3, 0.0),
        ("judge:x", 0, 0.5), ("judge:x", 1, 0.5), ("judge:x", 2, 0.5), ("judge:x", 3, 0.0)]


def test_remap_held_out_by_hand():
    pairs = panel_pairs(tidy(HAND), "ana", ["judge:x"])
    fitted = cross_fit(pairs, ["judge:x"], folds=4, seed=7)
    assert fitted.calibrated.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert fitted.baseline.tolist() == [1.0, 1.0, 1.0, 1.0]
    table = calibration_table(fitted, ["judge:x"], n_resamples=199)
    assert tuple(table.columns) == CALIBRATION_COLUMNS
    overall = table.iloc[0]
    assert (overall.n, overall.exact_raw, overall.exact_calibrated, overall.baseline_exact) == (4, 0.25, 1.0, 0.75)
    assert (overall.kappa_w_raw, overall.kappa_w_calibrated) == pytest.approx((0.5, 1.0))
    assert weighted_kappa(pairs.score_a, pairs["judge:x"]) == pytest.approx(0.5)


def test_a_panel_maps_each_combination_of_scores():
    # a second judge that tells prompt 0 and 1 apart (1 vs 0) where the first cannot (0.5 both):
    # ana 1 on prompts 0 and 2 (y = 1), 0.5 on prompts 1 and 3 (y = 0); x = 0.5 throughout.
    rows = [("ana", p, s) for p, s in enumerate([1.0, 0.5, 1.0, 0.5])] + [("judge:x", p, 0.5) for p in range(4)] \
        + [("judge:y", p, s) for p, s in enumerate([1.0, 0.0, 1.0, 0.0])]
    pairs = panel_pairs(tidy(rows), "ana", ["judge:x", "judge:y"])
    assert fit_remap(pairs, ["judge:x", "judge:y"]) == {("Plot", "A"): {(0.5, 0.0): 0.5, (0.5, 1.0): 1.0}}
    # held out, each prompt's combination was seen once in the other three: every calibrated score is right
    assert cross_fit(pairs, ["judge:x", "judge:y"], folds=4).calibrated.tolist() == [1.0, 0.5, 1.0, 0.5]
    # the first judge alone: its 0.5 maps to ana's mode on the other three prompts, always the wrong one here:
    # prompts 0 and 2 see ana's 0.5, 1, 0.5 (-> 0.5), prompts 1 and 3 see 1, 1, 0.5 (-> 1)
    assert cross_fit(pairs, ["judge:x"], folds=4).calibrated.tolist() == [0.5, 1.0, 0.5, 1.0]


def simulated(seed=0, prompts=30, models=3):
    "Tidy scores of ana and a harsh, noisy judge on Plot A and B: `prompts` prompts, `models` completions each."
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(prompts):
        for m in range(models):
            for criterion in "AB":
                human = float(rng.choice([0.0, 0.5, 1.0], p=[0.2, 0.3, 0.5]))
                judge = 0.5 if human == 1.0 and rng.random() < 0.7 else human
                if rng.random() < 0.1: judge = float(rng.choice([0.0, 0.5, 1.0]))
                for rater, score in (("ana", human), ("judge:x", judge)):
                    rows.append(dict(completion_id=f"c{p}-{m}", prompt_id=f"pl-{p:02d}" if m else f"import-{p}", prompt=f"Opening {p}",
                                     category="Plot", criterion=criterion, model=f"m{m}", rater=rater, score=score, note=None))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", ["remap", "ordinal"])
def test_no_held_out_prediction_used_its_own_prompts_scores(method):
    pairs = panel_pairs(simulated(), "ana", ["judge:x"])
    fitted = cross_fit(pairs, ["judge:x"], folds=5, seed=3, method=method)
    # one prompt text is one slot: the completion numbered import-<p> shares its fold with the pl-<p> ones
    assert fitted.prompt_slot.nunique() == 30 and fitted.groupby("prompt_slot").fold.nunique().max() == 1
    rng = np.random.default_rng(1)
    for slot in fitted.prompt_slot.unique():
        mine = (fitted.prompt_slot == slot).to_numpy()
        changed = pairs.assign(score_a=np.where(mine, rng.choice([0.0, 0.5, 1.0], len(pairs)), pairs.score_a))
        again = cross_fit(changed, ["judge:x"], folds=5, seed=3, method=method)
        assert again.calibrated[mine].tolist() == fitted.calibrated[mine].tolist(), slot
        assert again.baseline[mine].tolist() == fitted.baseline[mine].tolist(), slot
    table = calibration_table(fitted, ["judge:x"], n_resamples=999)
    assert table.exact_calibrated[0] > max(table.exact_raw[0], table.baseline_exact[0])


@pytest.fixture
def judged(tmp_path, monkeypatch):
    "A scratch workbook (18 completions of 18 prompts) scored by ana and by a harsh judge."
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    completions = make_workbook(tmp_path, per_category=3)
    store = ScoreStore(tmp_path / "scores", completions=completions)
    rng = np.random.default_rng(0)
    human, judge = [], []
    for c in completions.itertuples():
        for criterion in load_rubric().for_category(c.category):
            score = float(rng.choice([0.0, 0.5, 1.0], p=[0.2, 0.3, 0.5]))
            human.append(dict(completion_id=c.completion_id, criterion=criterion.label, score=score))
            judge.append(dict(completion_id=c.completion_id, criterion=criterion.label, score=0.5 if score == 1.0 and rng.random() < 0.7 else score,
                              note=f"because {criterion.label}"))
    store.set_scores(human, rater="ana")
    store.set_scores(judge, rater="judge:gpt-4o-mini", source="judge:gpt-4o-mini")
    return tmp_path, store


def store_files(root):
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_cli_csv_md_and_json(cli, judged):
    root, store = judged
    status, out, err = cli("judge", "calibrate", "--a", "ana", "--b", "judge:gpt-4o-mini", "--format", "csv", "--resamples", "200", root=root)
    assert status == 0, err
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert header == ["level", "category", "criterion", "n", "exact_raw", "exact_calibrated", "kappa_w_raw", "kappa_w_calibrated",
                      "baseline_exact", "exact_calibrated_ci_low", "exact_calibrated_ci_high"]
    assert [r[0] for r in rows[:7]] == ["overall"] + ["category"] * 6 and len(rows) == 1 + 6 + 18
    assert int(rows[0][3]) == 3 * 18
    status, markdown, _ = cli("judge", "calibrate", "--a", "ana", "--b", "judge:gpt-4o-mini", "--resamples", "200", "--folds", "3", root=root)
    assert status == 0 and markdown.startswith("# Calibration: judge:gpt-4o-mini to ana\n\nHeld out on 18 prompt slots (3 folds by prompt, seed 0, method remap)")
    assert "Baseline exact is the exact agreement of a constant rater that always gives ana's most common score" in markdown
    status, text, _ = cli("judge", "calibrate", "--a", "ana", "--b", "judge:gpt-4o-mini", "--format", "json", "--resamples", "200", root=root)
    data = json.loads(text)
    assert status == 0 and (data["method"], data["folds"], data["seed"], data["judges"]) == ("remap", 5, 0, ["judge:gpt-4o-mini"])
    assert {m["score"] for m in data["mapping"]} <= {0.0, 0.5, 1.0} and len(data["calibration"]) == len(rows)


@pytest.mark.parametrize("change, message", [
    (["--b", "judge:nobody"], "tinyscale: error: rater 'judge:nobody' has no scores (raters: ana, judge:gpt-4o-mini)"),
    (["--b", "judge:gpt-4o-mini", "--folds", "1"], "tinyscale: error: --folds 1: use at least 2 folds (a mapping is tested on prompts it was not fitted on)"),
    (["--b", "judge:gpt-4o-mini", "--folds", "40"], "tinyscale: error: --folds 40: only 18 prompt slot(s) scored; use at most 18 folds"),
    (["--b", "judge:gpt-4o-mini", "--method", "magic"], "tinyscale: error: --method 'magic': use one of remap, ordinal"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(cli, judged, change, message):
    root, _ = judged
    before = store_files(root)
    status, out, err = cli("judge", "calibrate", "--a", "ana", *change, "--resamples", "200", root=root)
    assert (status, out, err.strip()) == (1, "", message)
    assert store_files(root) == before


def test_write_makes_a_held_out_rater_and_saves_the_mapping(cli, judged):
    root, store = judged
    args = ["judge", "calibrate", "--a", "ana", "--b", "judge:gpt-4o-mini", "--resamples", "200", "--format", "csv", "--seed", "2"]
    status, out, err = cli(*args, "--write", root=root)
    assert status == 0, err
    assert out == cli(*args, root=root).out  # the report is the same with or without --write
    path = root / "data" / "judge" / "calibration" / "judge_gpt-4o-mini+cal_to_ana.json"
    assert f"judge:gpt-4o-mini+cal: 54 held-out score event(s) written to {root / 'scores' / 'judge_gpt-4o-mini+cal.jsonl'}" in err
    assert f"saved to {path}" in err
    reopened = ScoreStore(root / "scores", completions=store.completions)
    calibrated = reopened.current("judge:gpt-4o-mini+cal")
    assert len(calibrated) == 54 and set(calibrated.source) == {"judge:gpt-4o-mini"}
    assert calibrated.note.str.startswith("calibrated to ana: remap, held out (5 folds by prompt, seed 2); from judge:gpt-4o-mini ").all()
    saved = json.loads(path.read_text())
    assert (saved["method"], saved["a"], saved["judges"], saved["rater"], saved["folds"], saved["seed"], saved["fitted_on"]) == \
        ("remap", "ana", ["judge:gpt-4o-mini"], "judge:gpt-4o-mini+cal", 5, 2, 54)
    # the calibrated rater's blind agreement with ana is the held-out calibrated agreement
    overall = next(csv.DictReader(io.StringIO(out)))
    status, table, _ = cli("agreement", "--a", "ana", "--b", "judge:gpt-4o-mini+cal", "--format", "csv", "--resamples", "200", root=root)
    assert status == 0 and float(next(csv.DictReader(io.StringIO(table)))["exact"]) == pytest.approx(float(overall["exact_calibrated"]))
    # a second --write finds every score held already
    status, _, err = cli(*args, "--write", root=root)
    assert status == 0 and "0 held-out score event(s) written" in err


def test_write_refuses_a_rater_that_is_not_a_judge_and_writes_nothing(cli, judged):
    root, store = judged
    current = store.current("ana")
    store.set_scores([dict(completion_id=r.completion_id, criterion=r.criterion, score=r.score) for r in current.itertuples()], rater="bob")
    before = store_files(root)
    status, out, err = cli("judge", "calibrate", "--a", "ana", "--b", "bob", "--write", "--resamples", "200", root=root)
    assert (status, out, err.strip()) == (1, "", "tinyscale: error: --b bob: calibrated scores are written for judge raters (judge:<model>) only")
    assert store_files(root) == before


def test_judge_with_a_saved_calibration_writes_calibrated_scores_of_new_completions(cli, judged):
    from tinyscale.calibration import apply_remap, load_calibration
    from tinyscale.completions import Completion, append_completions, example_completion, load_completions
    from tinyscale.fake_judge import FakeJudgeServer
    root, store = judged
    assert cli("judge", "calibrate", "--a", "ana", "--b", "judge:gpt-4o-mini", "--resamples", "200", "--write", root=root).status == 0
    path = root / "data" / "judge" / "calibration" / "judge_gpt-4o-mini+cal_to_ana.json"
    # a new checkpoint's completions of the same prompts, and one completion the mapping was fitted on
    first = store.completions.iloc[0]
    new = [example_completion(r.prompt_id, r.category, r.prompt, r.completion, "fixture/TinyStories-8M") for r in store.completions.itertuples()]
    append_completions(root / "new.jsonl", new + [Completion(**first.to_dict())])
    with FakeJudgeServer("openai") as server:
        status, out, err = cli("judge", "--backend", "openai", "--model", "gpt-4o-mini", "--base-url", server.url, "--no-progress",
                               "--completions", str(root / "new.jsonl"), "--calibration", str(path), root=root)
    assert status == 0, err
    reopened = ScoreStore(root / "scores", completions=load_completions([root / "new.jsonl"]))
    raw, calibrated = reopened.current("judge:gpt-4o-mini"), reopened.current("judge:gpt-4o-mini+cal")
    new_ids = {c.completion_id for c in new}
    joined = raw[raw.completion_id.isin(new_ids)].merge(calibrated, on=["completion_id", "criterion"], suffixes=("", "_cal"))
    assert len(joined) == 54 and len(calibrated[calibrated.completion_id.isin(new_ids)]) == 54
    expected = apply_remap(load_calibration(path)["mapping"], joined.assign(**{"judge:gpt-4o-mini": joined.score}), ["judge:gpt-4o-mini"])
    assert joined.score_cal.tolist() == expected.tolist()
    assert joined.note_cal.str.startswith("calibrated to ana: remap fitted on all 54 scored items (held-out check: 5 folds by prompt, seed 0)").all()
    # the completion the mapping was fitted on keeps its held-out calibrated scores
    kept = calibrated[calibrated.completion_id == first.completion_id]
    assert len(kept) > 0 and kept.note.str.startswith("calibrated to ana: remap, held out").all()
    assert f"calibrated: 54 event(s) written to {root / 'scores' / 'judge_gpt-4o-mini+cal.jsonl'} (remap, {path.name}); left out {len(kept)} score(s)" in out
    wrong = cli("judge", "--backend", "openai", "--model", "other-model", "--base-url", "http://127.0.0.1:9/v1", "--calibration", str(path), root=root)
    assert wrong.status == 1 and wrong.err.strip().endswith("fitted for judge:gpt-4o-mini, not for judge:other-model")


def test_ordinal_maps_every_combination_and_runs_from_the_command_line(cli, judged):
    # a panel of two judges: the ordinal model answers for all nine combinations of their scores, each a score level
    pairs = panel_pairs(simulated().pipe(lambda s: pd.concat([s, s[s.rater == "judge:x"].assign(rater="judge:y")])), "ana", ["judge:x", "judge:y"])
    mapping = fit_ordinal(pairs, ["judge:x", "judge:y"])
    assert all(len(cells) == 9 and set(cells.values()) <= {0.0, 0.5, 1.0} for cells in mapping.values())
    root, _ = judged
    status, out, err = cli("judge", "calibrate", "--a", "ana", "--b", "judge:gpt-4o-mini", "--method", "ordinal", "--resamples", "200",
                           "--format", "json", "--write", root=root)
    assert status == 0, err
    data = json.loads(out)
    assert data["method"] == "ordinal" and len(data["mapping"]) == 3 * 18  # three scores of one judge, per criterion
    saved = json.loads((root / "data" / "judge" / "calibration" / "judge_gpt-4o-mini+cal_to_ana.json").read_text())
    assert saved["method"] == "ordinal"


def test_judge_with_a_calibration_writes_nothing_when_no_judgment_came(cli, judged, monkeypatch):
    from tinyscale.completions import append_completions, example_completion
    root, store = judged
    assert cli("judge", "calibrate", "--a", "ana", "--b", "judge:claude-haiku-4-5", "--resamples", "200", root=root).status == 1  # no such rater yet
    scores = store.current("judge:gpt-4o-mini")
    store.set_scores([dict(completion_id=r.completion_id, criterion=r.criterion, score=r.score) for r in scores.itertuples()],
                     rater="judge:claude-haiku-4-5", source="judge:claude-haiku-4-5")
    assert cli("judge", "calibrate", "--a", "ana", "--b", "judge:claude-haiku-4-5", "--resamples", "200", "--write", root=root).status == 0
    path = root / "data" / "judge" / "calibration" / "judge_claude-haiku-4-5+cal_to_ana.json"
    new = [example_completion(r.prompt_id, r.category, r.prompt, r.completion, "fixture/TinyStories-8M") for r in store.completions.itertuples()]
    append_completions(root / "new.jsonl", new)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    before = store_files(root)
    status, out, err = cli("judge", "--backend", "anthropic", "--model", "claude-haiku-4-5", "--no-progress", "--completions", str(root / "new.jsonl"),
                           "--calibration", str(path), root=root)
    assert (status, err.strip()) == (1, "tinyscale: error: --backend anthropic: set ANTHROPIC_API_KEY in the environment (keys are read only from there)")
    assert "calibrated:" not in out
    assert {p: b for p, b in store_files(root).items() if "judge-cache" not in str(p)} == \
        {p: b for p, b in before.items() if "judge-cache" not in str(p)}


def test_judge_with_a_calibration_calibrates_what_came_when_some_judgments_fail(cli, judged):
    from tinyscale.completions import append_completions, example_completion
    from tinyscale.fake_judge import FakeJudgeServer
    root, store = judged
    assert cli("judge", "calibrate", "--a", "ana", "--b", "judge:gpt-4o-mini", "--resamples", "200", "--write", root=root).status == 0
    path = root / "data" / "judge" / "calibration" / "judge_gpt-4o-mini+cal_to_ana.json"
    new = [example_completion(r.prompt_id, r.category, r.prompt, r.completion, "fixture/TinyStories-8M") for r in store.completions.itertuples()]
    append_completions(root / "new.jsonl", new)
    with FakeJudgeServer("openai", faults=["malformed", "malformed"]) as server:
        status, out, err = cli("judge", "--backend", "openai", "--model", "gpt-4o-mini", "--base-url", server.url, "--no-progress",
                               "--concurrency", "1", "--completions", str(root / "new.jsonl"), "--calibration", str(path), root=root)
    assert status == 1 and "1 of 18 judgment(s) failed: 1 parse failure" in err
    reopened = ScoreStore(root / "scores", completions=store.completions)
    new_ids = {c.completion_id for c in new}
    raw = reopened.current("judge:gpt-4o-mini").pipe(lambda s: s[s.completion_id.isin(new_ids)])
    calibrated = reopened.current("judge:gpt-4o-mini+cal").pipe(lambda s: s[s.completion_id.isin(new_ids)])
    assert 0 < len(calibrated) == len(raw) < 54 and f"calibrated: {len(raw)} event(s) written" in out
