"""End-to-end tests of generation on the TinyStories-1M shape: the completions table, left padding, the cache,
resuming after a killed run, new settings, the seed preset's lengths, the flags, and the errors a user can meet."""
import csv, json, signal, subprocess, time, warnings
from pathlib import Path

import pytest

from support import offline_environment, tinyscale_command
from tinyscale.completions import COMPLETION_FIELDS, load_completions
from tinyscale.core import config_hash, read_jsonl, text_hash
from tinyscale.generate import (completion_config, eos_loving, form_batches, generate, generate_batch,
                                existing_completion_ids)
from tinyscale.models import load_model
from tinyscale.prompts import load_prompts, prompt_set_hash, read_prompt_rows

PROMPTS = [  # id, category, prompt, expected, source_id: mixed categories and lengths, one Grammar reuse
    ("pl-01", "Plot", "Tom lost his red kite in a tall tree. He asked his friend Sue to help, but", "", ""),
    ("re-01", "Reasoning", "Ben had two apples and Mia gave him one more. Now Ben had", "three", ""),
    ("fk-01", "Factual Knowledge", "The cow looked at the farmer and said", "moo", ""),
    ("ct-01", "Context-Tracking", "Anna had a blue cup and Max had a green cup. Anna gave her cup to the cat, "
                                  "and Max put his cup on the big table next to the window. Later, Anna wanted", "", ""),
    ("cr-01", "Creativity", "One day the moon came down to play", "", ""),
    ("gr-01", "Grammar", "Tom lost his red kite in a tall tree. He asked his friend Sue to help, but", "", "pl-01"),
]
FLAGS = {"--max-new-tokens": "12", "--no-progress": None}


def write_prompts(path, rows=PROMPTS):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "category", "prompt", "expected", "source_id"])
        writer.writerows(rows)
    return path


def cli_args(*args, **flags):
    args = ["generate", *args]
    for flag, value in {**FLAGS, **flags}.items(): args += [flag] if value is None else [flag, value]
    return args


@pytest.fixture(scope="module")
def tiny(fixture_models):
    return load_model(fixture_models, device="cpu")


@pytest.fixture
def prompt_file(tmp_path):
    return write_prompts(tmp_path/"prompts.csv")


def records(folder):
    return [r for path in sorted(Path(folder).glob("*.jsonl")) for r in read_jsonl(path)]


def wait_for_a_batch(process, out, seconds=240):
    "Return once a running `tinyscale generate` has a completion in `out`; fail if it ends first or takes too long."
    deadline = time.monotonic() + seconds
    while not (out.exists() and existing_completion_ids(out)):
        assert process.poll() is None, "the run ended before its first batch was on disk"
        assert time.monotonic() < deadline, f"no batch on disk after {seconds} s"
        time.sleep(0.02)


def test_command_line_writes_the_completions_table(cli_process, fixture_models, prompt_file, tmp_path):
    out = tmp_path/"completions"
    done = cli_process(*cli_args("--model", str(fixture_models), "--prompts", str(prompt_file), "--out", str(out)))
    assert done.status == 0, done.err
    assert "TinyStories-1M (weights:" in done.out and "6 written, 0 already there" in done.out
    rows = records(out)
    assert len(rows) == 6 and all(set(r) == set(COMPLETION_FIELDS) for r in rows)
    prompts = [p for _, p in read_prompt_rows(prompt_file)]
    by_id = {p.id: p for p in prompts}
    for r in rows:
        prompt = by_id[r["prompt_id"]]
        assert (r["category"], r["prompt"], r["prompt_hash"]) == (prompt.category, prompt.prompt, text_hash(prompt.prompt))
        assert r["prompt_set_hash"] == prompt_set_hash(prompts)
        assert (r["model"], r["params"], r["device"], r["dtype"]) == ("TinyStories-1M", 3_745_984, "cpu", "float32")
        assert r["revision"].startswith("weights:")
        assert r["config"] == completion_config("default", prompt.category, "float32", max_new_tokens=12)
        assert r["config_hash"] == config_hash(r["config"])
        assert (r["new_tokens"], r["finish_reason"], r["ended_with_eos"]) == (12, "length", False)
        assert r["new_story"] is False and r["completion"] and r["completion_raw"] == r["completion"]
        assert set(r["versions"]) >= {"torch", "transformers", "tinyscale"}
        assert r["seconds"] > 0 and r["run"] == Path(done.out.split("-> ")[-1].strip()).stem
    assert len({r["completion_id"] for r in rows}) == 6  # the Grammar slot reusing pl-01 is its own completion
    table = load_completions(out)
    assert len(table) == 6 and list(table.columns) == list(COMPLETION_FIELDS)


