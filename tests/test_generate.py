"""prift.generate with the transformers backend on the tiny backbone: the output format, reproducibility, resuming
from a crashed run's partial file, and the throughput figures of its stats (load time apart)."""
from __future__ import annotations


import pytest

from prift.data import read_jsonl
from prift.demo_data import demo_math
from prift.generate import generate

KEYS = {"id", "sample", "text", "finish_reason", "prompt_tokens", "completion_tokens"}


def _problems(k):
    return [{"id": f"q{i}", "problem": r["problem"]} for i, r in enumerate(demo_math("math500", k))]


def _quiet(*_):
    pass


def test_format_reproducibility_and_stats(tiny_backbone, tmp_path):
    problems = _problems(3)
    kw = dict(n=4, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=3, backend="transformers", batch_size=8,
              log=_quiet)
    st = generate(str(tiny_backbone), problems, tmp_path / "a.jsonl", **kw)
    rows = read_jsonl(tmp_path / "a.jsonl")
    assert [(r["id"], r["sample"]) for r in rows] == [(p["id"], s) for p in problems for s in range(4)]
    assert all(set(r) == KEYS for r in rows)
    assert all(0 < r["completion_tokens"] <= 12 for r in rows)
    assert all((r["finish_reason"] == "length") == (r["completion_tokens"] == 12) for r in rows)
    assert not (tmp_path / "a.jsonl.partial").exists()
    # stats: the token count of the rows written, and every rate key (their values are timings: benchmarks/)
    assert st["completion_tokens"] == sum(r["completion_tokens"] for r in rows)
    assert {"seconds", "load_seconds", "samples_per_s", "tokens_per_s", "gen_samples_per_s",
            "gen_tokens_per_s"} <= set(st)
    # same seed, same samples (a batch at a time); another seed, other samples
    generate(str(tiny_backbone), problems, tmp_path / "b.jsonl", **kw)
    assert read_jsonl(tmp_path / "b.jsonl") == rows
    generate(str(tiny_backbone), problems, tmp_path / "c.jsonl", **(kw | {"seed": 4}))
    assert [r["text"] for r in read_jsonl(tmp_path / "c.jsonl")] != [r["text"] for r in rows]


def _interrupt_after(monkeypatch, k):
    """Make the transformers backend stop (as a killed job would) after it has yielded k prompts."""
    from prift import generate as G
    inner = G.BACKENDS["transformers"]

    def stopping(*a, **kw):
        for j, item in enumerate(inner(*a, **kw)):
            if j == k:
                raise KeyboardInterrupt("killed")
            yield item
    monkeypatch.setitem(G.BACKENDS, "transformers", stopping)
    return lambda: monkeypatch.setitem(G.BACKENDS, "transformers", inner)


KW = dict(n=3, temperature=1.0, top_p=0.9, max_new_tokens=10, backend="transformers", batch_size=6, log=_quiet)


def test_resumed_generation_equals_the_uninterrupted_one(tiny_backbone, tmp_path, monkeypatch):
    """Killed in the middle of a batch (2 prompts per batch), with a torn last line: the resumed file equals the
    uninterrupted one sample for sample (a seed per problem and sample; a batch with a prompt left is generated
    whole, the prompts it already wrote are kept)."""
    problems = _problems(5)
    generate(str(tiny_backbone), problems, tmp_path / "full.jsonl", seed=0, **KW)
    full = read_jsonl(tmp_path / "full.jsonl")
    out = tmp_path / "s.jsonl"
    restore = _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        generate(str(tiny_backbone), problems, out, seed=0, **KW)
    restore()
    partial = tmp_path / "s.jsonl.partial"
    assert len(partial.read_text().splitlines()) == 1 + 3          # the fingerprint line and q0, q1, q2
    with open(partial, "a") as f:
        f.write('[{"id": "q3", "sam')                                # a line torn by the kill
    st = generate(str(tiny_backbone), problems, out, seed=0, **KW)
    assert st["resumed"] == 3 and st["problems"] == 5
    assert read_jsonl(out) == full
    assert not partial.exists()


