"Crash, concurrency and damage tests of the score store (tinyscale.store)."
import json, os, shutil, signal, subprocess, sys, textwrap, warnings
from pathlib import Path

import pytest

from tinyscale.completions import Completion, append_completions, completion_id, load_completions
from tinyscale.core import TinyscaleError, config_hash, text_hash
from tinyscale.store import EVENT_FIELDS, ScoreStore, event_problem


def make_completion(prompt_id, category, model, prompt, text):
    config = {"num_beams": 5}
    return Completion(completion_id(model, "rev0", text_hash(prompt), config_hash(config)), prompt_id, category, prompt,
                      text, model, revision="rev0", prompt_hash=text_hash(prompt), config=config,
                      config_hash=config_hash(config), finish_reason="length")


EXAMPLES = [
    make_completion("gr-01", "Grammar", "roneneldan/TinyStories-1M", "Once upon a time, a dog", " ran and ran."),
    make_completion("gr-01", "Grammar", "roneneldan/TinyStories-8M", "Once upon a time, a dog", " found a bone.\r\nThe end."),
    make_completion("re-01", "Reasoning", "roneneldan/TinyStories-1M", "Sam had three cats and one ran away, so", " two."),
    make_completion("ct-01", "Context-Tracking", "roneneldan/TinyStories-8M", "Mia had a red hat.", " Her hat was red."),
]
GRAMMAR_1M, GRAMMAR_8M, REASONING_1M, CONTEXT_8M = (c.completion_id for c in EXAMPLES)


@pytest.fixture
def workbook(tmp_path):
    "A completions folder with the example records, and an empty scores folder."
    append_completions(tmp_path/"completions"/"run.jsonl", EXAMPLES)
    return tmp_path


def open_store(workbook):
    return ScoreStore(workbook/"scores", completions=load_completions(workbook/"completions"))


def lines_of(path):
    return Path(path).read_bytes().splitlines()


def test_round_trip_through_a_fresh_store(workbook):
    store = open_store(workbook)
    store.set_score(GRAMMAR_1M, "A", 1, "ana", seconds=3.5, note="nice")
    store.set_score(GRAMMAR_1M, "B", 0.5, "ana")
    store.set_score(REASONING_1M, "A", 0, "ana")
    again = open_store(workbook).current("ana")
    assert list(zip(again.completion_id, again.criterion, again.score)) == [
        (GRAMMAR_1M, "A", 1.0), (GRAMMAR_1M, "B", 0.5), (REASONING_1M, "A", 0.0)]
    first = again.iloc[0]
    assert (first.seconds, first.note, first.source, first.model) == (3.5, "nice", "manual", "roneneldan/TinyStories-1M")
    assert again.prompt.iloc[0] == "Once upon a time, a dog"
    record = json.loads(lines_of(workbook/"scores"/"ana.jsonl")[0])
    assert list(record) == list(EVENT_FIELDS)
    assert record["prompt_id"] == "gr-01" and record["config_hash"] == EXAMPLES[0].config_hash


def test_latest_event_wins_and_history_stays(workbook):
    store = open_store(workbook)
    for score in (1, 0, 0.5):
        store.set_score(GRAMMAR_8M, "C", score, "ana")
    other = open_store(workbook)  # a second notebook on the same files
    other.set_score(GRAMMAR_8M, "C", 1, "ana")
    assert store.scores_for(GRAMMAR_8M, "ana") == {"C": 1.0}
    assert store.events("ana").score.tolist() == [1.0, 0.0, 0.5, 1.0]
    store.set_score(GRAMMAR_8M, "C", None, "ana")
    assert store.scores_for(GRAMMAR_8M, "ana") == {}
    assert len(store.current("ana")) == 0
    assert len(other.events("ana")) == 5


