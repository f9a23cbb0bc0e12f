"""Score probabilities end to end: a judge server that returns token log-probabilities (the fake OpenAI-compatible one,
which plants a known probability of each level), the judgment records, the ordinal calibration that reads them, and a
new checkpoint judged and calibrated with the saved model."""
import json

import numpy as np
import pandas as pd
import pytest

from judge_support import make_workbook
from tinyscale.calibration import (PROBABILITIES, _predict, _probability_features, cross_fit, expected_column, load_calibration,
                                   panel_pairs)
from tinyscale.completions import append_completions, example_completion, load_completions
from tinyscale.core import read_jsonl
from tinyscale.fake_judge import FakeJudgeServer, fake_probabilities
from tinyscale.judge import request_hash
from tinyscale.prompts import load_prompts
from tinyscale.rubric import CATEGORIES
from tinyscale.store import ScoreStore

JUDGE = "judge:fake-judge"


@pytest.fixture
def workbook(tmp_path, monkeypatch):
    "A scratch workbook with 294 completions: six models' of 8 prompts per category (prompt texts the categories share, once), and 6 more."
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    make_workbook(tmp_path, per_category=1)
    prompts, seen, made = load_prompts(tmp_path / "data" / "prompts.csv"), set(), []
    for category in CATEGORIES:
        chosen = [p for p in prompts if p.category == category and p.prompt not in seen][:8]
        seen |= {p.prompt for p in chosen}
        made += [example_completion(p.id, category, p.prompt, f" Tom saw a {animal}.", f"fixture/m{m}")
                 for p in chosen for m, animal in enumerate(["dog", "cat", "bird", "fish", "frog", "duck"])]
    append_completions(tmp_path / "data" / "completions" / "six-models.jsonl", made)
    return tmp_path, load_completions()


def judge(cli, root, server, *extra, completions=None):
    args = ["judge", "--backend", "openai", "--model", "fake-judge", "--base-url", server.url, "--no-progress", *extra]
    return cli(*args, *(["--completions", str(completions)] if completions else []), root=root)


def records(root):
    return [r for r in read_jsonl(root / "data" / "judge-cache" / "openai_fake-judge.jsonl")]


def expected(p):
    return 0.5 * p["0.5"] + p["1"]


def test_records_carry_the_planted_probabilities(cli, workbook):
    root, completions = workbook
    few = root / "few.jsonl"
    append_completions(few, [example_completion(r.prompt_id, r.category, r.prompt, r.completion, r.model) for r in completions.iloc[:6].itertuples()])
    with FakeJudgeServer("openai") as server:
        status, _, err = judge(cli, root, server, completions=few)
        assert status == 0, err
        prompts = {request_hash(body["messages"]): body["messages"][0]["content"] for body in server.bodies}
        assert all(body["logprobs"] is True and body["top_logprobs"] == 5 for body in server.bodies)
    judged = records(root)
    assert len(judged) == 6 and all(r["status"] == "ok" and r["probabilities_note"] == "" for r in judged)
    for record in judged:
        prompt = prompts[record["request_hash"]]
        assert sorted(record["probabilities"]) == sorted(record["scores"])
        for label, score in record["scores"].items():
            planted, got = fake_probabilities(prompt, label, score), record["probabilities"][label]
            assert got["1"] == pytest.approx(planted["1"], abs=1e-5)
            if score < 1: assert (got["0"], got["0.5"]) == pytest.approx((planted["0"], planted["0.5"]), abs=1e-5)
            else: assert got["0"] == pytest.approx(got["0.5"])  # after a written 1 the 0 / 0.5 share is split evenly
            assert got["mass"] == pytest.approx(1.0)
    # asking again changes no key: everything is cached, nothing is sent, with or without the ask
    with FakeJudgeServer("openai") as server:
        assert judge(cli, root, server, "--no-logprobs", completions=few).status == 0 and server.requests == 0


def test_without_log_probabilities_the_record_says_why(cli, workbook):
    root, completions = workbook
    one = root / "one.jsonl"
    append_completions(one, [example_completion(r.prompt_id, r.category, r.prompt, r.completion, r.model) for r in completions.iloc[:1].itertuples()])
    with FakeJudgeServer("openai", logprobs=False) as deaf:
        assert judge(cli, root, deaf, completions=one).status == 0
    [record] = records(root)
    assert record["status"] == "ok" and record["probabilities"] is None
    assert record["probabilities_note"] == "the server returned no log-probabilities"
    with FakeJudgeServer("openai") as server:
        assert judge(cli, root, server, "--no-logprobs", "--retry-failed", "--cache", str(root / "other-cache"), completions=one).status == 0
        assert "logprobs" not in server.bodies[0]
    [record] = read_jsonl(root / "other-cache" / "openai_fake-judge.jsonl")
    assert record["probabilities_note"] == "log-probabilities were not asked for (--no-logprobs)"
    status, _, err = cli("judge", "--backend", "anthropic", "--model", "claude-haiku-4-5", "--logprobs", "--dry-run", root=root)
    assert status == 1 and err.strip().endswith("--logprobs: the anthropic Messages API returns no token log-probabilities")


