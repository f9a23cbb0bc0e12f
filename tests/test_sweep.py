"""`tinyscale sweep` and `tinyscale probe` end to end on the fixture training run (a tiny Llama trained for 120 steps,
checkpoints 30, 60, 90 and 120): completions and manifest of every checkpoint, a SIGKILLed sweep that resumes without
duplicates or gaps, a checkpoint saved later picked up by the next call, the dry run, the judge hook, two processes
under torchrun, probes checked by hand, discovery of a hand-made Trainer folder, and bad input as one line."""
import csv, json, math, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

from tinyscale.cli import main
from tinyscale.core import read_jsonl
from tinyscale.distributed import WORKER_CODE
from tinyscale.prompts import load_prompts
from tinyscale.rubric import CATEGORIES

ROOT = Path(__file__).resolve().parents[1]
RUN = "fixture-run"
STEPS = [30, 60, 90, 120]
SETTINGS = ["--max-new-tokens", "24", "--batch-size", "2", "--device", "cpu", "--no-progress"]  # 6 batches a checkpoint
TIMEOUT = 300  # seconds for one subprocess on a busy 2-core machine


def two_per_category():
    prompts = load_prompts()
    return [p for category in CATEGORIES for p in [p for p in prompts if p.category == category][:2]]


def write_prompts(path, prompts):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "category", "prompt", "expected", "source_id"])
        writer.writerows((p.id, p.category, p.prompt, p.expected, p.source_id) for p in prompts)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    write_prompts(folder/"prompts.csv", two_per_category())
    return folder


@pytest.fixture(scope="module", autouse=True)
def weight_hash_cache(work):
    "Weight hashes go to this module's folder, never the home folder (module scope: before `swept` hashes)."
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TINYSCALE_CACHE", str(work/"cache"))
        yield work/"cache"


def sweep_args(run, work, out, sweeps, *extra, command="sweep"):
    settings = SETTINGS if command == "sweep" else [s for s in SETTINGS if s != "--no-progress"]  # probe shows no bar
    return [command, str(run), "--prompts", str(work/"prompts.csv"), "--completions", str(out), "--sweeps", str(sweeps),
            *settings, *extra]


def environment(work):
    launch = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launch and not k.startswith("TORCHELASTIC")}
    return dict(env, HF_HUB_OFFLINE="1", HF_HOME=str(work/"hf-home"), TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
                TINYSCALE_CACHE=str(work/"cache"))


def tinyscale(args):
    return [sys.executable, "-c", WORKER_CODE, *args]


def texts(path):
    "(model, prompt id) -> completion of a run file, checking that nothing appears twice."
    rows = read_jsonl(path)
    keys = [(r["model"], r["prompt_id"]) for r in rows]
    assert len(set(keys)) == len(keys) and len({r["completion_id"] for r in rows}) == len(rows), "a completion appears twice"
    return {(r["model"], r["prompt_id"]): r["completion"] for r in rows}


def run_file(out):
    files = sorted(Path(out).glob("sweep-*.jsonl"))
    assert len(files) == 1, files
    return files[0]


@pytest.fixture(scope="module")
def swept(work, fixture_run, weight_hash_cache):
    "One uninterrupted sweep of the fixture run in this process: (completions folder, sweeps folder, stdout)."
    import contextlib, io
    out, sweeps = work/"swept", work/"sweeps"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        status = main(sweep_args(fixture_run, work, out, sweeps))
    assert status == 0
    return out, sweeps, printed.getvalue()