def test_raters_have_their_own_files(workbook):
    store = open_store(workbook)
    store.set_score(REASONING_1M, "A", 1, "ana")
    store.set_score(REASONING_1M, "A", 0, "judge:claude-x", source="judge:claude-x")
    assert sorted(p.name for p in (workbook/"scores").iterdir()) == ["ana.jsonl", "judge_claude-x.jsonl"]
    assert store.raters() == ["ana", "judge:claude-x"]
    assert store.current("judge:claude-x").score.tolist() == [0.0]
    assert sorted(store.current().rater) == ["ana", "judge:claude-x"]


def test_invalid_scores_write_nothing(workbook):
    store = open_store(workbook)
    bad = [(GRAMMAR_1M, "A", 0.3, "ana", "0.3 is not a score level"),
           (GRAMMAR_1M, "A", 2, "ana", "2 is not a score level"),
           (GRAMMAR_1M, "A", "good", "ana", "not a score"),
           (GRAMMAR_1M, "A", True, "ana", "not a score"),
           (GRAMMAR_1M, "F", 1, "ana", "'F' is not a criterion of 'Grammar'"),
           (REASONING_1M, "B", 1, "ana", "'B' is not a criterion of 'Reasoning'"),
           ("feedfeedfeedfeed", "A", 1, "ana", "unknown completion 'feedfeedfeedfeed'"),
           (GRAMMAR_1M, "A", 1, "", "non-empty rater name")]
    for cid, criterion, score, rater, message in bad:
        with pytest.raises(TinyscaleError, match=message):
            store.set_score(cid, criterion, score, rater)
    with pytest.raises(TinyscaleError, match="seconds -1"):
        store.set_score(GRAMMAR_1M, "A", 1, "ana", seconds=-1)
    with pytest.raises(TinyscaleError, match="'B' is not a criterion of 'Reasoning'"):
        store.set_scores([dict(completion_id=REASONING_1M, criterion="A", score=1),
                          dict(completion_id=REASONING_1M, criterion="B", score=1)], "ana")
    assert not (workbook/"scores").exists()
    store.set_score(GRAMMAR_1M, "A", 1, "ana")
    size = (workbook/"scores"/"ana.jsonl").stat().st_size
    with pytest.raises(TinyscaleError):
        store.set_score(GRAMMAR_1M, "A", 0.25, "ana")
    assert (workbook/"scores"/"ana.jsonl").stat().st_size == size


def test_torn_last_line_is_skipped_with_its_line_number(workbook):
    store = open_store(workbook)
    store.set_score(GRAMMAR_1M, "A", 1, "ana")
    store.set_score(GRAMMAR_1M, "B", 1, "ana")
    log = workbook/"scores"/"ana.jsonl"
    with open(log, "ab") as f:
        f.write(b'{"completion_id": "' + GRAMMAR_1M.encode() + b'", "criterion": "C", "sco')
    with pytest.warns(UserWarning, match=r"ana.jsonl, line 3: skipped an unfinished last line"):
        fresh = open_store(workbook)
        assert fresh.scores_for(GRAMMAR_1M, "ana") == {"A": 1.0, "B": 1.0}
    assert any("line 3" in p for p in fresh.problems())
    with pytest.warns(UserWarning, match="moved to"):
        fresh.set_score(GRAMMAR_1M, "C", 0, "ana")
    assert fresh.scores_for(GRAMMAR_1M, "ana") == {"A": 1.0, "B": 1.0, "C": 0.0}
    assert fresh.problems() == []
    assert [json.loads(line)["criterion"] for line in lines_of(log)] == ["A", "B", "C"]
    assert (workbook/"scores"/"ana.jsonl.torn").read_bytes().startswith(b'{"completion_id"')


