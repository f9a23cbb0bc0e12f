"""Generation in two processes on the CPU (gloo), on the TinyStories-1M shape and 40 prompts of the workbook's set:
under `--launch torchrun` and under `accelerate launch --multi_gpu` the merged completions equal one process's token
for token; a killed rank fails the run within a minute and a rerun (two processes, or one) generates only what is
missing; a rank's own error fails the run with that error; mistakes in the launcher's flags are one line."""
import csv, os, re, signal, subprocess, sys, time
from pathlib import Path

import pytest

from support import offline_environment, tinyscale_command
from tinyscale.core import append_jsonl, read_jsonl
from tinyscale.distributed import shard_folder, shard_path
from tinyscale.prompts import load_prompts

PROMPTS = 40
RUN = "two"
FLAGS = ["--max-new-tokens", "24", "--batch-size", "4", "--run", RUN, "--no-progress"]  # 10 batches, 5 per rank
TIMEOUT = 240  # seconds for one command; a 2-core machine may be busy with something else


def write_prompts(path, prompts):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "category", "prompt", "expected", "source_id"])
        writer.writerows((p.id, p.category, p.prompt, p.expected, p.source_id) for p in prompts)


@pytest.fixture(scope="module")
def work(tmp_path_factory, fixture_models):
    "A folder with a 40-prompt CSV; `work.model` is the 1M fixture."
    folder = tmp_path_factory.mktemp("distributed")
    write_prompts(folder/"prompts.csv", load_prompts()[:PROMPTS])
    return folder


def generate_args(model, work, out, *extra):
    return ["generate", "--model", str(model), "--prompts", str(work/"prompts.csv"), "--out", str(out), *FLAGS, *extra]


def run(command, work, timeout=TIMEOUT):
    "Run `command` (a launcher's or `tinyscale_command`) in `work`, offline, with one CPU thread per process."
    return subprocess.run(command, env=offline_environment(work, OMP_NUM_THREADS=1), cwd=work, capture_output=True,
                          text=True, timeout=timeout)


def script():
    "The `tinyscale` console script, as the documented launcher commands name it."
    path = Path(sys.executable).parent/"tinyscale"
    assert path.is_file(), f"no console script at {path}"
    return str(path)


def texts(path):
    "completion_id -> (completion, completion_raw) of a run file, checking that no completion appears twice."
    rows = read_jsonl(path)
    assert len({r["completion_id"] for r in rows}) == len(rows), "a completion appears twice"
    return {r["completion_id"]: (r["completion"], r["completion_raw"]) for r in rows}


@pytest.fixture(scope="module")
def single(work, fixture_models):
    "The run file of one process (plain `tinyscale generate`)."
    done = run(tinyscale_command(*generate_args(fixture_models, work, work/"single")), work)
    assert done.returncode == 0, done.stderr
    assert f"{PROMPTS} written, 0 already there" in done.stdout
    assert "tinyscale: rank" not in done.stderr
    return work/"single"/f"{RUN}.jsonl"


def rank_lines(stderr):
    "pid of each rank from the line each rank writes when it joins."
    return {int(rank): int(pid) for rank, pid in re.findall(r"tinyscale: rank (\d+) of 2 [^\n]*?, pid (\d+): cpu, gloo, 1 CPU thread", stderr)}


def check_two_ranks_equal_one_process(done, out, single):
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(rank_lines(done.stderr)) == {0, 1} and len(set(rank_lines(done.stderr).values())) == 2
    merged = re.search(r"merged 40 completions from 2 shards \(rank-0-of-2: (\d+), rank-1-of-2: (\d+)\)", done.stdout)
    assert merged and min(int(merged[1]), int(merged[2])) > 0, done.stdout  # both ranks wrote completions
    assert f"{PROMPTS} written, 0 already there" in done.stdout and "on 2 ranks" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"{RUN}.jsonl"]  # shards merged and removed
    rows = read_jsonl(out/f"{RUN}.jsonl")
    assert sorted(r["prompt_id"] for r in rows) == sorted(p.id for p in load_prompts()[:PROMPTS])  # every prompt once
    assert texts(out/f"{RUN}.jsonl") == texts(single)  # token for token


def test_two_ranks_under_torchrun_equal_one_process(work, fixture_models, single):
    out = work/"torchrun"
    done = run(tinyscale_command(*generate_args(fixture_models, work, out, "--launch", "torchrun", "--nproc", "2")), work)
    check_two_ranks_equal_one_process(done, out, single)


def test_two_ranks_under_accelerate_equal_one_process(work, fixture_models, single):
    out = work/"accelerate"
    accelerate = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    done = run([*accelerate, script(), *generate_args(fixture_models, work, out)], work)
    check_two_ranks_equal_one_process(done, out, single)


def wait_for(condition, process, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.005)


