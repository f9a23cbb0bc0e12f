"""Each API backend driven through its real SDK against a fake server on 127.0.0.1: request shape, parsing,
backoff on 429, 500s up to the retry limit, timeouts, malformed answers, the concurrency cap, the cache."""
import re

import pytest

from judge_support import ALL_KEY_VARIABLES, APIS, KEY_VARIABLES, KEYS, MODELS, files_containing, make_workbook
from tinyscale.core import TinyscaleError
from tinyscale.fake_judge import FAKE_MODEL_VERSION, FakeJudgeServer, fake_judge_answer
from tinyscale.judge import Judge
from tinyscale.judge_backends import PRICES_AS_OF, RetryPolicy, make_backend
from tinyscale.judge_templates import parse_judgment
from tinyscale.store import ScoreStore


@pytest.fixture
def workbook(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    for name in ALL_KEY_VARIABLES: monkeypatch.delenv(name, raising=False)
    for api in APIS: monkeypatch.setenv(KEY_VARIABLES[api], KEYS[api])
    return tmp_path, make_workbook(tmp_path)


def make_judge(api, server, timeout=5.0, **kwargs):
    kwargs.setdefault("retry", RetryPolicy(max_retries=3, base_delay=0.01))
    return Judge(make_backend(api, MODELS[api], base_url=server.url, timeout=timeout), **kwargs)


def conversation(api, body):
    """The (role, text) turns of a request body."""
    if api == "gemini": return [(c["role"], "".join(p["text"] for p in c["parts"])) for c in body["contents"]]
    return [(m["role"], m["content"] if isinstance(m["content"], str) else "".join(b["text"] for b in m["content"])) for m in body["messages"]]


@pytest.mark.parametrize("api", APIS)
def test_request_shape_parsing_and_store(api, workbook):
    root, completions = workbook
    part = completions.iloc[:4]
    store = ScoreStore(root / "scores", completions=completions)
    with FakeJudgeServer(api) as server:
        judge = make_judge(api, server, concurrency=1)
        result = judge.run(part, store, progress=False)
    assert (result.called, result.failed, server.requests) == (4, 0, 4)
    planned = {r.completion["completion_id"]: r for r in judge.plan(part)[0]}
    prompts = {r.prompt for r in planned.values()}
    for path, headers, body in zip(server.paths, server.headers, server.bodies):
        turns = conversation(api, body)
        assert len(turns) == 1 and turns[0][0] == "user" and turns[0][1] in prompts
        if api == "anthropic":
            assert path == "/v1/messages"
            assert KEYS[api] in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
            assert headers.get("anthropic-version")
            assert body["model"] == MODELS[api] and body["max_tokens"] == 2048
            assert "temperature" not in body  # the 2026-10-21 Messages API refuses sampling parameters
        elif api == "openai":
            assert path == "/v1/chat/completions"
            assert headers["authorization"] == f"Bearer {KEYS[api]}"
            assert body["model"] == MODELS[api] and body["temperature"] == 0 and body["max_tokens"] == 2048
        else:
            assert re.fullmatch(rf"/v1(beta)?/models/{MODELS[api]}:generateContent", path), path
            assert headers["x-goog-api-key"] == KEYS[api]
            assert body["generationConfig"] == {"temperature": 0, "maxOutputTokens": 2048}
    for record in result.records:
        request = planned[record["completion_id"]]
        expected = parse_judgment(fake_judge_answer(request.prompt), request.template.labels)
        assert record["status"] == "ok"
        assert record["scores"] == {label: score for label, (score, _) in expected.items()}
        assert record["explanations"] == {label: text for label, (_, text) in expected.items()}
        assert record["judge_version"].startswith(FAKE_MODEL_VERSION)
        assert (record["template"], record["template_hash"]) == (request.template.name, request.template.hash)
        assert record["input_tokens"] > 0 and record["output_tokens"] > 0
        assert record["cost_usd"] > 0 and record["prices_as_of"] == PRICES_AS_OF
        assert record["answers"] and record["requests"] == 1
    current = store.current(f"judge:{MODELS[api]}")
    assert len(current) == sum(len(judge.templates[c].labels) for c in part.category)
    assert set(current.source) == {f"judge:{MODELS[api]}"}
    by_record = {(r["completion_id"], label): (score, r["explanations"][label]) for r in result.records for label, score in r["scores"].items()}
    assert {(r.completion_id, r.criterion): (r.score, r.note) for r in current.itertuples()} == by_record


@pytest.mark.parametrize("api", APIS)
def test_429_then_success_waits_the_backoff(api, workbook):
    _, completions = workbook
    with FakeJudgeServer(api, faults=["429"]) as server:
        judge = make_judge(api, server, concurrency=1, retry=RetryPolicy(max_retries=2, base_delay=0.3, jitter=0.5))
        result = judge.run(completions.iloc[:1], progress=False)
    assert server.statuses == [429, 200]
    assert server.times[1] - server.times[0] >= 0.15  # at least the non-random half of the first wait
    record = result.records[0]
    assert (record["status"], record["requests"], record["retries"]) == ("ok", 2, ["rate limited (429)"])


@pytest.mark.parametrize("api", APIS)
def test_retry_after_header_is_honoured(api, workbook):
    _, completions = workbook
    with FakeJudgeServer(api, faults=["429"], retry_after=0.5) as server:
        judge = make_judge(api, server, concurrency=1, retry=RetryPolicy(max_retries=2, base_delay=0.01))
        result = judge.run(completions.iloc[:1], progress=False)
    assert server.statuses == [429, 200] and result.failed == 0
    assert server.times[1] - server.times[0] >= 0.5


@pytest.mark.parametrize("api", APIS)
def test_500s_until_the_retry_limit_record_a_failure_and_the_run_goes_on(api, workbook):
    root, completions = workbook
    part = completions.iloc[:3]
    store = ScoreStore(root / "scores", completions=completions)
    with FakeJudgeServer(api, faults=["500"] * 3) as server:
        judge = make_judge(api, server, concurrency=1, retry=RetryPolicy(max_retries=2, base_delay=0.01))
        result = judge.run(part, store, progress=False)
        assert server.statuses[:3] == [500, 500, 500] and server.requests == 5
        failed = [r for r in result.records if r["status"] != "ok"]
        assert len(failed) == 1 and result.failed == 1
        assert failed[0]["status"] == "error" and failed[0]["scores"] == {} and failed[0]["answers"] == []
        assert failed[0]["problem"].startswith("server error (500) after 3 request(s)")
        assert failed[0]["retries"] == ["server error (500)"] * 3 and failed[0]["cost_usd"] == 0.0
        scored = set(store.current(judge.rater).completion_id)
        assert failed[0]["completion_id"] not in scored and len(scored) == 2
        # an error cost nothing and is retried by the next run; the others come from the cache
        again = judge.run(part, store, progress=False)
    assert (again.called, again.cached, again.failed, again.requests) == (1, 2, 0, 1)
    assert len(set(store.current(judge.rater).completion_id)) == 3


@pytest.mark.parametrize("api", APIS)
def test_a_timeout_is_retried(api, workbook):
    _, completions = workbook
    with FakeJudgeServer(api, faults=["timeout"], hang=2.0) as server:
        judge = make_judge(api, server, timeout=0.5, concurrency=1)
        result = judge.run(completions.iloc[:1], progress=False)
    record = result.records[0]
    assert server.requests == 2
    assert (record["status"], record["retries"]) == ("ok", ["timeout"])


@pytest.mark.parametrize("api", APIS)
def test_a_malformed_answer_is_retried_once_then_recorded_never_as_zero(api, workbook):
    root, completions = workbook
    store = ScoreStore(root / "scores", completions=completions)
    with FakeJudgeServer(api, faults=["malformed", "ok", "malformed", "malformed"]) as server:
        judge = make_judge(api, server, concurrency=1)
        result = judge.run(completions.iloc[:2], store, progress=False)
        repaired, failed = result.records
        assert (repaired["status"], repaired["requests"], len(repaired["answers"])) == ("ok", 2, 2)
        assert (failed["status"], failed["requests"], len(failed["answers"])) == ("parse_failure", 2, 2)
        assert failed["scores"] == {} and failed["problem"] == "no JSON object and no `A: score` lines found"
        assert all("liked it very much" in answer for answer in failed["answers"])
        # the repair request carries the bad answer and says what was wrong
        turns = conversation(api, server.bodies[1])
        assert [role for role, _ in turns] == ["user", "model" if api == "gemini" else "assistant", "user"]
        assert "liked it very much" in turns[1][1] and "could not be read" in turns[2][1]
        current = store.current(judge.rater)
        assert set(current.completion_id) == {repaired["completion_id"]}  # nothing recorded for the failure, not a 0
        # an unreadable answer was paid for: a rerun keeps it unless asked to retry it
        assert judge.run(completions.iloc[:2], store, progress=False).requests == 0
        judge.retry_failed = True
        retried = judge.run(completions.iloc[:2], store, progress=False)
    assert (retried.called, retried.failed) == (1, 0)


@pytest.mark.parametrize("api", APIS)
def test_the_concurrency_cap_is_never_exceeded(api, workbook):
    _, completions = workbook
    with FakeJudgeServer(api, delay=0.15) as server:
        judge = make_judge(api, server, concurrency=3)
        result = judge.run(completions, progress=False)
    assert result.called == len(completions) == 12 and result.failed == 0
    assert server.max_in_flight == 3


@pytest.mark.parametrize("api", APIS)
def test_the_second_run_makes_zero_requests(api, workbook):
    root, completions = workbook
    store = ScoreStore(root / "scores", completions=completions)
    with FakeJudgeServer(api) as server:
        first = make_judge(api, server).run(completions, store, progress=False)
        seen = server.requests
        second = make_judge(api, server).run(completions, store, progress=False)  # a new Judge reads the cache from disk
    assert seen == 12 and server.requests == 12
    assert (second.called, second.cached, second.requests, second.events, second.cost) == (0, 12, 0, 0, 0.0)
    assert first.events == len(store.events(f"judge:{MODELS[api]}")) == 36


@pytest.mark.parametrize("api", APIS)
def test_a_refused_key_stops_the_run(api, workbook):
    root, completions = workbook
    with FakeJudgeServer(api, faults=["401"] * 20) as server:
        judge = make_judge(api, server, concurrency=1)
        with pytest.raises(TinyscaleError, match=r"refused the request \(401\)"):
            judge.run(completions, ScoreStore(root / "scores", completions=completions), progress=False)
    assert server.requests == 1


@pytest.mark.parametrize("api", APIS)
def test_no_key_in_any_written_file(api, workbook):
    root, completions = workbook
    store = ScoreStore(root / "scores", completions=completions)
    with FakeJudgeServer(api, faults=["echo-key", "429", "500", "malformed", "malformed"]) as server:
        result = make_judge(api, server, concurrency=1).run(completions, store, progress=False)
    echoed = [r for r in result.records if r["status"] == "error"]
    assert len(echoed) == 1 and "***" in echoed[0]["problem"]  # the key the server quoted was scrubbed
    assert result.failed == 2 and len(store.current(f"judge:{MODELS[api]}")) > 0
    assert files_containing(root, KEYS.values()) == []