def test_rerun_hits_the_cache(tiny, prompt_file, tmp_path):
    out = tmp_path/"completions"
    first, = generate([tiny], prompt_file, out, max_new_tokens=12, progress=False)
    before = sorted(out.glob("*.jsonl"))[0].read_bytes()
    again, = generate([tiny], prompt_file, out, max_new_tokens=12, progress=False)
    assert (first.written, first.cached, again.written, again.cached) == (6, 0, 0, 6)
    assert sorted(out.glob("*.jsonl"))[0].read_bytes() == before


def test_a_setting_change_makes_new_entries(tiny, fixture_models, prompt_file, tmp_path):
    out = tmp_path/"completions"
    generate([tiny], prompt_file, out, max_new_tokens=12, progress=False)
    longer, = generate([tiny], prompt_file, out, max_new_tokens=13, progress=False)
    with pytest.raises(Exception, match="loaded in float32, not bfloat16"):
        generate([tiny], prompt_file, out, max_new_tokens=12, dtype="bfloat16", progress=False)
    with pytest.warns(UserWarning, match="bfloat16"):
        half, = generate([fixture_models], prompt_file, out, max_new_tokens=12, dtype="bfloat16", device="cpu", progress=False)
    assert (longer.written, half.written) == (6, 6)
    table = load_completions(out)
    assert len(table) == 18 and table.config_hash.nunique() == 18  # the category is part of the settings
    assert sorted(table.new_tokens.unique()) == [12, 13]


def test_left_padding_does_not_change_a_completion(tiny):
    "Each prompt alone gives the same tokens as in a batch with longer and shorter prompts."
    texts = [p[2] for p in PROMPTS[:5]]
    configs = [completion_config("default", p[1], max_new_tokens=32) for p in PROMPTS[:5]]
    together, width = generate_batch(tiny, texts, configs)
    alone = [generate_batch(tiny, [t], [c])[0][0] for t, c in zip(texts, configs)]
    lengths = [len(tiny.tokenizer(t).input_ids) for t in texts]
    assert width == max(lengths) and sum(n < width for n in lengths) == 4  # every prompt but the longest was padded
    matches = sum(a == b for a, b in zip(alone, together))
    assert matches == len(texts), f"{matches}/{len(texts)} prompts match alone and batched"


def test_beam_cache_changes_no_token(tiny):
    "BeamCache gives the ids of transformers' own cache, also when beams of some prompts finish early."
    texts, configs = [p[2] for p in PROMPTS], [completion_config("default", p[1], max_new_tokens=70) for p in PROMPTS]
    for model in (tiny, eos_loving(tiny)):
        assert generate_batch(model, texts, configs) == generate_batch(model, texts, configs, use_beam_cache=False)
    seed = [completion_config("seed", p[1]) for p in PROMPTS[:3]]
    assert generate_batch(tiny, texts[:3], seed) == generate_batch(tiny, texts[:3], seed, use_beam_cache=False)


def test_beam_cache_changes_no_token_on_a_trained_model(fixture_run):
    """On a trained tiny Llama whose stories end with end-of-text: prompts read once per prompt (`fill_prompts`), prompts
    finishing at different steps, left padding, a minimum length per category; the same ids as transformers' own cache."""
    model = load_model(fixture_run/"checkpoint-120", device="cpu")
    texts, configs = [p[2] for p in PROMPTS], [completion_config("default", p[1], max_new_tokens=96) for p in PROMPTS]
    ours, width = generate_batch(model, texts, configs)
    assert (ours, width) == generate_batch(model, texts, configs, use_beam_cache=False)
    eos = model.tokenizer.eos_token_id
    ends = {ids.index(eos) for ids in ours if eos in ids}
    assert len(ends) > 1, f"the trained model should end stories at different steps before 96 new tokens: {ends}"