def test_bad_middle_lines_are_reported_and_good_lines_kept(workbook):
    store = open_store(workbook)
    store.set_score(GRAMMAR_1M, "A", 1, "ana")
    log = workbook/"scores"/"ana.jsonl"
    event = json.loads(lines_of(log)[0])
    with open(log, "ab") as f:
        f.write(b"}{ garbage\n")
        f.write(json.dumps({**event, "score": 0.7}).encode() + b"\n")
        f.write(json.dumps({**event, "rater": "bo"}).encode() + b"\n")
        f.write(json.dumps({k: v for k, v in event.items() if k != "criterion"}).encode() + b"\n")
        f.write(b"[1, 2]\n\n")
    store.set_score(GRAMMAR_1M, "B", 0.5, "ana")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh = open_store(workbook)
        assert fresh.scores_for(GRAMMAR_1M, "ana") == {"A": 1.0, "B": 0.5}
    problems = fresh.problems()
    assert [str(w.message) for w in caught] == problems
    assert len(problems) == 5
    for line, reason in zip(range(2, 7), ["not JSON", "score 0.7 is not 0, 0.5, 1 or null",
                                          "an event of rater 'bo', whose events belong in bo.jsonl",
                                          "missing field(s) criterion", "not a JSON object"]):
        assert f"ana.jsonl, line {line}: {reason}" in problems[line - 2]
    assert "bo" not in fresh.raters()


def test_reader_follows_appends_and_replaced_files(workbook):
    store = open_store(workbook)
    other = open_store(workbook)
    store.set_score(GRAMMAR_1M, "A", 1, "ana")
    assert len(other.events("ana")) == 1
    other.set_score(GRAMMAR_1M, "A", 0, "ana")
    assert store.scores_for(GRAMMAR_1M, "ana") == {"A": 0.0}
    log = workbook/"scores"/"ana.jsonl"
    first_line = lines_of(log)[0]
    replacement = workbook/"scores"/"replacement"
    replacement.write_bytes(first_line + b"\n")
    os.replace(replacement, log)  # e.g. restored from a backup
    assert store.scores_for(GRAMMAR_1M, "ana") == {"A": 1.0}
    log.write_bytes(first_line.replace(b'"score":1.0', b'"score":0.5') + b"\n")  # same length, edited in place
    assert store.scores_for(GRAMMAR_1M, "ana") == {"A": 0.5}


def test_notes_progress_and_queue(workbook):
    store = open_store(workbook)
    assert store.unscored("ana") == [GRAMMAR_1M, GRAMMAR_8M, REASONING_1M, CONTEXT_8M]
    store.set_scores([dict(completion_id=GRAMMAR_1M, criterion=c, score=1, seconds=40) for c in "ABCDE"], "ana")
    store.set_scores([dict(completion_id=GRAMMAR_8M, criterion=c, score=0) for c in "ABCD"], "ana")
    store.set_score(CONTEXT_8M, "A", 0.5, "ana")
    store.set_note(GRAMMAR_8M, "ana", "stops mid-word")
    assert store.unscored("ana") == [GRAMMAR_8M, REASONING_1M, CONTEXT_8M]
    progress = store.progress("ana")
    assert progress.to_dict("records") == [
        dict(category="Grammar", model="roneneldan/TinyStories-1M", scored=1, total=1),
        dict(category="Grammar", model="roneneldan/TinyStories-8M", scored=0, total=1),
        dict(category="Reasoning", model="roneneldan/TinyStories-1M", scored=0, total=1),
        dict(category="Context-Tracking", model="roneneldan/TinyStories-8M", scored=0, total=1)]
    store.set_score(GRAMMAR_8M, "E", 0.5, "ana")
    assert store.progress("ana").scored.sum() == 2
    store.set_score(GRAMMAR_8M, "E", None, "ana")
    assert store.unscored("ana")[0] == GRAMMAR_8M
    assert store.notes("ana") == {GRAMMAR_8M: "stops mid-word"}
    assert store.notes("bo") == {}
    note_event = store.events("ana").iloc[-3]
    assert (note_event.criterion, note_event.note) == ("", "stops mid-word") and note_event.score != note_event.score
    assert "" not in set(store.current("ana").criterion)