def plant_researcher(root, completions):
    "ana's score follows the judge's expected score (1 above 0.75, 0.5 above 0.4, else 0): its probabilities know her, its scores only roughly."
    store = ScoreStore(root / "scores", completions=completions)
    scores = [dict(completion_id=r["completion_id"], criterion=label, score=1.0 if expected(p) >= 0.75 else 0.5 if expected(p) >= 0.4 else 0.0)
              for r in records(root) for label, p in r["probabilities"].items()]
    store.set_scores(scores, rater="ana")
    return store


def test_ordinal_calibration_reads_the_probabilities_and_a_new_checkpoint_uses_them(cli, workbook):
    root, completions = workbook
    with FakeJudgeServer("openai") as server:
        assert judge(cli, root, server).status == 0
    plant_researcher(root, completions)
    results = {}
    for method in ("remap", "ordinal"):
        status, out, err = cli("judge", "calibrate", "--a", "ana", "--b", JUDGE, "--method", method, "--format", "json", "--resamples", "200", root=root)
        assert status == 0, err
        results[method] = json.loads(out)
    overall = {m: r["calibration"][0] for m, r in results.items()}
    assert overall["ordinal"]["n"] == overall["remap"]["n"] == 882
    assert overall["ordinal"]["exact_calibrated"] > overall["remap"]["exact_calibrated"] + 0.05, overall
    assert "also took the judges' expected scores" in results["ordinal"]["note"] and "(882 of 882 items had them)" in results["ordinal"]["note"]
    assert results["ordinal"]["probability_models"] and not results["remap"]["probability_models"]

    # --write saves the models; judging a new checkpoint with --calibration applies them to the new judgments' probabilities
    assert cli("judge", "calibrate", "--a", "ana", "--b", JUDGE, "--method", "ordinal", "--resamples", "200", "--write", root=root).status == 0
    path = root / "data" / "judge" / "calibration" / "judge_fake-judge+cal_to_ana.json"
    saved = load_calibration(path)
    assert sum(len(key) == 3 for key in saved["mapping"]) == 18
    new = [example_completion(r.prompt_id, r.category, r.prompt, r.completion + " The end.", "fixture/TinyStories-8M") for r in completions.drop_duplicates("prompt").iloc[:30].itertuples()]
    append_completions(root / "new.jsonl", new)
    with FakeJudgeServer("openai") as server:
        status, out, err = judge(cli, root, server, "--calibration", str(path), completions=root / "new.jsonl")
    assert status == 0, err
    store = ScoreStore(root / "scores", completions=load_completions([root / "new.jsonl"]))
    calibrated = store.current(f"{JUDGE}+cal").set_index(["completion_id", "criterion"]).score
    by_id = {r["completion_id"]: r for r in records(root)}
    checked = 0
    for c in new:
        record = by_id[c.completion_id]
        for label, score in record["scores"].items():
            frame = pd.DataFrame({"category": [c.category], "criterion": [label], JUDGE: [score], expected_column(JUDGE): [expected(record["probabilities"][label])]})
            want = _predict(saved["mapping"][c.category, label, PROBABILITIES], _probability_features(frame, [JUDGE]))[0]
            assert calibrated[c.completion_id, label] == want
            checked += 1
    assert checked == sum(len(by_id[c.completion_id]["scores"]) for c in new) == calibrated.index.get_level_values(0).isin({c.completion_id for c in new}).sum() > 90


def test_no_held_out_prediction_used_its_own_prompts_scores_or_probabilities():
    rng = np.random.default_rng(0)
    rows = []
    for p in range(30):
        for m in range(3):
            e = rng.uniform()
            judge_score = 1.0 if e > 0.66 else 0.5 if e > 0.33 else 0.0
            for rater, score in (("ana", 1.0 if e > 0.5 else 0.0), ("judge:x", judge_score)):
                rows.append(dict(completion_id=f"c{p}-{m}", prompt_id=f"pl-{p:02d}", prompt=f"Opening {p}", category="Plot", criterion="A",
                                 model=f"m{m}", rater=rater, score=score, note=None, e=e))
    scores = pd.DataFrame(rows)
    pairs = panel_pairs(scores.drop(columns="e"), "ana", ["judge:x"])
    pairs[expected_column("judge:x")] = scores[scores.rater == "ana"].e.to_numpy()
    fitted = cross_fit(pairs, ["judge:x"], folds=5, seed=3, method="ordinal")
    assert (fitted.calibrated == fitted.score_a).mean() > 0.9  # the probabilities carry ana's rule
    for slot in fitted.prompt_slot.unique():
        mine = (fitted.prompt_slot == slot).to_numpy()
        flipped = cross_fit(pairs.assign(score_a=np.where(mine, 1.0 - pairs.score_a, pairs.score_a)), ["judge:x"], folds=5, seed=3, method="ordinal")
        assert flipped.calibrated[mine].tolist() == fitted.calibrated[mine].tolist(), slot  # its own scores never reach its prediction
        changed = pairs.assign(score_a=np.where(mine, 1.0 - pairs.score_a, pairs.score_a),
                               **{expected_column("judge:x"): np.where(mine, rng.uniform(size=len(pairs)), pairs[expected_column("judge:x")])})
        again = cross_fit(changed, ["judge:x"], folds=5, seed=3, method="ordinal")
        others = ~mine & (fitted.fold == fitted.fold[mine].iloc[0]).to_numpy()  # the other prompts of the same held-out fold
        assert again.calibrated[others].tolist() == fitted.calibrated[others].tolist(), slot
