"""Few-shot examples of a rater's scores (`tinyscale judge --examples K --examples-from RATER`): keys without examples unchanged,
examples balanced and never of the judged prompt, their ids recorded, the prompts shown left out of agreement, bad input refused."""
import json

import pytest

from judge_support import MODELS, key_environment, make_workbook
from tinyscale.agreement import compare_raters, examples_path, prompt_slot
from tinyscale.core import canonical_json, read_jsonl, text_hash
from tinyscale.fake_judge import FakeJudgeServer
from tinyscale.judge import Judge, JudgeCache, few_shot
from tinyscale.judge_backends import make_backend
from tinyscale.judge_templates import load_templates
from tinyscale.store import ScoreStore

LEVELS = (0.0, 0.5, 1.0)


def few_shot_workbook(root, per_category=4):
    "A workbook with a version 4 template set that has `{{examples}}`, and `ana`'s scores of every completion (one level each)."
    frame = make_workbook(root, per_category=per_category)
    judge = root/"data"/"judge"
    for path in judge.glob("*.v3.md"):
        text = path.read_text()
        if not path.name.startswith("repair."): text = text.replace("## Story opening", "{{examples}}\n\n## Story opening")
        (judge/path.name.replace(".v3.", ".v4.")).write_text(text)
    store = ScoreStore(root/"scores", completions=frame)
    store.set_scores([dict(completion_id=r.completion_id, criterion=label, score=LEVELS[number % 3])
                      for number, r in enumerate(frame.itertuples()) for label in store._criteria[r.category]], rater="ana")
    return frame


def judge_args(server, *extra):
    return ["judge", "--backend", "openai", "--model", MODELS["openai"], "--base-url", server.url, "--no-progress", "--backoff", "0.01",
            "--store", "scores", "--completions", "data/completions", *extra]


def test_keys_and_prompts_without_examples_are_as_before(tmp_path):
    frame = make_workbook(tmp_path)
    backend = make_backend("openai", "fake-judge", base_url="http://127.0.0.1:9/v1")
    templates = load_templates(folder=tmp_path/"data"/"judge")
    judge = Judge(backend, templates, JudgeCache(tmp_path/"cache.jsonl"), expected={})
    for record in frame.to_dict("records"):
        request = judge._request_for(record)
        template = templates[record["category"]]
        assert request.prompt == template.render(record) == template.render(record, "", [])
        # the key as it was computed before examples existed: six parts, no seventh
        old_key = text_hash(canonical_json([backend.name, backend.model, template.hash, record["completion_id"], backend.params,
                                            text_hash(canonical_json([{"role": "user", "content": template.render(record)}]))]), 24)
        assert request.key == old_key and request.examples == []


def test_examples_are_balanced_recorded_and_left_out(cli_process, tmp_path):
    frame = few_shot_workbook(tmp_path)
    with FakeJudgeServer("openai") as server:
        result = cli_process(*judge_args(server, "--examples", "2", "--examples-from", "ana", "--category", "Plot", "--category", "Grammar"),
                             root=tmp_path, env=key_environment(tmp_path, ["openai"]), timeout=120)
        assert result.status == 0, result.err
        records = read_jsonl(tmp_path/"data"/"judge-cache"/"openai_gpt-4o-mini.jsonl")
        prompt_of = dict(zip(frame.completion_id, frame.prompt_id))
        level_of = {r.completion_id: LEVELS[i % 3] for i, r in enumerate(frame.itertuples())}
        assert len(records) == 8 and {r["template"].split(".")[1] for r in records} == {"v4"}
        for record in records:
            assert len(record["examples"]) == 2
            assert prompt_of[record["completion_id"]] not in {prompt_of[e] for e in record["examples"]}  # never of the judged prompt
            assert len({prompt_of[e] for e in record["examples"]}) == 2
            assert len({level_of[e] for e in record["examples"]}) == 2  # two levels for two examples
        # the rerun finds every judgment in the cache: same examples, same keys
        again = cli_process(*judge_args(server, "--examples", "2", "--examples-from", "ana", "--category", "Plot", "--category", "Grammar"),
                            root=tmp_path, env=key_environment(tmp_path, ["openai"]), timeout=120)
        assert again.status == 0 and "judged now 0, from cache 8" in again.out, again.out + again.err
    shown = {prompt_of[e] for r in records for e in r["examples"]}
    manifest = read_jsonl(examples_path(tmp_path/"scores", "judge:gpt-4o-mini"))
    assert len(manifest) == 8 and {e["prompt_id"] for line in manifest for e in line["examples"]} == shown
    report = cli_process("agreement", "--a", "ana", "--b", "judge:gpt-4o-mini", "--store", "scores", "--completions", "data/completions",
                         root=tmp_path, timeout=120)
    assert report.status == 0, report.err
    agreement = compare_raters(ScoreStore(tmp_path/"scores", completions=frame), "ana", "judge:gpt-4o-mini")
    assert set(agreement.pairs.prompt_id) & shown == set()  # no measured item's prompt served as an example
    left = agreement.left_out
    assert left["prompts"] == len(shown) and left["completions"] == frame[frame.prompt_id.isin(shown) & frame.category.isin(["Plot", "Grammar"])].shape[0]
    assert f"Left out {left['completions']} completion(s) of {left['prompts']} prompt slot(s)" in report.out
    as_json = cli_process("agreement", "--a", "ana", "--b", "judge:gpt-4o-mini", "--store", "scores", "--completions", "data/completions",
                          "--format", "json", root=tmp_path, timeout=120)
    assert json.loads(as_json.out)["examples_left_out"]["prompts"] == len(shown)


@pytest.mark.parametrize("args, message", [
    (["--examples", "-1", "--examples-from", "ana"], "--examples -1: must be 0 or more"),
    (["--examples", "2"], "--examples 2: name whose scores are shown with --examples-from RATER"),
    (["--examples-from", "ana"], "--examples-from ana: give --examples K"),
    (["--examples", "2", "--examples-from", "ana", "--template-version", "3"], ".v3.md: no {{examples}} placeholder, so it cannot show 2 example(s)"),
    (["--examples", "2", "--examples-from", "judge:x"], "--examples-from judge:x: examples are a person's own scores"),
    (["--examples", "4", "--examples-from", "ana"], "--examples 4: ana scored only 3"),
])
def test_bad_input_is_one_line_and_writes_nothing(cli_process, tmp_path, args, message):
    few_shot_workbook(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with FakeJudgeServer("openai") as server:
        result = cli_process(*judge_args(server, *args), root=tmp_path, env=key_environment(tmp_path, ["openai"]), timeout=120)
        assert server.requests == 0
    assert result.status == 1 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
