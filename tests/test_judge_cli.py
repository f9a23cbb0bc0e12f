"""`tinyscale judge` end to end in a scratch workbook: dry run, summary and failures, resume after SIGKILL, no key on disk."""
import os, signal, subprocess, time

import pytest

from judge_support import APIS, KEYS, MODELS, files_containing, key_environment, make_workbook
from support import tinyscale_command
from tinyscale.core import append_jsonl, read_jsonl
from tinyscale.fake_judge import FakeJudgeServer
from tinyscale.judge import Judge
from tinyscale.judge_backends import make_backend

def judge_args(api, server, *extra):
    return ["judge", "--backend", api, "--model", MODELS[api], "--base-url", server.url, "--no-progress", "--backoff", "0.01", *extra]


def test_dry_run_prints_prompts_and_cost_and_calls_nothing(cli_process, tmp_path):
    make_workbook(tmp_path)
    result = cli_process("judge", "--backend", "gemini", "--model", "gemini-2.5-flash", "--dry-run", "--limit", "3",
                         root=tmp_path, timeout=120)
    assert result.status == 0, result.err
    assert result.out.count("===== ") == 3 and result.out.count("## Story opening") == 3
    assert "dry run: 3 call(s) to gemini gemini-2.5-flash (0 already judged" in result.out
    assert "estimated cost: $" in result.out and "prices as of" in result.out
    assert not (tmp_path / "data" / "judge-cache").exists() and not (tmp_path / "scores").exists()


def test_dry_run_of_an_unpriced_model_says_so(cli_process, tmp_path):
    make_workbook(tmp_path)
    result = cli_process("judge", "--backend", "openai", "--model", "my-vllm-model", "--base-url", "http://127.0.0.1:9/v1", "--dry-run",
                         root=tmp_path, timeout=120)
    assert result.status == 0, result.err
    assert "dry run: 12 call(s)" in result.out and "estimated cost: unknown (no price for this model" in result.out


def test_missing_key_is_one_clear_line(cli_process, tmp_path):
    make_workbook(tmp_path)
    result = cli_process("judge", "--backend", "anthropic", "--model", "claude-haiku-4-5", root=tmp_path, timeout=120)
    assert result.status == 1
    assert result.err.strip() == "tinyscale: error: --backend anthropic: set ANTHROPIC_API_KEY in the environment (keys are read only from there)"


@pytest.mark.parametrize("args, message", [
    (["--price-in", "1"], "--price-in and --price-out go together"),
    (["--concurrency", "0"], "--concurrency 0: give at least 1"),
    (["--category", "Poetry"], "--category 'Poetry'"),
    (["--completions", "nope.jsonl"], "--completions nope.jsonl: no such file or folder"),
    (["--template-version", "9"], "no template set version 9"),
])
def test_bad_arguments(cli_process, tmp_path, args, message):
    make_workbook(tmp_path)
    result = cli_process("judge", "--backend", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", *args,
                         root=tmp_path, timeout=120)
    assert result.status == 1 and message in result.err and "Traceback" not in result.err


def test_completions_file_judges_that_files_completions(cli_process, tmp_path):
    make_workbook(tmp_path)
    picked = read_jsonl(tmp_path / "data" / "completions" / "fixture.jsonl")[::4]  # 3 of the workbook's 12 completions
    append_jsonl(tmp_path / "picked.jsonl", picked)
    with FakeJudgeServer("openai") as server:
        result = cli_process(*judge_args("openai", server, "--completions", "picked.jsonl"),
                             root=tmp_path, env=key_environment(tmp_path, ["openai"]), timeout=120)
    assert result.status == 0, result.err
    assert "judge:gpt-4o-mini: 3 completion(s); judged now 3, from cache 0, without scores 0; 3 request(s)" in result.out
    assert server.requests == 3
    wanted = {r["completion_id"] for r in picked}
    assert {r["completion_id"] for r in read_jsonl(tmp_path / "data" / "judge-cache" / "openai_gpt-4o-mini.jsonl")} == wanted
    assert {e["completion_id"] for e in read_jsonl(tmp_path / "scores" / "judge_gpt-4o-mini.jsonl")} == wanted