def test_a_sweep_writes_every_checkpoints_completions_and_the_manifest(swept, fixture_run, weight_hash_cache):
    out, sweeps, printed = swept
    assert len(json.loads((weight_hash_cache/"weights-hashes.json").read_text())) == 4  # each checkpoint hashed, cached here
    for step in STEPS:
        assert f"{RUN}/checkpoint-{step} (step {step}, weights:" in printed
    assert printed.count("12 written, 0 already there") == 4
    assert f"manifest: {sweeps/RUN}.json" in printed
    rows = read_jsonl(run_file(out))
    assert len(rows) == 4 * 12 and len(texts(run_file(out))) == 48
    assert {r["training_run"] for r in rows} == {RUN}
    assert sorted({(r["checkpoint"], r["step"], r["tokens"]) for r in rows}, key=lambda t: t[1]) == \
        [(f"checkpoint-{s}", s, s * 16 * 64) for s in STEPS]
    assert {r["model"] for r in rows} == {f"{RUN}/checkpoint-{s}" for s in STEPS}
    first, last = ({r["prompt_id"]: r["completion"] for r in rows if r["step"] == s} for s in (30, 120))
    assert sum(first[k] != last[k] for k in first) >= 6, "the outputs do not change with training"

    manifest = json.loads((sweeps/f"{RUN}.json").read_text())
    assert list(manifest) == ["run", "source", "layout", "updated", "checkpoints", "log_history"]
    assert (manifest["run"], manifest["source"], manifest["layout"]) == (RUN, str(fixture_run.resolve()), "trainer")
    hashes = {r["step"]: r["revision"] for r in rows}
    for entry, step in zip(manifest["checkpoints"], STEPS):
        assert list(entry) == ["checkpoint", "step", "tokens", "tokens_source", "weights_hash", "train_loss", "model",
                               "completion_run", "completions"]
        assert entry["step"] == step and entry["tokens"] == step * 1024 and entry["tokens_source"] == "trainer_state"
        assert entry["weights_hash"] == hashes[step] and entry["weights_hash"].startswith("weights:")
        assert entry["model"] == f"{RUN}/checkpoint-{step}" and entry["completion_run"] == run_file(out).stem
        assert entry["completions"] == 12 and isinstance(entry["train_loss"], float)
    losses = [e["train_loss"] for e in manifest["checkpoints"]]
    assert losses[-1] < losses[0]
    assert [e["step"] for e in manifest["log_history"]] == list(range(10, 121, 10))


def test_a_second_sweep_finds_everything(swept, work, fixture_run, capsys):
    out, sweeps, _ = swept
    before = run_file(out).read_bytes()
    assert main(sweep_args(fixture_run, work, out, sweeps)) == 0
    printed = capsys.readouterr().out
    assert printed.count("0 written, 12 already there") == 4 and "load" not in printed
    assert run_file(out).read_bytes() == before


def test_a_killed_sweep_resumes_without_duplicates_or_gaps(swept, work, fixture_run, capsys):
    out, sweeps = work/"killed", work/"killed-sweeps"
    path = out/run_file(swept[0]).name
    process = subprocess.Popen(tinyscale(sweep_args(fixture_run, work, out, sweeps)), env=environment(work), cwd=work,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (path.exists() and path.read_bytes().count(b"\n") >= 2):
            assert process.poll() is None, f"the sweep ended before it was killed: {process.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no completion written in time"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill(); process.wait(timeout=30); process.stderr.close()
    left = len(read_jsonl(path))
    assert 2 <= left < 48, f"the sweep was not killed mid-run ({left} completions)"
    assert main(sweep_args(fixture_run, work, out, sweeps)) == 0
    printed = capsys.readouterr().out
    written = sum(int(line.split(" written")[0].rsplit(" ", 1)[-1]) for line in printed.splitlines() if " written, " in line)
    assert written == 48 - left                                   # only what was missing
    assert texts(path) == texts(run_file(swept[0]))               # nothing twice, nothing missing, the same text
    manifest = json.loads((sweeps/f"{RUN}.json").read_text())
    assert [e["completions"] for e in manifest["checkpoints"]] == [12] * 4


def test_a_checkpoint_saved_later_is_picked_up(swept, work, fixture_run, capsys, tmp_path):
    growing, out, sweeps = tmp_path/"growing", tmp_path/"out", tmp_path/"sweeps"
    for step in STEPS[:3]: shutil.copytree(fixture_run/f"checkpoint-{step}", growing/f"checkpoint-{step}")
    assert main(sweep_args(growing, work, out, sweeps)) == 0
    assert capsys.readouterr().out.count("12 written, 0 already there") == 3
    shutil.copytree(fixture_run/"checkpoint-120", growing/"checkpoint-120")  # the run saved another checkpoint
    assert main(sweep_args(growing, work, out, sweeps)) == 0
    printed = capsys.readouterr().out
    assert printed.count("0 written, 12 already there") == 3
    assert "growing/checkpoint-120 (step 120" in printed and printed.count("12 written, 0 already there") == 1
    assert [e["step"] for e in json.loads((sweeps/"growing.json").read_text())["checkpoints"]] == STEPS
    grown = {(model.replace("growing/", f"{RUN}/"), prompt): text for (model, prompt), text in texts(run_file(out)).items()}
    assert grown == texts(run_file(swept[0]))  # the same weights and settings give the same completions


def test_the_dry_run_prices_the_sweep_and_writes_nothing(swept, work, fixture_run, capsys, tmp_path, monkeypatch):
    shutil.copytree(ROOT/"data", tmp_path/"data", ignore=shutil.ignore_patterns("completions", "judge-cache"))
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))   # a scratch workbook: the judge's templates, no cache yet
    out, sweeps = tmp_path/"out", tmp_path/"sweeps"
    assert main(sweep_args(fixture_run, work, out, sweeps, "--dry-run", "--judge", "anthropic", "--judge-model", "claude-haiku-4-5")) == 0
    printed = capsys.readouterr().out
    for step in STEPS: assert f"  checkpoint-{step}: step {step}, {step * 1024:,} tokens (trainer_state), loss " in printed
    assert "dry run: 48 completion(s) to generate in 4 checkpoint(s), 0 already there" in printed
    assert "measured here on fixture-run: load " in printed and " ms a new token (cpu, float32)" in printed
    assert "estimated generation time: at most ~" in printed
    assert "judge: 48 call(s) to judge:claude-haiku-4-5 (0 already judged)" in printed and "estimated cost $" in printed
    assert not out.exists() and not sweeps.exists() and not (tmp_path/"data"/"judge-cache").exists() and not (tmp_path/"scores").exists()
    assert main(sweep_args(fixture_run, work, swept[0], swept[1], "--dry-run")) == 0
    printed = capsys.readouterr().out
    assert "dry run: 0 completion(s) to generate in 0 checkpoint(s), 48 already there" in printed and "measured" not in printed