@pytest.mark.parametrize("change", ["model", "seed", "max_new_tokens", "prompts"])
def test_a_partial_file_of_another_model_or_setting_is_discarded(tiny_backbone, tmp_path, monkeypatch, change):
    """A leftover partial file made by another model, seed, setting or prompt set is not merged: it is discarded,
    said so in the log, and the result equals a clean run."""
    import shutil
    problems = _problems(4)
    other_model = tmp_path / "other"
    shutil.copytree(tiny_backbone, other_model)            # the same weights rewritten: another model file
    (other_model / "model.safetensors").write_bytes((tiny_backbone / "model.safetensors").read_bytes())
    first = {"model": (str(other_model), problems, {}), "seed": (str(tiny_backbone), problems, {"seed": 1}),
             "max_new_tokens": (str(tiny_backbone), problems, {"max_new_tokens": 7}),
             "prompts": (str(tiny_backbone), [dict(p, problem=p["problem"] + " ") for p in problems], {})}[change]
    out = tmp_path / "s.jsonl"
    restore = _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        generate(first[0], first[1], out, **(KW | {"seed": 0} | first[2]))
    restore()
    logs = []
    st = generate(str(tiny_backbone), problems, out, seed=0, **(KW | {"log": logs.append}))
    assert st["resumed"] == 0 and any("discarded, starting over" in line for line in logs)
    generate(str(tiny_backbone), problems, tmp_path / "clean.jsonl", seed=0, **KW)
    assert read_jsonl(out) == read_jsonl(tmp_path / "clean.jsonl")


def test_sampling_stops_where_the_harness_stops(base_like, tmp_path):
    """A model whose eos is <|endoftext|> but which ends its turn with <|im_end|>: with the harness's stops the text
    ends at <|im_end|> ("stop", the stop token not counted); without them the model writes on past its turn. The same
    seeds give the same tokens up to the stop, so each stopped text is a prefix of the unstopped one."""
    from prift.backbone import load_tokenizer
    tok = load_tokenizer(str(base_like))
    assert tok.eos_token == "<|endoftext|>"
    problems = _problems(4)
    kw = dict(n=4, temperature=1.0, max_new_tokens=60, backend="transformers", batch_size=16, seed=0, log=_quiet)
    generate(str(base_like), problems, tmp_path / "stop.jsonl", **kw)
    generate(str(base_like), problems, tmp_path / "free.jsonl", stop=[], stop_token_ids=[], **kw)
    stopped, free = read_jsonl(tmp_path / "stop.jsonl"), read_jsonl(tmp_path / "free.jsonl")
    assert all(f["text"].startswith(s["text"]) for s, f in zip(stopped, free))
    assert all(f["completion_tokens"] >= s["completion_tokens"] for s, f in zip(stopped, free))
    past = [(s, f) for s, f in zip(stopped, free) if f["completion_tokens"] > s["completion_tokens"]]
    assert len(past) >= len(stopped) // 4                  # turns ended by <|im_end|>, written on past without stops
    assert all(s["finish_reason"] == "stop" and f["text"] != s["text"] for s, f in past)
    assert sum(f["finish_reason"] == "length" for _, f in past) >= len(past) // 2
    assert all(s["completion_tokens"] < 60 for s, _ in past)       # (token counting: test_finish_counts_...)