def test_run_summary_lists_failures_and_cost(cli_process, tmp_path):
    make_workbook(tmp_path)
    with FakeJudgeServer("openai", faults=["malformed", "malformed"]) as server:
        result = cli_process(*judge_args("openai", server, "--category", "Grammar", "--category", "Plot", "--concurrency", "1"),
                             root=tmp_path, env=key_environment(tmp_path, ["openai"]), timeout=120)
    assert result.status == 1 and "1 of 4 judgment(s) failed: 1 parse failure" in result.err, result.err
    assert "judge:gpt-4o-mini: 4 completion(s); judged now 4, from cache 0, without scores 1; 5 request(s); cost $" in result.out
    assert "scores: 13 event(s) written to" in result.out  # 1 Grammar (5 criteria) + 2 Plot (4 each) completions scored
    failed = [line for line in result.out.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "parse_failure: no JSON object" in failed[0]
    assert "add --retry-failed" in result.out


def test_resume_after_a_killed_run_pays_nothing_twice(cli_process, tmp_path, monkeypatch):
    completions = make_workbook(tmp_path)
    cache_file = tmp_path / "data" / "judge-cache" / "openai_gpt-4o-mini.jsonl"
    with FakeJudgeServer("openai", delay=0.25) as server:
        process = subprocess.Popen(tinyscale_command(*judge_args("openai", server, "--concurrency", "1")), cwd=tmp_path,
                                   env=key_environment(tmp_path, ["openai"], TINYSCALE_ROOT=tmp_path),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while server.requests < 5 and process.poll() is None and time.monotonic() < deadline: time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        sent_before_kill = server.requests
        cached = read_jsonl(cache_file)
        assert 4 <= len(cached) <= sent_before_kill <= 6  # at most the answer in flight was lost
        result = cli_process(*judge_args("openai", server, "--concurrency", "1"),
                             root=tmp_path, env=key_environment(tmp_path, ["openai"]), timeout=120)
        assert result.status == 0, result.err
        second_bodies = server.bodies[sent_before_kill:]
    assert len(second_bodies) == 12 - len(cached)
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    planned = Judge(make_backend("openai", MODELS["openai"], base_url="http://127.0.0.1:9/v1")).plan(completions)[0]
    completion_of = {r.prompt: r.completion["completion_id"] for r in planned}
    asked_again = {completion_of[body["messages"][0]["content"]] for body in second_bodies}
    assert asked_again.isdisjoint({r["completion_id"] for r in cached})
    records = read_jsonl(cache_file)
    assert len(records) == 12 and {r["status"] for r in records} == {"ok"}
    events = read_jsonl(tmp_path / "scores" / "judge_gpt-4o-mini.jsonl")
    assert len(events) == 36 and len({(e["completion_id"], e["criterion"]) for e in events}) == 36
    # the server's address is not part of the cache key: another port finds the same judgments
    again = cli_process("judge", "--backend", "openai", "--model", MODELS["openai"], "--base-url", "http://127.0.0.1:9/v1", "--dry-run",
                        root=tmp_path, timeout=120)
    assert "dry run: 0 call(s)" in again.out and "(12 already judged" in again.out


@pytest.mark.parametrize("api", APIS)
def test_no_key_in_any_written_file_or_output(cli_process, tmp_path, api):
    make_workbook(tmp_path)
    with FakeJudgeServer(api, faults=["echo-key", "429", "500", "timeout", "malformed", "malformed"], hang=1.5) as server:
        result = cli_process(*judge_args(api, server, "--concurrency", "1", "--timeout", "0.5"),
                             root=tmp_path, env=key_environment(tmp_path, APIS), timeout=120)
    assert result.status == 1 and "2 of 12 judgment(s) failed" in result.err, result.err
    assert "without scores 2" in result.out
    assert files_containing(tmp_path, KEYS.values()) == []
    assert not any(key in result.out + result.err for key in KEYS.values())
    records = read_jsonl(next((tmp_path / "data" / "judge-cache").glob("*.jsonl")))
    assert any("***" in (r["problem"] or "") for r in records)


def test_ctrl_c_stops_cleanly_and_keeps_every_paid_answer(tmp_path):
    make_workbook(tmp_path)
    cache_file = tmp_path / "data" / "judge-cache" / "openai_gpt-4o-mini.jsonl"
    with FakeJudgeServer("openai", delay=0.6) as server:
        process = subprocess.Popen(tinyscale_command(*judge_args("openai", server, "--concurrency", "2")), cwd=tmp_path,
                                   env=key_environment(tmp_path, ["openai"], TINYSCALE_ROOT=tmp_path),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while server.requests < 3 and process.poll() is None and time.monotonic() < deadline: time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        time.sleep(0.2)
        sent = server.requests
    assert process.returncode == 130 and "tinyscale: interrupted" in stderr
    assert 3 <= sent < 12
    # the requests in flight at Ctrl-C were answered and cached; nothing was started after it
    assert len(read_jsonl(cache_file)) == sent
