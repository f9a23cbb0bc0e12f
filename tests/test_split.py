"""The fixed dev/test split by prompt on `tinyscale judge` and `tinyscale agreement`, and several judge raters compared
side by side by `tinyscale agreement --b JUDGE1 --b JUDGE2`, end to end in a scratch workbook."""
import csv, io, json, re

import numpy as np
import pytest

from judge_support import make_workbook
from tinyscale.agreement import COMPARISON_COLUMNS, in_split, paired_scores, prompt_slot, split_of
from tinyscale.completions import load_completions
from tinyscale.rubric import load_rubric
from tinyscale.store import ScoreStore

RATERS = ("judge:v1", "judge:v2")


@pytest.fixture
def workbook(tmp_path, monkeypatch):
    """Two models' completions of 4 prompts per category; `ana` scores all but the first completion, two judge versions
    score everything (v2 closer to ana), and `judge:lonely` scores only the completion ana left out."""
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    make_workbook(tmp_path, per_category=4)
    make_workbook(tmp_path, per_category=4, model="fixture/TinyStories-8M")  # appends to the same run file
    completions = load_completions(tmp_path / "data" / "completions")
    store = ScoreStore(tmp_path / "scores", completions=completions)
    rng, rubric = np.random.default_rng(0), load_rubric()
    scores = {name: [] for name in ("ana", *RATERS, "judge:lonely")}
    for i, c in enumerate(completions.itertuples()):
        for criterion in rubric.for_category(c.category):
            score = float(rng.choice([0.0, 0.5, 1.0]))
            row = lambda s: dict(completion_id=c.completion_id, criterion=criterion.label, score=s)
            if i == 0:
                scores["judge:lonely"].append(row(score)); continue
            scores["ana"].append(row(score))
            for name, keep in zip(RATERS, (0.5, 0.8)):
                scores[name].append(row(score if rng.random() < keep else float(rng.choice([0.0, 0.5, 1.0]))))
    for name, rows in scores.items(): store.set_scores(rows, rater=name, source="manual" if name == "ana" else name)
    return tmp_path, store, completions


def agreement(cli_process, root, *args):
    return cli_process("agreement", "--a", "ana", *args, "--resamples", "200", root=root, timeout=120)


def test_judge_split_judges_one_side_of_the_prompts(cli_process, workbook):
    root, _, completions = workbook
    judged = {}
    for side in ("dev", "test"):
        result = cli_process("judge", "--backend", "openai", "--model", "my-vllm-model", "--base-url", "http://127.0.0.1:9/v1",
                             "--dry-run", "--split", side, root=root, timeout=120)
        assert result.status == 0, result.err
        judged[side] = set(re.findall(r"^===== (\S+) · ", result.out, re.M))
        assert f"dry run: {len(judged[side])} call(s)" in result.out
    side_of = dict(zip(completions.completion_id, split_of(prompt_slot(completions))))
    assert judged["dev"] and judged["test"] and not judged["dev"] & judged["test"]
    assert judged["dev"] | judged["test"] == set(completions.completion_id)
    assert all(side_of[c] == side for side, ids in judged.items() for c in ids)
    per_prompt = completions.assign(side=completions.completion_id.map(side_of)).groupby("prompt_id").side.nunique()
    assert per_prompt.max() == 1 and len(completions) == 2 * len(per_prompt)  # both models' completions of a prompt, one side


def test_agreement_split_measures_one_side_and_says_which(cli_process, workbook):
    root, store, _ = workbook
    pairs = paired_scores(store.current(), "ana", "judge:v1")
    n = {}
    for side in ("dev", "test"):
        result = agreement(cli_process, root, "--b", "judge:v1", "--split", side, "--format", "csv")
        assert result.status == 0, result.err
        n[side] = int(next(csv.DictReader(io.StringIO(result.out)))["n"])
        assert n[side] == len(in_split(pairs, side))
    assert n["dev"] > 0 and n["test"] > 0 and n["dev"] + n["test"] == len(pairs)
    markdown = agreement(cli_process, root, "--b", "judge:v1", "--split", "test").out
    assert markdown.split("\n\n")[2].startswith("Measured on the test prompts only (")
    assert json.loads(agreement(cli_process, root, "--b", "judge:v1", "--split", "dev", "--format", "json").out)["split"] == "dev"
    everything = agreement(cli_process, root, "--b", "judge:v1").out
    assert "Measured on the" not in everything
    assert json.loads(agreement(cli_process, root, "--b", "judge:v1", "--format", "json").out)["split"] is None


def test_several_judges_side_by_side(cli_process, workbook):
    root, _, _ = workbook
    result = agreement(cli_process, root, "--b", "judge:v1", "--b", "judge:v2", "--format", "csv")
    assert result.status == 0, result.err
    assert tuple(next(csv.reader(io.StringIO(result.out)))) == COMPARISON_COLUMNS
    lines = result.out.splitlines()[1:]
    assert len(lines) == 2 * 7  # overall and six categories per rater
    for name in RATERS:  # each rater's rows are exactly its own report's, criterion rows left out
        alone = agreement(cli_process, root, "--b", name, "--format", "csv").out.splitlines()[1:8]
        assert [line.split(",", 1)[1] for line in lines if line.startswith(name + ",")] == alone
    markdown = agreement(cli_process, root, "--b", "judge:v1", "--b", "judge:v2").out
    assert markdown.startswith("# Agreement: ana vs judge:v1, judge:v2\n\n")
    rows = [line for line in markdown.splitlines() if line.startswith("| All criteria |")]
    assert [row.split(" | ")[1] for row in rows] == list(RATERS)
    assert "baseline exact" in markdown and "kappa_w" in markdown
    data = json.loads(agreement(cli_process, root, "--b", "judge:v1", "--b", "judge:v2", "--split", "dev", "--format", "json").out)
    assert (data["b"], data["split"], len(data["side_by_side"])) == (list(RATERS), "dev", 14)
    assert set(data["headlines"]) == set(RATERS)


def test_bad_split_and_judges_without_pairs_are_one_line(cli_process, workbook):
    root, _, _ = workbook
    for args in (("agreement", "--a", "ana", "--b", "judge:v1", "--split", "final"),
                 ("judge", "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--dry-run", "--split", "final")):
        result = cli_process(*args, root=root, timeout=120)
        assert result.status == 1 and result.err.strip() == "tinyscale: error: --split 'final': use one of dev, test"
    lonely = agreement(cli_process, root, "--b", "judge:v1", "--b", "judge:lonely")
    assert lonely.status == 1
    assert lonely.err.strip() == "tinyscale: error: raters 'ana' and 'judge:lonely' have no (completion, criterion) scored by both"
    twice = agreement(cli_process, root, "--b", "judge:v1", "--b", "judge:v1")
    assert twice.status == 1 and twice.err.strip() == "tinyscale: error: --b 'judge:v1' is given twice: name each rater once"