def test_resume_after_a_killed_run(cli_process, fixture_models, tmp_path):
    "A run killed with SIGKILL after its first batch resumes without duplicates, and ends as a clean run would."
    prompts = load_prompts()[:16]
    prompt_file = write_prompts(tmp_path/"prompts.csv", [(p.id, p.category, p.prompt, p.expected, p.source_id) for p in prompts])
    out = tmp_path/"completions"
    args = cli_args("--model", str(fixture_models), "--prompts", str(prompt_file), "--out", str(out), "--batch-size", "1",
                    **{"--max-new-tokens": "40"})
    process = subprocess.Popen(tinyscale_command(*args), env=offline_environment(tmp_path), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_a_batch(process, out)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    killed = len(records(out))
    assert 0 < killed < 16, f"{killed} completions on disk when the run was killed"
    done = cli_process(*args)
    assert done.status == 0, done.err
    assert f"{16 - killed} written, {killed} already there" in done.out
    rows = records(out)
    assert sorted(r["prompt_id"] for r in rows) == sorted(p.id for p in prompts)  # each prompt exactly once
    clean = tmp_path/"clean"
    generate([fixture_models], prompt_file, clean, batch_size=1, max_new_tokens=40, device="cpu", progress=False)
    assert {r["completion_id"]: r["completion"] for r in rows} == {r["completion_id"]: r["completion"] for r in records(clean)}


def test_a_torn_last_line_is_set_aside_and_regenerated(tiny, prompt_file, tmp_path):
    out = tmp_path/"completions"
    result, = generate([tiny], prompt_file, out, max_new_tokens=12, batch_size=2, progress=False)
    path = result.path
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # the last record was cut mid-write
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, = generate([tiny], prompt_file, out, max_new_tokens=12, batch_size=2, progress=False)
    assert (again.written, again.cached) == (1, 5)
    assert any("unfinished last line" in str(w.message) for w in caught)
    assert sorted(r["prompt_id"] for r in read_jsonl(path)) == sorted(p[0] for p in PROMPTS)
    assert Path(str(path) + ".torn").read_bytes() == lines[-1][:40] + b"\n"


def test_only_batches_with_missing_prompts_run_and_batches_are_formed_over_all_prompts(tiny, prompt_file, tmp_path):
    "Completions of a partly cached run equal those of a fresh run: batches do not shrink to what is left."
    out, fresh = tmp_path/"completions", tmp_path/"fresh"
    generate([tiny], prompt_file, out, max_new_tokens=12, batch_size=4, limit=2, progress=False)
    resumed, = generate([tiny], prompt_file, out, max_new_tokens=12, batch_size=4, progress=False)
    generate([tiny], prompt_file, fresh, max_new_tokens=12, batch_size=4, progress=False)
    assert (resumed.written, resumed.cached) == (4, 2)
    assert {r["completion_id"]: r["completion"] for r in records(out)} == {r["completion_id"]: r["completion"] for r in records(fresh)}


def test_batch_forming_is_the_same_for_every_rank():
    lengths = [5, 17, 17, 3, 9, 40, 1, 9, 9, 22]
    batches = form_batches(lengths, 3)
    assert [[lengths[i] for i in b] for b in batches] == [[40, 22, 17], [17, 9, 9], [9, 5, 3], [1]]
    assert batches == form_batches(list(lengths), 3)
    for world in (1, 2, 3):
        taken = [i for rank in range(world) for b in batches[rank::world] for i in b]
        assert sorted(taken) == list(range(len(lengths)))


def test_seed_preset_counts_prompt_and_padding_in_its_lengths(tiny, prompt_file, tmp_path):
    widths = [len(tiny.tokenizer(p[2]).input_ids) for p in PROMPTS]
    result, = generate([tiny], prompt_file, tmp_path/"seed", preset="seed", progress=False)
    rows = records(tmp_path/"seed")
    assert result.written == 6 and result.path.stem.startswith("seed-")
    assert {r["new_tokens"] for r in rows} == {384 - max(widths)}  # one batch: every row is as wide as the longest prompt
    assert all(r["config"]["max_length"] == 384 and r["config"]["min_length"] == 120 for r in rows)
    stopping = eos_loving(tiny)
    new_ids, width = generate_batch(stopping, [p[2] for p in PROMPTS], [completion_config("seed", p[1]) for p in PROMPTS])
    assert width == max(widths)
    assert [ids.index(50256) for ids in new_ids] == [120 - width] * 6  # min_length holds back only 120 - width tokens


def test_flags_and_per_category_minimum_end_to_end(tiny, prompt_file, tmp_path):
    "A model that always wants to stop: Reasoning and Factual Knowledge stop at once, stories run to their minimum."
    generate([eos_loving(tiny)], prompt_file, tmp_path, max_new_tokens=70, progress=False)
    rows = {r["prompt_id"]: r for r in records(tmp_path)}
    for prompt_id in ("re-01", "fk-01"):
        r = rows[prompt_id]
        assert (r["new_tokens"], r["completion"], r["completion_raw"]) == (1, "", "<|endoftext|>")
        assert (r["ended_with_eos"], r["finish_reason"], r["new_story"]) == (True, "eos", False)
    for prompt_id in ("pl-01", "ct-01", "cr-01", "gr-01"):
        r = rows[prompt_id]
        assert (r["new_tokens"], r["ended_with_eos"], r["finish_reason"]) == (65, True, "eos")
        assert r["completion_raw"].endswith("<|endoftext|>") and "<|endoftext|>" not in r["completion"]


@pytest.mark.parametrize("extra, message", [
    (["--batch-size", "0"], "tinyscale: error: --batch-size 0: must be at least 1"),
    (["--preset", "seed", "--batch-size", "4"], "tinyscale: error: --batch-size: the seed preset generates all prompts in one batch"),
    (["--preset", "seed", "--max-new-tokens", "5"], "tinyscale: error: --max-new-tokens: the seed preset counts lengths"),
    (["--limit", "0"], "tinyscale: error: --limit 0: must be at least 1"),
    (["--streams", "0"], "tinyscale: error: --streams 0: must be at least 1"),
    (["--preset", "seed", "--streams", "2"], "tinyscale: error: --streams 2: the seed preset generates all prompts in one batch"),
])
def test_bad_settings_are_one_line(cli, fixture_models, prompt_file, tmp_path, extra, message):
    status, _, err = cli("generate", "--model", fixture_models, "--prompts", prompt_file, "--out", tmp_path/"out",
                         "--no-progress", *extra)
    assert status == 1 and err.startswith(message) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path/"out").exists()