def test_the_judge_scores_each_checkpoint_as_it_is_swept(swept, work, fixture_run, capsys, tmp_path, monkeypatch):
    from tinyscale.fake_judge import FakeJudgeServer
    from tinyscale.completions import load_completions
    from tinyscale.store import ScoreStore
    shutil.copytree(ROOT/"data", tmp_path/"data", ignore=shutil.ignore_patterns("completions", "judge-cache"))
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    out, store = swept[0], tmp_path/"scores"
    with FakeJudgeServer("openai") as server:
        judge = ["--judge", "openai", "--judge-model", "gpt-4o-mini", "--judge-base-url", server.url, "--store", str(store)]
        assert main(sweep_args(fixture_run, work, out, tmp_path/"sweeps", "--steps", "30,120", *judge)) == 0
        first = capsys.readouterr().out
        assert main(sweep_args(fixture_run, work, out, tmp_path/"sweeps", "--steps", "120", *judge)) == 0
        second = capsys.readouterr().out
        requests = server.requests
    assert first.count("judged 12 now, 0 from the cache, 0 without scores") == 2
    assert "judged 0 now, 12 from the cache" in second and requests == 24
    scores = ScoreStore(store, completions=load_completions(out)).current("judge:gpt-4o-mini")
    judged = load_completions(out).set_index("completion_id").loc[scores.completion_id.unique()]
    assert sorted(set(judged.step)) == [30, 120] and len(judged) == 24
    # and on to the curves: the judge's scores of each swept checkpoint, one row per step and category
    import csv, io
    assert main(["curves", "--rater", "judge:gpt-4o-mini", "--store", str(store), "--completions", str(out),
                 "--sweeps", str(tmp_path/"sweeps"), "--format", "csv", "--resamples", "200"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    steps = {int(float(r["step"])) for r in rows if r.get("step") not in ("", None)}
    assert steps == {30, 120}, rows[:3]
    for step in (30, 120):
        overall = [r for r in rows if r.get("step") not in ("", None) and int(float(r["step"])) == step and r["category"] == ""]
        expected = scores[scores.completion_id.isin(judged.index[judged.step == step])].score.mean()
        assert overall and abs(float(overall[0]["mean"]) - expected) < 1e-9, (overall, expected)


def test_two_processes_under_torchrun_write_one_process_completions(swept, work, fixture_run):
    out, sweeps = work/"torchrun", work/"torchrun-sweeps"
    done = subprocess.run(tinyscale(sweep_args(fixture_run, work, out, sweeps, "--launch", "torchrun", "--nproc", "2")),
                          env=environment(work), cwd=work, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tinyscale: rank 0 of 2" in done.stderr and "tinyscale: rank 1 of 2" in done.stderr
    assert done.stdout.count("12 written, 0 already there") == 4 and done.stdout.count("on 2 ranks") == 4
    assert sorted(p.name for p in out.iterdir()) == [run_file(swept[0]).name]  # shards merged and removed
    assert texts(run_file(out)) == texts(run_file(swept[0]))                    # token for token
    assert [e["completions"] for e in json.loads((sweeps/f"{RUN}.json").read_text())["checkpoints"]] == [12] * 4


def test_probes_of_every_checkpoint(swept, work, fixture_run, capsys):
    out, sweeps, _ = swept
    assert main(sweep_args(fixture_run, work, out, sweeps, command="probe")) == 0
    printed = capsys.readouterr().out
    assert "| step | checkpoint | expected_logprob | distinct_1 | distinct_2 | repetition | eos_rate | length |" in printed
    path = sweeps/f"{RUN}-probes.csv"
    with open(path, newline="") as f: rows = list(csv.DictReader(f))
    assert path.read_text().splitlines()[0] == "run,checkpoint,step,tokens,probe,category,value,n"
    assert sorted({int(r["step"]) for r in rows}) == STEPS and {r["run"] for r in rows} == {RUN}
    overall = {(int(r["step"]), r["probe"]): (float(r["value"]), int(r["n"])) for r in rows if r["category"] == "all"}
    completions = read_jsonl(run_file(out))
    for step in STEPS:
        mine = [c for c in completions if c["step"] == step]
        assert overall[step, "eos_rate"] == (pytest.approx(sum(c["ended_with_eos"] for c in mine) / 12), 12)
        assert overall[step, "length"] == (pytest.approx(sum(c["new_tokens"] for c in mine) / 12), 12)
        assert overall[step, "expected_logprob"][1] == 4          # 2 Factual Knowledge + 2 Reasoning prompts
        assert {int(r["tokens"]) for r in rows if int(r["step"]) == step} == {step * 1024}
    assert overall[120, "expected_logprob"][0] > overall[30, "expected_logprob"][0]


def test_probe_values_by_hand(work, fixture_run, capsys, tmp_path):
    "Two prompts and two completions written by hand: every value as computed on paper (and by transformers directly)."
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tinyscale.completions import Completion, append_completions
    from tinyscale.generate import GenerationSettings
    from tinyscale.sweep import plan_sweep
    prompts = [p for p in load_prompts() if p.id in ("fk-02", "pl-01")]
    write_prompts(tmp_path/"two.csv", prompts)
    settings = GenerationSettings(max_new_tokens=24, batch_size=2, device="cpu")
    item = plan_sweep([fixture_run], prompts, tmp_path/"hand", settings, steps=[30], folder=tmp_path/"sweeps").items[0]
    by_hand = {"fk-02": (" The cat sat. The cat sat.", True, 8), "pl-01": (" A dog.", False, 4)}
    append_completions(tmp_path/"hand"/"sweep-by-hand.jsonl", [
        Completion(cid, p.id, p.category, p.prompt, by_hand[p.id][0], item.checkpoint.model, item.weights_hash,
                   ended_with_eos=by_hand[p.id][1], new_tokens=by_hand[p.id][2], **item.fields)
        for cid, p in zip(item.ids, prompts)])
    args = ["probe", str(fixture_run), "--prompts", str(tmp_path/"two.csv"), "--completions", str(tmp_path/"hand"),
            "--sweeps", str(tmp_path/"sweeps"), "--steps", "30", *SETTINGS[:-1], "--format", "csv"]
    assert main(args) == 0
    with open(tmp_path/"sweeps"/f"{RUN}-probes.csv", newline="") as f: rows = list(csv.DictReader(f))
    assert capsys.readouterr().out.splitlines() == (tmp_path/"sweeps"/f"{RUN}-probes.csv").read_text().splitlines()
    value = {(r["probe"], r["category"]): (float(r["value"]), int(r["n"])) for r in rows}
    # words: the cat sat . the cat sat . | a dog .  -> 6 distinct of 11
    assert value["distinct_1", "all"] == (pytest.approx(6 / 11), 2)
    assert value["distinct_2", "all"] == (pytest.approx(6 / 9), 2)    # the cat, cat sat, sat ., . the; a dog, dog .
    assert value["distinct_1", "Plot"] == (pytest.approx(3 / 3), 1)
    assert value["repetition", "all"] == (pytest.approx(1 / 5), 1)    # one 4-gram of five repeats; " A dog." has none
    assert value["eos_rate", "all"] == (0.5, 2) and value["eos_rate", "Factual Knowledge"] == (1.0, 1)
    assert value["length", "all"] == (6.0, 2)
    assert ("repetition", "Plot") not in value and ("expected_logprob", "Plot") not in value
    tokenizer = AutoTokenizer.from_pretrained(fixture_run/"checkpoint-30")
    model = AutoModelForCausalLM.from_pretrained(fixture_run/"checkpoint-30").eval()
    prompt = prompts[0].prompt
    context, whole = tokenizer(prompt).input_ids, tokenizer(prompt + " sleep").input_ids
    with torch.no_grad(): logprobs = model(torch.tensor([whole])).logits[0].log_softmax(-1)
    expected = sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context), len(whole))) / (len(whole) - len(context))
    assert value["expected_logprob", "Factual Knowledge"][0] == pytest.approx(expected, abs=1e-4)
    assert value["expected_logprob", "all"] == (pytest.approx(expected, abs=1e-4), 1)
    assert {r["tokens"] for r in rows} == {str(30 * 1024)}