CHILD = textwrap.dedent("""
    import sys
    from tinyscale.completions import load_completions
    from tinyscale.store import ScoreStore
    scores, completions, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = ScoreStore(scores, completions=load_completions(completions))
    cid = store.completions.completion_id[0]
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for i in range(count):
        store.set_score(cid, "ABCDE"[i % 5], [0, 0.5, 1][i % 3], "ana", seconds=float(i), note=f"{name}-{i}")
        if name == "acked": print(i, flush=True)
    if name == "acked": sys.stdin.readline()  # wait to be killed
""")


def start_child(workbook, name, count):
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(workbook/"scores"), str(workbook/"completions"), name,
                              str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "ready"
    return child


def test_two_processes_write_2000_whole_lines(workbook):
    children = [start_child(workbook, name, 1000) for name in ("one", "two")]
    for child in children:
        child.stdin.write("go\n"); child.stdin.flush()
    for child in children:
        assert child.wait(timeout=120) == 0
    lines = lines_of(workbook/"scores"/"ana.jsonl")
    assert len(lines) == 2000
    records = [json.loads(line) for line in lines]
    assert all(event_problem(r, "ana.jsonl") is None for r in records)
    for name in ("one", "two"):
        notes = [r["note"] for r in records if r["note"].startswith(name + "-")]
        assert notes == [f"{name}-{i}" for i in range(1000)]  # every event, in the order its writer wrote them
    store = open_store(workbook)
    assert len(store.events("ana")) == 2000 and store.problems() == []


def test_an_acknowledged_score_survives_sigkill(workbook):
    child = start_child(workbook, "acked", 1_000_000)
    child.stdin.write("go\n"); child.stdin.flush()
    acknowledged = [int(child.stdout.readline()) for _ in range(25)]
    os.kill(child.pid, signal.SIGKILL)  # right after set_score returned for event 24, possibly mid-write of event 25
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn line from the kill is allowed; it was never acknowledged
        events = open_store(workbook).events("ana")
    written = [int(note.split("-")[1]) for note in events.note]
    assert written[:25] == acknowledged == list(range(25))
    assert written == list(range(len(written)))