def test_unknown_preset_is_refused_by_the_parser(cli, fixture_models, prompt_file, capsys):
    with pytest.raises(SystemExit) as exit:
        cli("generate", "--model", fixture_models, "--prompts", prompt_file, "--preset", "fast")
    assert exit.value.code == 2
    assert "argument --preset: invalid choice: 'fast'" in capsys.readouterr().err


def test_a_folder_that_is_not_a_model_is_one_line(cli, prompt_file, tmp_path):
    status, _, err = cli("generate", "--model", tmp_path, "--prompts", prompt_file, "--no-progress")
    assert status == 1 and err.strip() == f"tinyscale: error: {tmp_path}: not a model folder (no config.json; expected a folder written by save_pretrained)"


def test_a_bad_prompt_file_is_one_line(cli, fixture_models, tmp_path):
    bad = write_prompts(tmp_path/"bad.csv", PROMPTS[:2] + [("xx-01", "Poetry", "Roses are", "", "")])
    status, _, err = cli("generate", "--model", fixture_models, "--prompts", bad, "--no-progress")
    assert status == 1 and err.strip() == f"tinyscale: error: {bad}, row 4: unknown category 'Poetry'"


def test_offline_hub_model_is_one_clear_line(cli_process, fixture_models, prompt_file, tmp_path):
    "A Hub id without a network fails at once with one line, before any other model is generated."
    done = cli_process(*cli_args("--model", str(fixture_models), "--model", "roneneldan/TinyStories-1M",
                                 "--prompts", str(prompt_file), "--out", str(tmp_path/"out")), timeout=120)
    assert done.status == 1
    assert done.err.strip() == ("tinyscale: error: cannot download roneneldan/TinyStories-1M: no network; "
                                   "pass a local folder with --model")
    assert not (tmp_path/"out").exists()