def test_stop_rules_of_each_harness(tiny_backbone):
    from prift.backbone import load_tokenizer
    from prift.benchmarks import KINDS
    from prift.benchmarks.math import HARNESS_STOP
    tok = load_tokenizer(str(tiny_backbone))
    strings, ids = KINDS["math"].stops(tok)
    assert strings == list(HARNESS_STOP) == ["</s>", "<|im_end|>", "<|endoftext|>"]
    assert ids == sorted(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"]))   # </s> is not a token here
    from evalplus.provider.utility import EOS
    chat, _ = KINDS["evalplus"].stops(tok, chat=True)
    assert chat == EOS + ["\n```\n"]
    assert KINDS["evalplus"].stops(tok, chat=False, fmt="mbpp")[0] == EOS + ['\n"""', "\nassert"]
    assert KINDS["livecodebench"].stops(tok) == (["###"], [])


def test_finish_counts_tokens_as_vllm_does(tiny_backbone):
    """finish(): an end-of-sequence or stop id is cut and not counted; a stop string ends the text before it and counts
    the tokens up to the one that completed it; otherwise "length" after the budget."""
    from prift.backbone import load_tokenizer
    from prift.generate import finish
    tok = load_tokenizer(str(tiny_backbone))
    body = tok("The answer is 4.", add_special_tokens=False)["input_ids"]
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert finish(tok, body + [eos] + body, 50, {eos}, []) == ("The answer is 4.", "stop", len(body))
    tail = tok(" Question: next", add_special_tokens=False)["input_ids"]
    text, reason, n = finish(tok, body + tail, 50, {eos}, ["Question:"])
    assert (text, reason) == ("The answer is 4. ", "stop")
    assert "Question:" in tok.decode((body + tail)[:n]) and "Question:" not in tok.decode((body + tail)[:n - 1])
    assert finish(tok, body + tail, 3, {eos}, ["Question:"]) == (tok.decode(body[:3]), "length", 3)


def test_harness_prompt_is_one_string_for_every_backbone(tiny_backbone, tmp_path):
    """Math evaluation renders the harness's fixed string whatever the backbone's chat template (here a non-ChatML
    one), byte for byte; `template` keeps the backbone's own."""
    import shutil
    from prift.backbone import load_tokenizer
    from prift.benchmarks import KINDS
    other = tmp_path / "llama-chat"
    shutil.copytree(tiny_backbone, other)
    (other / "chat_template.jinja").write_text(
        "{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[ASSISTANT] {% endif %}")
    tok = load_tokenizer(str(other))
    q = {"id": "1", "problem": "What is $1+1$?"}
    want = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is $1+1$?\n"
            "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
            "<|im_start|>assistant\n")
    assert KINDS["math"].prompts(tok, [q]) == [want]
    assert KINDS["math"].prompts(tok, [q], prompt="template") == [
        "[SYSTEM] You are a helpful assistant.\n[USER] What is $1+1$?\nPlease reason step by step, and put your "
        "final answer within \\boxed{}.\n[ASSISTANT] "]


def test_greedy_needs_one_sample(tiny_backbone, tmp_path):
    with pytest.raises(ValueError, match="n: 1"):
        generate(str(tiny_backbone), _problems(1), tmp_path / "g.jsonl", n=2, temperature=0.0, log=_quiet)


def test_prompts_are_encoded_as_vllm_encodes_text_and_fit_the_positions(tiny_backbone):
    """Both backends take the prompt ids vLLM makes from a text prompt: the tokenizer's default special tokens (a BOS
    for LLaMA-style tokenizers such as DeepSeekMath's, none for Qwen's); a prompt's budget keeps prompt + completion
    within the model's positions (Qwen2.5-Math: 4,096), and a prompt that leaves no room is an error naming it."""
    from prift.backbone import load_tokenizer
    from prift.generate import budgets, encode_prompts
    from tests.test_data import sentencepiece_tokenizer
    sp = sentencepiece_tokenizer()
    (ids,) = encode_prompts(sp, ["Answer: A"])
    assert ids[0] == sp.bos_token_id and ids[1:] == sp("Answer: A", add_special_tokens=False)["input_ids"]
    qwen_like = load_tokenizer(str(tiny_backbone))
    (ids,) = encode_prompts(qwen_like, ["<|im_start|>user\nhi<|im_end|>\n"])
    assert ids == qwen_like("<|im_start|>user\nhi<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert budgets([[0] * 100, [0] * 3990], ["a", "b"], 4096, 4096) == [3996, 106]
    assert budgets([[0] * 100], ["a"], 4096, None) == [4096]
    with pytest.raises(ValueError, match="problem 'b': its prompt of 4096 tokens leaves no room"):
        budgets([[0] * 10, [0] * 4096], ["a", "b"], 4096, 4096)