def test_kill_right_after_one_set_score(workbook):
    script = CHILD.replace("for i in range(count):", "for i in range(1):")
    child = subprocess.Popen([sys.executable, "-c", script, str(workbook/"scores"), str(workbook/"completions"),
                              "acked", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.stdin.write("go\n"); child.stdin.flush()
    assert child.stdout.readline().strip() == "0"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    current = open_store(workbook).current("ana")
    assert list(zip(current.criterion, current.score, current.note)) == [("A", 0.0, "acked-0")]


# The views as they were computed from a list of event dicts, before the columnar store: the reference
# that the columnar views must match exactly (values, dtypes, order).
def reference_events(folder, rater=None):
    from tinyscale.store import _normalise, rater_file_names
    # a rater's events are in its own file, or (in a store written before file names were one-to-one) in the shared one
    paths = sorted(Path(folder).glob("*.jsonl")) if rater is None else [Path(folder)/name for name in rater_file_names(rater)]
    events = []
    for path in paths:
        if not path.exists(): continue
        data = path.read_bytes()
        for raw in data[:data.rfind(b"\n") + 1].split(b"\n")[:-1]:
            if not raw.strip(): continue
            try: record = json.loads(raw)
            except ValueError: continue
            if event_problem(record, path.name) is None: events.append(_normalise(record))
    return events if rater is None else [e for e in events if e["rater"] == rater]


def reference_views(folder, completions, rater=None):
    import pandas as pd
    events = reference_events(folder, rater)
    latest = {}
    for e in events:
        if e["criterion"]: latest[e["completion_id"], e["criterion"], e["rater"]] = e
    latest = {k: e for k, e in latest.items() if e["score"] is not None}
    position = {cid: i for i, cid in enumerate(completions.completion_id)}
    rows = sorted(latest.values(), key=lambda e: (position.get(e["completion_id"], len(position)), e["completion_id"], e["criterion"], e["rater"]))
    current = pd.DataFrame(rows, columns=list(EVENT_FIELDS)).astype({"score": float})
    current = current.merge(completions[["completion_id", "prompt", "completion", "revision", "params"]], on="completion_id", how="left")
    notes = {}
    for e in events:
        if e["criterion"] == "" and e["note"] is not None: notes[e["completion_id"]] = e["note"]
    return dict(events=pd.DataFrame(events, columns=list(EVENT_FIELDS)), current=current, latest=latest,
                notes={cid: n for cid, n in notes.items() if n})


def assert_same_frame(new, old):
    import pandas as pd
    assert list(new.columns) == list(old.columns)
    assert new.dtypes.to_dict() == old.dtypes.to_dict(), (new.dtypes, old.dtypes)
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert new.astype(object).where(new.notna(), None).values.tolist() == old.astype(object).where(old.notna(), None).values.tolist()


def random_logs(folder, seed, completions):
    "Event files with every kind of value a valid event may hold, and some bad lines, written by hand."
    import random
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(completions.completion_id) + ["0123456789abcdef"]  # one completion the table does not know
    raters = ["ana", "bo", "a b", "a_b", "judge:x"]  # 'a b' and 'a_b' share a_b.jsonl, as stores did before one-to-one names
    lines = {}
    for i in range(rng.choice([0, 1, 5, 60])):
        rater = rng.choice(raters)
        criterion = rng.choice(["A", "B", "C", ""])
        record = dict(completion_id=rng.choice(ids), prompt_id=rng.choice(["gr-01", None, ""]), model=rng.choice(["m", None]),
                      config_hash=rng.choice(["h", None]), category="Grammar", criterion=criterion,
                      score=None if criterion == "" else rng.choice([0, 0.5, 1, 1.0, None]), rater=rater,
                      time=rng.choice(["2026-01-01T00:00:00.000000Z", "t", "ü"]),
                      source=rng.choice(["manual", "import", "judge:x"]))
        if rng.random() < 0.7: record["seconds"] = rng.choice([None, 0, 3, 2.5, 2 ** 60])
        if rng.random() < 0.5: record["note"] = rng.choice([None, "", "nice", "ü\u2028"])
        line = json.dumps(record, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.05: line = "not json"
        lines.setdefault(rater.replace(" ", "_").replace(":", "_"), []).append(line)
    for name, rater_lines in lines.items(): (folder/f"{name}.jsonl").write_text("\n".join(rater_lines) + "\n", encoding="utf-8")
    return raters


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("cache_after", [None, 1])
def test_views_match_the_dict_implementation(workbook, seed, cache_after):
    import pandas as pd
    completions = load_completions(workbook/"completions")
    if seed % 3 == 1: completions = completions.assign(params=[1000, None, 3, None])
    if seed % 3 == 2: completions = completions.assign(params=[1000, 2000, 3, 4])
    raters = random_logs(workbook/"scores", seed, completions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for attempt in range(2):  # the second store reads the caches the first one wrote
            store = ScoreStore(workbook/"scores", completions=completions, cache_after=cache_after)
            for rater in [None] + raters:
                old = reference_views(workbook/"scores", store.completions, rater)
                assert_same_frame(store.events(rater), old["events"])
                assert_same_frame(store.current(rater), old["current"])
                assert store._latest(rater) == old["latest"]
                assert list(store._latest(rater)) == list(old["latest"])
                assert store._events(rater) == reference_events(workbook/"scores", rater)
                if rater is None: continue
                assert store.notes(rater) == old["notes"] and list(store.notes(rater)) == list(old["notes"])
                for cid in list(completions.completion_id) + ["0123456789abcdef"]:
                    expected = {crit: e["score"] for (c, crit, _), e in old["latest"].items() if c == cid}
                    assert store.scores_for(cid, rater) == expected and list(store.scores_for(cid, rater)) == list(expected)
            assert store.raters() == sorted({e["rater"] for e in reference_events(workbook/"scores")})
    if cache_after == 1 and list((workbook/"scores").glob("*.jsonl")):
        assert list((workbook/"scores"/".cache").glob("*.npz"))


def test_a_stale_cache_gives_the_scores_appended_since(workbook):
    store = ScoreStore(workbook/"scores", completions=load_completions(workbook/"completions"), cache_after=1)
    store.set_score(GRAMMAR_1M, "A", 1, "ana")
    store.set_score(GRAMMAR_1M, "B", 1, "ana")
    assert store.scores_for(GRAMMAR_1M, "ana") == {"A": 1.0, "B": 1.0}  # this read writes the cache
    cache = workbook/"scores"/".cache"/"ana.jsonl.npz"
    assert cache.exists()
    written = cache.stat().st_mtime_ns
    script = textwrap.dedent(f"""
        from tinyscale.completions import load_completions
        from tinyscale.store import ScoreStore
        store = ScoreStore({str(workbook/'scores')!r}, completions=load_completions({str(workbook/'completions')!r}), cache_after=None)
        store.set_score({GRAMMAR_1M!r}, "A", 0, "ana")
        store.set_score({REASONING_1M!r}, "A", 0.5, "ana")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert cache.stat().st_mtime_ns == written  # the other process left the cache as it was: stale now
    fresh = ScoreStore(workbook/"scores", completions=load_completions(workbook/"completions"), cache_after=1000)
    assert fresh.scores_for(GRAMMAR_1M, "ana") == {"A": 0.0, "B": 1.0}
    assert fresh.scores_for(REASONING_1M, "ana") == {"A": 0.5}
    assert len(fresh.events("ana")) == 4
    assert store.scores_for(GRAMMAR_1M, "ana") == {"A": 0.0, "B": 1.0}  # the first store follows too


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated", "other file", "replaced log"])
def test_a_damaged_or_foreign_cache_is_rebuilt(workbook, damage):
    completions = load_completions(workbook/"completions")
    store = ScoreStore(workbook/"scores", completions=completions, cache_after=1)
    for criterion in "ABCDE": store.set_score(GRAMMAR_1M, criterion, 0.5, "ana")
    store.set_score(GRAMMAR_8M, "A", 1, "bo")
    expected = store.current().copy()
    cache = workbook/"scores"/".cache"/"ana.jsonl.npz"
    assert cache.exists()
    log = workbook/"scores"/"ana.jsonl"
    if damage == "deleted": cache.unlink()
    if damage == "garbage": cache.write_bytes(b"not a cache at all")
    if damage == "truncated": cache.write_bytes(cache.read_bytes()[:200])
    if damage == "other file": shutil.copy(workbook/"scores"/".cache"/"bo.jsonl.npz", cache)
    if damage == "replaced log":  # restored from a backup: a new file (inode) whose scores differ
        backup = log.read_bytes().replace(b'"score":0.5', b'"score":0.0')
        (workbook/"scores"/"restored").write_bytes(backup)
        os.replace(workbook/"scores"/"restored", log)
        expected["score"] = expected["score"].where(expected["rater"] != "ana", 0.0)
        expected["time"] = expected["time"]  # the times are the same: only the scores changed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bad cache is no problem of the store: no warning
        fresh = ScoreStore(workbook/"scores", completions=completions, cache_after=1)
        current = fresh.current()
    assert_same_frame(current, expected)
    assert fresh.problems() == []
    assert cache.exists()  # rebuilt by that read
    again = ScoreStore(workbook/"scores", completions=completions)
    assert_same_frame(again.current(), expected)


def test_a_torn_tail_is_reported_with_a_cache(workbook):
    completions = load_completions(workbook/"completions")
    store = ScoreStore(workbook/"scores", completions=completions, cache_after=1)
    store.set_score(GRAMMAR_1M, "A", 1, "ana")
    store.set_score(GRAMMAR_1M, "B", 1, "ana")
    log = workbook/"scores"/"ana.jsonl"
    with open(log, "ab") as f: f.write(b"}{ garbage\n")
    store.scores_for(GRAMMAR_1M, "ana")  # caches the three lines, the bad one included
    with open(log, "ab") as f: f.write(b'{"completion_id": "' + GRAMMAR_1M.encode() + b'", "criterion": "C", "sco')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh = ScoreStore(workbook/"scores", completions=completions, cache_after=1)
        assert fresh.scores_for(GRAMMAR_1M, "ana") == {"A": 1.0, "B": 1.0}
    messages = [str(w.message) for w in caught]
    assert messages == fresh.problems() and len(messages) == 2
    assert "ana.jsonl, line 3: not JSON" in messages[0]
    assert "ana.jsonl, line 4: skipped an unfinished last line" in messages[1]
    with pytest.warns(UserWarning, match="moved to"):
        fresh.set_score(GRAMMAR_1M, "C", 0, "ana")
    assert ScoreStore(workbook/"scores", completions=completions).scores_for(GRAMMAR_1M, "ana") == {"A": 1.0, "B": 1.0, "C": 0.0}


@pytest.mark.slow
def test_store_benchmark_runs_and_prints_its_figures(tmp_path):
    "bench/store.py end to end on a small store, so the script cannot rot between full runs."
    import re
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(root/"bench"/"store.py"), "--events", "3000"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.match(r"^events=3000 open_s=[\d.]+ open_mb=-?\d+ cold_open_s=[\d.]+ views_s=[\d.]+ report_s=[\d.]+ report_cpu_s=[\d.]+ "
                    r"click_ms=[\d.]+ report_identical=na targets=(PASS|MISS)$", last), done.stdout[-2000:]
    assert "panel click" in done.stdout and "target < 2 s" in done.stdout


def with_repeats(folder, target, seed):
    "A copy of the event files in `folder`, with repeat events (copies of valid events, other scores and notes) among the lines."
    import random
    rng = random.Random(seed)
    target.mkdir(parents=True, exist_ok=True)
    added = 0
    for path in sorted(folder.glob("*.jsonl")):
        lines, out = path.read_text(encoding="utf-8").split("\n")[:-1], []  # not splitlines: a note may hold U+2028
        for line in lines:
            out.append(line)
            try: record = json.loads(line)
            except ValueError: continue
            if event_problem(record, path.name) is not None or rng.random() < 0.4: continue
            repeat = {**record, "repeat": True, "note": rng.choice([None, "seen before?"])}
            if repeat["criterion"]: repeat["score"] = rng.choice([0, 0.5, 1, None])
            out.append(json.dumps(repeat))
            added += 1
        (target/path.name).write_text("\n".join(out) + "\n", encoding="utf-8")
    return added


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cache_after", [None, 1])
def test_repeat_events_change_no_view_and_no_export(workbook, seed, cache_after):
    from tinyscale.wide import wide_scores
    completions = load_completions(workbook/"completions")
    raters = random_logs(workbook/"scores", seed, completions)
    added = with_repeats(workbook/"scores", workbook/"repeated", seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for attempt in range(2):  # the second pair of stores reads the caches the first wrote
            plain = ScoreStore(workbook/"scores", completions=completions, cache_after=cache_after)
            repeated = ScoreStore(workbook/"repeated", completions=completions, cache_after=cache_after)
            assert repeated.raters() == plain.raters()
            for rater in [None] + raters:
                assert_same_frame(repeated.events(rater), plain.events(rater))
                assert_same_frame(repeated.current(rater), plain.current(rater))
                assert repeated._latest(rater) == plain._latest(rater) and repeated._events(rater) == plain._events(rater)
                every = repeated.events(rater, repeats=True)
                assert list(every.columns) == [*EVENT_FIELDS, "repeat"]
                assert len(every) == len(plain.events(rater)) + every.repeat.sum()
                if rater is None or rater not in plain.raters(): continue
                assert repeated.notes(rater) == plain.notes(rater)
                assert repeated.unscored(rater) == plain.unscored(rater)
                assert repeated.progress(rater).equals(plain.progress(rater))
                for cid in completions.completion_id: assert repeated.scores_for(cid, rater) == plain.scores_for(cid, rater)
                again, notes_again = {}, {}
                for e in every[every.repeat & (every.rater == rater)].to_dict("records"):
                    if e["criterion"]: again.setdefault(e["completion_id"], {})[e["criterion"]] = None if e["score"] != e["score"] else e["score"]
                    elif e["note"] is not None and e["note"] == e["note"]: notes_again[e["completion_id"]] = e["note"]
                for cid, labels in again.items():
                    assert repeated.scores_for(cid, rater, repeat=True) == {k: v for k, v in labels.items() if v is not None}
                assert repeated.notes(rater, repeat=True) == {cid: n for cid, n in notes_again.items() if n}
                assert wide_scores(repeated, rater).equals(wide_scores(plain, rater))
            assert repeated.events(repeats=True).repeat.sum() == added


def test_the_cache_keeps_the_repeat_flags_and_an_old_cache_is_not_used(workbook, monkeypatch):
    import numpy as np
    from tinyscale import store as store_module
    completions = load_completions(workbook/"completions")
    store = ScoreStore(workbook/"scores", completions=completions, cache_after=1)
    store.set_score(GRAMMAR_1M, "A", 1, "ana")
    store.set_score(GRAMMAR_1M, "A", 0, "ana", repeat=True)
    store.set_note(GRAMMAR_1M, "ana", "a second look", repeat=True)
    store.set_scores([dict(completion_id=GRAMMAR_1M, criterion="B", score=0.5)], "ana", repeat=True)
    assert store.events("ana", repeats=True).repeat.tolist() == [False, True, True, True]  # this read writes the cache
    cache = workbook/"scores"/".cache"/"ana.jsonl.npz"
    assert cache.exists()

    def fail(self, data): raise AssertionError("parsed the log instead of reading its cache")
    with monkeypatch.context() as patched:
        patched.setattr(store_module._RaterLog, "_parse", fail)
        cached = ScoreStore(workbook/"scores", completions=completions, cache_after=1000)
        assert cached.events("ana", repeats=True).repeat.tolist() == [False, True, True, True]
        assert cached.scores_for(GRAMMAR_1M, "ana") == {"A": 1.0} and cached.notes("ana") == {}
        assert cached.current("ana").score.tolist() == [1.0]

    with np.load(cache) as saved:  # the same cache as version 1 wrote it: no repeat column
        payload = {name: saved[name] for name in saved.files if name != "repeat"}
    meta = json.loads(payload["meta"].tobytes())
    payload["meta"] = np.frombuffer(json.dumps({**meta, "version": 1}).encode(), dtype=np.uint8)
    with open(cache, "wb") as f: np.savez(f, **payload)
    parsed = []
    original = store_module._RaterLog._parse
    monkeypatch.setattr(store_module._RaterLog, "_parse", lambda self, data: (parsed.append(len(data)), original(self, data)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reread = ScoreStore(workbook/"scores", completions=completions, cache_after=1000)
        assert reread.events("ana", repeats=True).repeat.tolist() == [False, True, True, True]
    assert parsed == [(workbook/"scores"/"ana.jsonl").stat().st_size]  # the whole log, the old cache ignored
    assert reread.scores_for(GRAMMAR_1M, "ana") == {"A": 1.0}


def test_a_repeat_field_that_is_not_a_boolean_is_a_bad_line(workbook):
    store = open_store(workbook)
    store.set_score(GRAMMAR_1M, "A", 1, "ana")
    log = workbook/"scores"/"ana.jsonl"
    event = json.loads(lines_of(log)[0])
    assert "repeat" not in event  # an ordinary event is written as before
    with open(log, "ab") as f: f.write(json.dumps({**event, "score": 0, "repeat": "yes"}).encode() + b"\n")
    with pytest.warns(UserWarning, match="ana.jsonl, line 2: repeat 'yes' is not true or false"):
        assert open_store(workbook).scores_for(GRAMMAR_1M, "ana") == {"A": 1.0}