def test_a_killed_rank_fails_the_run_and_a_rerun_generates_only_what_is_missing(work, fixture_models, single):
    out = work/"killed"
    rank_1_shard = shard_path(out, RUN, 1, 2)
    with open(work/"killed.stderr", "w") as stderr:
        process = subprocess.Popen(tinyscale_command(*generate_args(fixture_models, work, out, "--launch", "torchrun", "--nproc", "2")),
                                   env=offline_environment(work, OMP_NUM_THREADS=1), cwd=work, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for(lambda: 1 in rank_lines((work/"killed.stderr").read_text()), process, TIMEOUT, "line from rank 1")
            wait_for(lambda: rank_1_shard.exists() and rank_1_shard.read_bytes().count(b"\n") > 0, process, TIMEOUT,
                     "batch in rank 1's shard")
            os.kill(rank_lines((work/"killed.stderr").read_text())[1], signal.SIGKILL)
            killed_at = time.monotonic()
            status = process.wait(timeout=60)
            seconds = time.monotonic() - killed_at
        finally:
            process.kill()
            process.wait(timeout=30)
    assert status != 0 and seconds < 60, (status, seconds)
    assert "torchrun exited with status" in (work/"killed.stderr").read_text()
    left = {r["completion_id"]: r for shard in sorted(shard_folder(out, RUN).glob("*.jsonl")) for r in read_jsonl(shard)}
    assert 0 < len(read_jsonl(rank_1_shard)) < PROMPTS // 2, "rank 1 was not killed mid-run"
    assert not (out/f"{RUN}.jsonl").exists()  # nothing merged from a failed run

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = run([*torchrun, script(), "--", *generate_args(fixture_models, work, out)], work)  # the documented form
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"merged {len(left)} completions left in" in done.stderr
    assert f"{PROMPTS - len(left)} written, {len(left)} already there" in done.stdout
    rows = {r["completion_id"]: r for r in read_jsonl(out/f"{RUN}.jsonl")}
    assert all(rows[cid] == record for cid, record in left.items())  # what the killed run wrote is kept as it was
    assert texts(out/f"{RUN}.jsonl") == texts(single)
    assert sorted(p.name for p in out.iterdir()) == [f"{RUN}.jsonl"]


def test_one_process_completes_what_a_killed_distributed_run_left(work, fixture_models, single):
    "Shards of a killed run (one ending in a torn line) count as done in a plain single-process rerun."
    out, rows = work/"resumed-alone", read_jsonl(single)
    append_jsonl(shard_path(out, RUN, 0, 2), rows[:12])
    append_jsonl(shard_path(out, RUN, 1, 2), rows[20:28])
    with open(shard_path(out, RUN, 1, 2), "ab") as f: f.write(b'{"completion_id": "cut short')
    done = run(tinyscale_command(*generate_args(fixture_models, work, out)), work)
    assert done.returncode == 0, done.stderr
    assert "merged 20 completions left in" in done.stderr and "tinyscale: rank" not in done.stderr
    assert f"{PROMPTS - 20} written, 20 already there" in done.stdout
    final = {r["completion_id"]: r for r in read_jsonl(out/f"{RUN}.jsonl")}
    assert all(final[r["completion_id"]] == r for r in rows[:12] + rows[20:28])
    assert texts(out/f"{RUN}.jsonl") == texts(single)
    assert not shard_folder(out, RUN).exists()


def test_a_failing_rank_fails_the_run_with_its_error(work, fixture_models):
    "Rank 1 cannot write its shard (a folder stands in its place): the run stops at once and says why."
    out = work/"failing"
    shard_path(out, RUN, 1, 2).mkdir(parents=True)
    started = time.monotonic()
    done = run(tinyscale_command(*generate_args(fixture_models, work, out, "--launch", "torchrun", "--nproc", "2")), work)
    assert done.returncode == 1 and time.monotonic() - started < 120
    assert re.search(r"IsADirectoryError: .*rank-1-of-2\.jsonl", done.stderr), done.stderr[-3000:]
    assert done.stderr.strip().endswith("rerunning completes only what is missing")
    assert not (out/f"{RUN}.jsonl").exists()


@pytest.mark.parametrize("extra, message", [
    (["--nproc", "2"], "--nproc: only with --launch torchrun"),
    (["--launch", "torchrun", "--nproc", "0"], "--nproc 0: must be at least 1"),
    (["--launch", "torchrun", "--nproc", "2", "--nnodes", "2"], "--nnodes: several machines need --rdzv-endpoint"),
    (["--launch", "torchrun", "--nproc", "2", "--rdzv-endpoint", "localhost:0"], "--rdzv-endpoint 'localhost:0': expected HOST:PORT with a port from 1 to 65535"),
    (["--launch", "torchrun", "--nproc", "2", "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    (["--timeout", "0"], "--timeout 0: must be more than 0 minutes"),
])
def test_launcher_mistakes_are_one_line_and_start_nothing(cli, fixture_models, work, tmp_path, extra, message):
    status, _, err = cli(*generate_args(fixture_models, work, tmp_path/"out", *extra))
    assert status == 1 and err.startswith(f"tinyscale: error: {message}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path/"out").exists()


def test_launch_inside_a_launched_process_is_refused(cli, fixture_models, work, tmp_path, monkeypatch):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    status, _, err = cli(*generate_args(fixture_models, work, tmp_path/"out", "--launch", "torchrun", "--nproc", "2"))
    assert status == 1 and "already rank 1 of 2" in err


def test_a_run_file_another_generate_writes_is_refused_before_launching(cli, fixture_models, work, tmp_path):
    "The launcher holds the run file's lock as a one-process generate does: while another holds it, nothing starts."
    from tinyscale.generate import run_lock
    out = tmp_path/"out"
    with run_lock(out/f"{RUN}.jsonl"):
        status, _, err = cli(*generate_args(fixture_models, work, out, "--launch", "torchrun", "--nproc", "2"))
        alone, _, alone_err = cli(*generate_args(fixture_models, work, out))
    assert (status, alone) == (1, 1)
    for message in (err, alone_err): assert "is writing this run; wait for it to finish" in message
    assert not out.exists() or not any(out.iterdir())  # no completions, no shards, no lock left