def test_a_hand_made_trainer_folder_is_read_as_the_trainer_leaves_it(fixture_run, work, capsys, tmp_path):
    "Training state next to the weights, a TensorBoard folder, a checkpoint without trainer_state.json, steps 500 < 1500."
    run = tmp_path/"lr3e-4"
    for step, source in ((500, 30), (1000, 60), (1500, 90)):
        folder = shutil.copytree(fixture_run/f"checkpoint-{source}", run/f"checkpoint-{step}")
        for extra in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
            (folder/extra).write_bytes(os.urandom(64))
        state = json.loads((folder/"trainer_state.json").read_text())
        if step == 1000: (folder/"trainer_state.json").unlink(); continue
        state.update(global_step=step, num_input_tokens_seen=0, max_steps=1500,
                     log_history=[{"epoch": s / 1500, "grad_norm": 1.0, "learning_rate": 3e-4, "loss": 10 - s / 250, "step": s}
                                  for s in range(250, step + 1, 250)])
        (folder/"trainer_state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    (run/"runs"/"Dec01_10-00-00_host").mkdir(parents=True)
    (run/"runs"/"Dec01_10-00-00_host"/"events.out.tfevents.1733047200.host").write_bytes(b"\x00")
    assert main(sweep_args(run, work, tmp_path/"out", tmp_path/"sweeps", "--dry-run", "--tokens-per-step", "4096")) == 0
    printed = capsys.readouterr().out
    lines = [line.strip() for line in printed.splitlines() if line.startswith("  checkpoint-")]
    assert [line.split(":")[0] for line in lines] == ["checkpoint-500", "checkpoint-1000", "checkpoint-1500"]
    assert lines[0].startswith("checkpoint-500: step 500, 2,048,000 tokens (tokens_per_step), loss 8,")
    assert lines[1].startswith("checkpoint-1000: step 1000, 4,096,000 tokens (tokens_per_step), loss 6,")  # from the latest state
    assert "dry run: 36 completion(s) to generate in 3 checkpoint(s)" in printed


@pytest.mark.parametrize("command, extra, message", [
    ("sweep", ["--steps", "30,45"], "--steps: fixture-run has no checkpoint at step 45 (its steps: 30, 60, 90, 120)"),
    ("sweep", ["--steps", "30,x"], "--steps '30,x': expected whole numbers"),
    ("sweep", ["--every", "0"], "--every 0: must be at least 1"),
    ("sweep", ["--checkpoints", "step-*"], "--checkpoints 'step-*': matches none of fixture-run's checkpoints"),
    ("sweep", ["--judge", "openai"], "--judge: give the judge model with --judge-model"),
    ("sweep", ["--judge-model", "gpt-4o-mini"], "--judge-model: only with --judge BACKEND"),
    ("sweep", ["--launch", "torchrun", "--nproc", "0"], "--nproc 0: must be at least 1"),
    ("probe", ["--steps", "45"], "--steps: fixture-run has no checkpoint at step 45"),
])
def test_bad_options_are_one_line(fixture_run, work, capsys, tmp_path, command, extra, message):
    status = main(sweep_args(fixture_run, work, tmp_path/"out", tmp_path/"sweeps", *extra, command=command))
    err = capsys.readouterr().err
    assert status == 1 and err.startswith(f"tinyscale: error: {message}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path/"out").exists() and not (tmp_path/"sweeps").exists()


@pytest.mark.parametrize("command", ["sweep", "probe"])
def test_a_run_that_is_not_a_run_folder_is_one_line(work, capsys, tmp_path, command):
    (tmp_path/"notes").mkdir()
    for run, message in ((tmp_path/"notes", "not a training run: no checkpoint-<step>/ folders"),
                         (tmp_path/"nowhere", "no such run folder"),
                         ("runs/typo", "runs/typo: no such run folder; as a Hub id: cannot list its branches on the Hub")):
        status = main(sweep_args(run, work, tmp_path/"out", tmp_path/"sweeps", command=command))
        err = capsys.readouterr().err
        assert status == 1 and err.startswith("tinyscale: error: ") and message in err and len(err.strip().splitlines()) == 1, err


def test_a_calibrated_judge_scores_a_new_checkpoint(swept, work, fixture_run, capsys, tmp_path, monkeypatch):
    """The loop of a study: the judge scores two checkpoints, the rater scores them too, `judge calibrate --write` fits
    the judge to the rater, and the next checkpoint's sweep writes calibrated scores with `--calibration`."""
    from tinyscale.calibration import apply_calibration, load_calibration
    from tinyscale.fake_judge import FakeJudgeServer
    from tinyscale.completions import load_completions
    from tinyscale.store import ScoreStore
    shutil.copytree(ROOT/"data", tmp_path/"data", ignore=shutil.ignore_patterns("completions", "judge-cache", "calibration"))
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    out, store_folder, judge_name = swept[0], tmp_path/"scores", "judge:gpt-4o-mini"
    with FakeJudgeServer("openai") as server:
        judge = ["--judge", "openai", "--judge-model", "gpt-4o-mini", "--judge-base-url", server.url, "--store", str(store_folder)]
        assert main(sweep_args(fixture_run, work, out, tmp_path/"sweeps", "--steps", "30,120", *judge)) == 0
        store = ScoreStore(store_folder, completions=load_completions(out))
        harsher = {0.0: 0.0, 0.5: 0.0, 1.0: 0.5}  # the rater is one level stricter than the judge, everywhere
        for row in store.current(judge_name).itertuples():
            store.set_score(row.completion_id, row.criterion, harsher[row.score], "ana")
        assert main(["judge", "calibrate", "--a", "ana", "--b", judge_name, "--folds", "2", "--resamples", "200", "--write",
                     "--store", str(store_folder), "--completions", str(out)]) == 0
        saved_path, = (tmp_path/"data"/"judge"/"calibration").glob("*.json")
        capsys.readouterr()
        assert main(sweep_args(fixture_run, work, out, tmp_path/"sweeps", "--steps", "60", *judge, "--calibration", str(saved_path))) == 0
        printed = capsys.readouterr().out
    assert "calibrated: " in printed
    table = load_completions(out).set_index("completion_id")
    store = ScoreStore(store_folder, completions=load_completions(out))
    raw, calibrated = store.current(judge_name), store.current(judge_name + "+cal")
    new = raw[raw.completion_id.map(table.step) == 60]
    assert len(new) and set(calibrated.completion_id) >= set(new.completion_id)
    by_item = calibrated.set_index(["completion_id", "criterion"]).score
    got = [by_item[cid, criterion] for cid, criterion in zip(new.completion_id, new.criterion)]
    frame = new[["completion_id", "category", "criterion"]].assign(**{judge_name: new.score.to_numpy()})
    assert got == list(apply_calibration(load_calibration(saved_path), frame))
    fitted = raw[raw.completion_id.map(table.step).isin([30, 120])]
    learned = set(zip(fitted.category, fitted.criterion, fitted.score))  # each learned as the rater's: one level lower
    expected = [harsher[s] if (c, k, s) in learned else s for c, k, s in zip(new.category, new.criterion, new.score)]
    assert got == expected and got != list(new.score)