def test_the_batch_size_changes_no_completion_and_enters_no_config(tiny, prompt_file, tmp_path):
    "Batches of 1, 4 and the default give the same completions, with the same ids: the batch size is not a setting."
    runs = {size: generate([tiny], prompt_file, tmp_path/f"batches-{size}", max_new_tokens=12, batch_size=size, progress=False)[0]
            for size in (1, 4, None)}
    texts = {size: {r["completion_id"]: r["completion"] for r in records(tmp_path/f"batches-{size}")} for size in runs}
    assert texts[1] == texts[4] == texts[None] and len(texts[1]) == 6
    assert all("batch_size" not in r["config"] for r in records(tmp_path/"batches-4"))
    assert [(runs[s].batch_size, runs[s].batch_choice) for s in (1, 4)] == [(1, "given"), (4, "given")]
    assert runs[None].batch_choice == "heuristic" and runs[None].batch_size == 6  # 6 prompts of a tiny model: one batch


def test_the_default_batch_size_is_measured_once_and_cached(tiny, tmp_path, monkeypatch):
    import tinyscale.generate as generation
    monkeypatch.setenv("TINYSCALE_CACHE", str(tmp_path/"cache"))
    timed, calls = generation._batch_timings, []
    monkeypatch.setattr(generation, "_batch_timings", lambda loaded, runs, **kwargs: calls.append(sorted(runs)) or timed(loaded, runs, **kwargs))
    prompts = load_prompts()[:generation.PROBE_MIN_PROMPTS]
    first, = generate([tiny], prompts, tmp_path/"first", max_new_tokens=6, progress=False)
    probes = len(calls)
    again, = generate([tiny], prompts, tmp_path/"again", max_new_tokens=6, progress=False)
    assert first.batch_choice == again.batch_choice == "measured" and probes == 1 and len(calls) == probes  # no second probe
    assert (again.batch_size, again.streams) == (first.batch_size, first.streams) and first.batch_size in (4, 8, 16)
    assert first.streams in generation.stream_choices("cpu") and first.batch_size * first.streams <= 16
    cache = json.loads((tmp_path/"cache"/"batch-size.json").read_text())
    # one batch at a time at half and all of the heuristic's 16; several at once at an equal share of the 16 prompts
    at_once = {f"{16 // n}x{n}" for n in generation.stream_choices("cpu") if n > 1}
    assert list(cache) == [generation.batch_shape_key(tiny)] and set(cache[generation.batch_shape_key(tiny)]) == {"8", "16"} | at_once
    assert calls[0] == sorted(cache[generation.batch_shape_key(tiny)])  # every candidate timed in one interleaved probe
    assert {r["completion_id"]: r["completion"] for r in records(tmp_path/"first")} == \
           {r["completion_id"]: r["completion"] for r in records(tmp_path/"again")}
    given, = generate([tiny], prompts, tmp_path/"given", max_new_tokens=6, batch_size=5, progress=False)
    assert (given.batch_size, given.batch_choice, len(calls)) == (5, "given", probes)   # --batch-size overrides, no probe


def test_the_command_line_prints_the_batch_size(fixture_models, prompt_file, tmp_path, cli_process):
    done = cli_process(*cli_args("--model", str(fixture_models), "--prompts", str(prompt_file), "--out", str(tmp_path/"out"),
                                 "--batch-size", "4"), cwd=tmp_path)
    assert done.status == 0, done.err
    assert "6 written, 0 already there" in done.out and "batches of 4 (given)" in done.out


