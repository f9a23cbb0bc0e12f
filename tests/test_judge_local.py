"""The local backend with the workbook's random-weight TinyStories-1M fixture and the real GPT-2 tokenizer: its garbage answers must be recorded as
parse failures (never as scores), through the chat template when the tokenizer has one, and from the command line."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from judge_support import make_workbook
from tinyscale.core import read_jsonl
from tinyscale.judge import Judge
from tinyscale.judge_backends import LocalBackend, make_backend
from tinyscale.models import write_fixture_model
from tinyscale.store import ScoreStore

CHAT_TEMPLATE = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"


def tiny_model(folder: Path, chat_template: str | None = None, seed: int = 0) -> Path:
    """The workbook's TinyStories-1M-shaped fixture (random weights, GPT-2 tokenizer), optionally with a chat template."""
    write_fixture_model(folder, "1M", seed)
    if chat_template:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        tokenizer.chat_template = chat_template
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def workbook(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYSCALE_ROOT", str(tmp_path))
    return tmp_path, make_workbook(tmp_path, per_category=1)


def test_garbage_answers_are_recorded_as_parse_failures_not_scores(workbook):
    root, completions = workbook
    backend = LocalBackend(str(tiny_model(root / "models" / "judge-neo")), max_tokens=8)
    store = ScoreStore(root / "scores", completions=completions)
    result = Judge(backend).run(completions.iloc[:2], store, progress=False)
    assert (result.called, result.failed, result.requests, result.cost) == (2, 2, 4, 0.0)
    for record in result.records:
        assert record["status"] == "parse_failure" and record["scores"] == {}
        assert len(record["answers"]) == 2 and record["problem"]
        assert record["judge_backend"] == "local" and record["judge_model"] == "judge-neo"
        assert record["judge_version"] == f"judge-neo@{backend.weights}" and record["params"]["temperature"] == 0
        assert record["output_tokens"] == 16 and record["input_tokens"] > 100 and record["prices_as_of"] == "free"
    assert len(store.current("judge:judge-neo")) == 0
    # greedy decoding: the same model gives the same answer again
    again = Judge(backend, cache=None, retry_failed=True).run(completions.iloc[:1], progress=False)
    assert again.records[0]["answers"] == result.records[0]["answers"]


def test_the_chat_template_is_used_when_the_tokenizer_has_one(workbook):
    root, _ = workbook
    backend = LocalBackend(str(tiny_model(root / "chat", CHAT_TEMPLATE)), max_tokens=4).connect()
    tokenizer, _ = backend._client
    ids = backend._prompt_ids(tokenizer, [{"role": "user", "content": "Score this."}])
    assert tokenizer.decode(ids[0]) == "<|user|>Score this.\n<|assistant|>"
    reply = backend.complete([{"role": "user", "content": "Score this."}])
    assert reply.input_tokens == ids.shape[1] and reply.output_tokens == 4


def test_other_weights_are_another_judge(workbook):
    root, _ = workbook
    first = make_backend("local", str(tiny_model(root / "a" / "neo", seed=0)))
    second = make_backend("local", str(tiny_model(root / "b" / "neo", seed=1)))
    assert first.model == second.model == "neo" and first.params != second.params


def test_local_backend_from_the_command_line(workbook, cli_process):
    root, _ = workbook
    folder = tiny_model(root / "models" / "judge-neo")
    result = cli_process("judge", "--backend", "local", "--model", folder, "--max-tokens", "6", "--limit", "1", "--no-progress",
                         root=root, timeout=300)
    assert result.status == 1 and "1 of 1 judgment(s) failed: 1 parse failure" in result.err, result.err
    assert "judge:judge-neo: 6 completion(s); judged now 1, from cache 0, without scores 1; 2 request(s); cost $0.0000" in result.out
    records = read_jsonl(root / "data" / "judge-cache" / "local_judge-neo.jsonl")
    assert len(records) == 1 and records[0]["status"] == "parse_failure"
    refused = cli_process("judge", "--backend", "local", "--model", root / "nowhere", root=root, timeout=120)
    assert refused.status == 1 and "not a model folder" in refused.err


def test_the_recorded_log_probabilities_are_the_models_own(workbook):
    "Each answer token's recorded log-probability and alternatives are those of one forward pass over the prompt and the answer."
    root, _ = workbook
    backend = LocalBackend(str(tiny_model(root / "judge-lp")), max_tokens=6).connect()
    messages = [{"role": "user", "content": "Score this story: Once upon a time there was a cat."}]
    reply = backend.complete(messages)
    tokenizer, lm = backend._client
    assert reply.tokens is not None and len(reply.tokens) == reply.output_tokens == 6
    assert "".join(t[0] for t in reply.tokens) == reply.text
    prompt = backend._prompt_ids(tokenizer, messages)[0].tolist()
    generated = lm.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), max_new_tokens=6,
                            do_sample=False, pad_token_id=tokenizer.eos_token_id)[0, len(prompt):].tolist()
    with torch.no_grad():
        logits = lm(torch.tensor([prompt + generated])).logits[0, len(prompt) - 1:-1]
    logprobs = torch.log_softmax(logits.float(), -1)
    for step, (text, logprob, alternatives) in enumerate(reply.tokens):
        assert logprob == pytest.approx(float(logprobs[step, generated[step]]), abs=1e-4)
        top = logprobs[step].topk(5)
        assert [a for a, _ in alternatives] == [tokenizer.decode([i]) for i in top.indices.tolist()]
        assert [v for _, v in alternatives] == pytest.approx(top.values.tolist(), abs=1e-4)
        assert logprob == pytest.approx(alternatives[0][1])  # greedy: the chosen token is the likeliest
    assert LocalBackend(str(root / "judge-lp"), max_tokens=2, logprobs=False).complete(messages).tokens is None