def test_several_batches_at_once_change_no_completion(tiny, prompt_file, tmp_path, cli_process, fixture_models):
    "Two batches at once write the same completions, with the same ids, as one at a time; the CLI says it ran them so."
    runs = {n: generate([tiny], prompt_file, tmp_path/f"streams-{n}", max_new_tokens=12, batch_size=2, streams=n, progress=False)[0]
            for n in (1, 2)}
    texts = {n: {r["completion_id"]: r["completion"] for r in records(tmp_path/f"streams-{n}")} for n in runs}
    assert texts[1] == texts[2] and len(texts[2]) == 6
    assert [(runs[n].batch_size, runs[n].streams, runs[n].written) for n in (1, 2)] == [(2, 1, 6), (2, 2, 6)]
    done = cli_process(*cli_args("--model", str(fixture_models), "--prompts", str(prompt_file), "--out", str(tmp_path/"out"),
                                 "--batch-size", "2", "--streams", "2"), cwd=tmp_path)
    assert done.status == 0, done.err
    assert "6 written, 0 already there" in done.out and "batches of 2 (given, 2 at a time)" in done.out
    assert {r["completion_id"]: r["completion"] for r in records(tmp_path/"out")} == texts[1]


def test_a_failing_batch_among_several_at_once_loses_nothing_written(tiny, prompt_file, tmp_path, monkeypatch):
    "A batch that fails while others run: the error reaches the caller, the finished batches are written whole, and a rerun completes the rest."
    import torch
    import tinyscale.generate as generation
    real, threads = generation.generate_batch, torch.get_num_threads()
    prompts = [row[2] for row in PROMPTS]
    last = form_batches([len(tiny.tokenizer(p).input_ids) for p in prompts], 2)[-1]
    failing_prompt = prompts[last[0]]  # in the last of three batches: it starts once one of the first two has ended
    def generate_batch(loaded, texts, configs, **kwargs):
        if failing_prompt in texts: raise RuntimeError("out of memory in the last batch")
        return real(loaded, texts, configs, **kwargs)
    monkeypatch.setattr(generation, "generate_batch", generate_batch)
    with pytest.raises(RuntimeError, match="out of memory in the last batch"):
        generate([tiny], prompt_file, tmp_path/"out", max_new_tokens=12, batch_size=2, streams=2, progress=False)
    assert torch.get_num_threads() == threads
    written = records(tmp_path/"out")
    assert failing_prompt not in {r["prompt"] for r in written} and len(written) in (2, 4)  # whole batches: one or both of the first two
    monkeypatch.setattr(generation, "generate_batch", real)
    generate([tiny], prompt_file, tmp_path/"reference", max_new_tokens=12, batch_size=2, progress=False)
    reference = {r["completion_id"]: r["completion"] for r in records(tmp_path/"reference")}
    assert all(reference[r["completion_id"]] == r["completion"] for r in written)  # no batch stopped early was written
    again, = generate([tiny], prompt_file, tmp_path/"out", max_new_tokens=12, batch_size=2, streams=2, progress=False)
    assert again.written == 6 - len(written) and len(records(tmp_path/"out")) == 6
    assert {r["completion_id"]: r["completion"] for r in records(tmp_path/"out")} == reference


def test_an_interrupted_run_with_several_batches_at_once_stops_and_resumes(cli_process, fixture_models, tmp_path):
    "Ctrl-C while two batches run: the command stops, writes only whole batches (none cut short), and a rerun completes the rest."
    prompts = load_prompts()[:12]
    prompt_file = write_prompts(tmp_path/"prompts.csv", [(p.id, p.category, p.prompt, p.expected, p.source_id) for p in prompts])
    out = tmp_path/"completions"
    args = cli_args("--model", str(fixture_models), "--prompts", str(prompt_file), "--out", str(out), "--batch-size", "2",
                    "--streams", "2", **{"--max-new-tokens": "120"})
    process = subprocess.Popen(tinyscale_command(*args), env=offline_environment(tmp_path), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_a_batch(process, out)
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=120)
    finally:
        process.kill()
    err = process.stderr.read()
    assert status == 130 and "tinyscale: interrupted" in err, err
    written = records(out)
    assert 0 < len(written) < 12 and len(written) % 2 == 0  # whole batches of 2 only
    done = cli_process(*args)
    assert done.status == 0, done.err
    assert f"{12 - len(written)} written, {len(written)} already there" in done.out
    clean = tmp_path/"clean"
    generate([fixture_models], prompt_file, clean, batch_size=2, max_new_tokens=120, device="cpu", progress=False)
    reference = {r["completion_id"]: r["completion"] for r in records(clean)}
    assert {r["completion_id"]: r["completion"] for r in records(out)} == reference  # nothing cut short was written
