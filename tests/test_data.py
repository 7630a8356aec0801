"""Datasets: the demo generator, the real benchmark loaders, tokenisation and the tiny backbone's tokenizer."""
from __future__ import annotations

import gzip
import json
import logging

import pytest
import yaml

from prift import data as D, demo_data
from prift.backbone import load_tokenizer
from prift.cli import main
from prift.io import write_jsonl
from tests.conftest import REPO


def test_demo_is_deterministic_and_in_real_formats():
    assert demo_data.demo_math("train", 20) == demo_data.demo_math("train", 20)
    assert demo_data.demo_math("train", 20, seed=1) != demo_data.demo_math("train", 20)
    olymp = demo_data.demo_math("olympiadbench", 5)
    assert set(olymp[0]) >= {"question", "solution", "final_answer"} and isinstance(olymp[0]["solution"], list)
    assert isinstance(demo_data.demo_math("amc23", 3)[0]["answer"], float)
    assert len(demo_data.demo_math("aime24", 3)[0]["answer"]) == 3  # AIME-style zero-padded strings
    with pytest.raises(ValueError, match="unknown demo split"):
        demo_data.demo_math("gsm8k", 3)


@pytest.mark.parametrize("bench", list(demo_data.DEMO_BENCHMARKS))
def test_demo_gold_answers_grade_their_own_solutions(bench):
    from prift.benchmarks.math import problem
    from prift.grading import math_correct
    for i, r in enumerate(demo_data.demo_math(bench, 10)):
        p = problem(r, demo_data.DEMO_BENCHMARKS[bench][1], i)
        sol = r.get("solution") or f"The final answer is $\\boxed{{{int(r['answer'])}}}$."
        sol = sol[0] if isinstance(sol, list) else sol
        assert math_correct(sol, p["gold"]), (bench, sol, p["gold"])


def test_real_benchmark_loaders(eval_data):
    from prift.benchmarks.math import problem
    sizes = {"math500": 500, "minerva_math": 272, "olympiadbench": 675, "aime24": 30, "amc23": 40}
    for bench, n in sizes.items():
        recs = D.load_records({"path": str(eval_data / "math" / bench / "test.jsonl")})
        probs = [problem(r, bench, i) for i, r in enumerate(recs)]
        assert len(probs) == n and len({p["id"] for p in probs}) == n, bench
        assert all(p["problem"] and p["gold"] for p in probs), bench
    amc = problem(D.read_jsonl(eval_data / "math/amc23/test.jsonl")[0], "amc23", 0)
    assert amc["gold"] == "27"
    aime = [problem(r, "aime24", i) for i, r in enumerate(D.read_jsonl(eval_data / "math/aime24/test.jsonl"))]
    assert any(p["gold"].startswith("0") for p in aime)  # leading zeros kept, graded numerically


def test_missing_file_and_bad_json_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        D.read_jsonl(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        D.read_jsonl(bad)
    with pytest.raises(ValueError, match="one of 'generator', 'path' or 'hub'"):
        D.load_records({"split": "train"})


def test_training_set_excludes_evaluation_problems():
    evals = {r["problem"] for r in demo_data.demo_math("math500", 24)}
    train = D.prepare_train({"generator": "demo_math", "split": "train", "n": 2000}, "math", "qwen-boxed",
                            exclude_problems=evals)
    assert train and not ({ex["messages"][-1]["content"].split("\n")[0] for ex in train} & evals)
    assert len(train) < 2000  # the demo's small problem space does overlap: the filter really removes some


def test_tokenize_masks_prompt_and_ends_with_eos(tiny_backbone):
    tok = load_tokenizer(str(tiny_backbone))
    ex = D.prepare_train({"generator": "demo_math", "split": "train", "n": 1}, "math", "qwen-boxed")[0]
    t = D.tokenize_example(tok, ex, 512)
    n_prompt = sum(l == -100 for l in t["labels"])
    assert t["labels"][:n_prompt] == [-100] * n_prompt
    assert t["labels"][n_prompt:] == t["input_ids"][n_prompt:]
    assert t["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(t["input_ids"][n_prompt:-1]) == ex["response"]
    assert tok.decode(t["input_ids"][:n_prompt]).endswith("<|im_start|>assistant\n")
    short = D.tokenize_example(tok, ex, 10)
    assert len(short["input_ids"]) == 10
    with pytest.raises(ValueError, match="no response token within max_length=10"):
        D.tokenize_all(tok, [ex], 10)


def test_tiny_tokenizer_roundtrips_through_autotokenizer(tiny_backbone):
    """A tokenizer trained offline must survive AutoTokenizer (which rebuilds Qwen2's pre-tokenizer)."""
    from tokenizers import Tokenizer
    tok = load_tokenizer(str(tiny_backbone))
    raw = Tokenizer.from_file(str(tiny_backbone / "tokenizer.json"))
    text = "Solve for $x$: $3x + 5 = 20$.\n\nThe final answer is $\\boxed{5}$.  Done"
    assert tok(text, add_special_tokens=False)["input_ids"] == raw.encode(text, add_special_tokens=False).ids
    assert tok.decode(tok(text)["input_ids"]) == text
    cfg = json.loads((tiny_backbone / "config.json").read_text())
    assert cfg["model_type"] == "qwen2" and cfg["vocab_size"] == len(tok)


def test_heldout_comes_after_the_training_subset(tmp_path):
    """The drift probes' held-out examples: with a `limit`, the records right after the training subset, which stays
    exactly what it is with probes off; without one, the last examples (carved out); errors name the problem."""
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [{"problem": f"p{i}", "solution": f"s{i}", "id": i} for i in range(20)])
    spec = {"path": str(path), "limit": 12}
    off = D.prepare_train(spec, "math", "plain", exclude_problems={"p3"})
    train, held = D.prepare_train_heldout(spec, "math", "plain", exclude_problems={"p3", "p13"}, heldout=4)
    assert train == off and len(train) == 11
    assert [h["id"] for h in held] == ["12", "14", "15"]  # records 12-15, the benchmark's p13 removed
    train, held = D.prepare_train_heldout({"path": str(path)}, "math", "plain", heldout=5)
    assert [t["id"] for t in train] == [str(i) for i in range(15)] and [h["id"] for h in held] == ["15", "16", "17",
                                                                                               "18", "19"]
    with pytest.raises(D.HeldoutError, match="0 after its first limit=20"):
        D.prepare_train_heldout({"path": str(path), "limit": 20}, "math", "plain", heldout=4)
    with pytest.raises(D.HeldoutError, match=r"20 records, 2 after its first limit=18 \(needs 22\)"):
        D.prepare_train_heldout({"path": str(path), "limit": 18}, "math", "plain", heldout=4)
    with pytest.raises(ValueError, match="heldout=20 leaves no training example"):
        D.prepare_train_heldout({"path": str(path)}, "math", "plain", heldout=20)


def sentencepiece_tokenizer():
    """A LLaMA-2-style tokenizer built offline: SentencePiece's normaliser (prepend "▁", spaces to "▁"), byte-fallback
    BPE whose merges never cross a "▁" (as SentencePiece's pieces), BOS added by default. As LLaMA-2's, it encodes
    " A. Hypertension" alone as "▁", "▁A", ".", ... and "Answer: A" with the single piece "▁A"."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import LlamaTokenizerFast
    corpus = ["Question: Which drug lowers blood pressure?", "Options:", "A. Hypertension", "B. Aspirin",
              "C. Insulin", "D. Metformin", "Answer: A", "Answer: B. Aspirin", "The answer is C."] * 20
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"],
                                                        show_progress=False))
    state = json.loads(tok.to_str())
    state["model"]["merges"] = [m for m in state["model"]["merges"]   # no "A." piece: LLaMA-2 has "▁A" and "."
                                if "." not in "".join(m if isinstance(m, list) else m.split(" "))]
    state["pre_tokenizer"] = None                                     # LLaMA-2's tokenizer.json has none
    tok = Tokenizer.from_str(json.dumps(state))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return LlamaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                              add_bos_token=True, add_eos_token=False)


def test_medical_labels_come_from_the_joint_encoding_lm_eval_scores():
    """LLaMA-2 (Tables 2, 9): the first trained token of " A. Hypertension" is the id lm-eval scores for the gold
    letter after "Answer:" (its _encode_pair: whole encoded, split at the context's length), not a bare "▁"; and the
    prompt ids the model is trained on, BOS included, are the context ids lm-eval scores."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = sentencepiece_tokenizer()
    assert tok.convert_ids_to_tokens(tok(" A. Hypertension", add_special_tokens=False)["input_ids"])[:2] == ["▁", "▁A"]
    rec = {"question": "Which drug lowers blood pressure?", "opa": "Hypertension", "opb": "Aspirin",
           "opc": "Insulin", "opd": "Metformin", "cop": 0}
    ex = D.to_sft_example(rec, "medmcqa", "plain", 0)
    t = D.tokenize_example(tok, ex, 512)
    n_prompt = sum(label == -100 for label in t["labels"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=128))
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=1, device="cpu")
    ctx, cont = lm._encode_pair(ex["prompt"], " A")   # lm-eval's multiple-choice request for choice "A"
    assert t["input_ids"][:n_prompt] == ctx and ctx[0] == tok.bos_token_id
    assert len(cont) == 1 and t["labels"][n_prompt] == cont[0] == tok.convert_tokens_to_ids("▁A")
    assert tok.decode(t["input_ids"][n_prompt:-1]) == "A. Hypertension" and t["input_ids"][-1] == tok.eos_token_id


# ----------------------------------------------------------------------------------------------------------------------
# bad data: one error naming the file and the line (issue #15, items 4 and 7)

def test_invalid_utf8_names_the_file_and_the_line(tmp_path):
    good, bad = b'{"problem": "p", "solution": "s"}\n', b'{"problem": "caf\xe9", "solution": "s"}\n'
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_bytes(good + b"\n" + good + bad)          # a blank line: the bad record is on line 4
    with pytest.raises(D.DataError, match=r"train\.jsonl:4: not valid UTF-8"):
        D.read_jsonl(jsonl)
    gz = tmp_path / "train.jsonl.gz"
    gz.write_bytes(gzip.compress(good + bad))
    with pytest.raises(D.DataError, match=r"train\.jsonl\.gz:2: not valid UTF-8"):
        D.read_jsonl(gz)
    whole = tmp_path / "train.json"
    whole.write_bytes(b"[\n" + good.strip() + b",\n" + bad.strip() + b"\n]\n")
    with pytest.raises(D.DataError, match=r"train\.json:3: not valid UTF-8"):
        D.read_jsonl(whole)
    with pytest.raises(D.DataError, match=r"train\.jsonl:4: not valid UTF-8"):   # also through a dataset entry
        D.prepare_train({"path": str(jsonl)}, "math", "plain")


def test_training_record_without_its_fields_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"problem": "p0", "solution": "s0"}, {"problem": "p1", "answer": "1"}]
    path.write_text("\n".join(json.dumps(r) for r in rows[:1]) + "\n\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(D.DataError, match=r"train\.jsonl:3: no 'solution' field \(format 'math' reads problem, "
                                          r"solution; the record has 'problem', 'answer'\)"):
        D.prepare_train({"path": str(path)}, "math", "plain")
    chat = tmp_path / "chat.jsonl"
    write_jsonl(chat, [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
                       {"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(D.DataError, match=r"chat\.jsonl:2: 'messages' must end with an assistant turn"):
        D.prepare_train({"path": str(chat)}, "messages", "plain")
    with pytest.raises(D.DataError, match=r"generator demo_math \[train\] record 0: no 'question'"):
        D.prepare_train({"generator": "demo_math", "split": "train", "n": 2}, "medmcqa", "plain")


def _cli_config(tmp_path, **sections) -> str:
    """config/demo.yaml with its results under tmp_path and some sections replaced, as a file for the verbs."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["results"] = str(tmp_path / "results")
    for key, value in sections.items():
        node = cfg
        *parents, last = key.split(".")
        for k in parents:
            node = node[k]
        node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_prepared_example_without_response_names_the_file_and_the_line(tmp_path, caplog):
    """`prift score` / `prift sft` read the prepared training set: a row without `response` is one error naming the
    file and the line, before any model is loaded (not a KeyError inside tokenisation)."""
    data = tmp_path / "math.jsonl"
    write_jsonl(data, [{"id": "0", "prompt": "p", "response": "r"}, {"id": "1", "prompt": "p"}])
    cfg = _cli_config(tmp_path)
    with caplog.at_level(logging.ERROR, logger="prift"):
        rc = main(["score", "--config", cfg, "--domain", "math", "--reference", "tiny", "--data", str(data),
                   "--out", str(tmp_path / "scores.safetensors")])
    assert rc == 2
    assert f"{data}:2: no 'response' field" in caplog.text
    assert not (tmp_path / "scores.safetensors").exists()


def test_benchmark_record_without_gold_is_refused_at_prepare(tmp_path, caplog):
    """A record with an empty answer (and no \\boxed{} in its solution) would grade every non-answer as correct:
    `prift prepare --benchmark` refuses it, naming the file and the line."""
    bench = tmp_path / "math500.jsonl"
    write_jsonl(bench, [{"problem": "1+1?", "answer": "2", "unique_id": "a"},
                        {"problem": "2+2?", "answer": "", "solution": "It is four.", "unique_id": "b"}])
    olymp = tmp_path / "olympiad.jsonl"
    write_jsonl(olymp, [{"id": 7, "question": "x?", "final_answer": [""]}])
    cfg = _cli_config(tmp_path, **{"benchmarks.math500.data": {"path": str(bench)},
                                   "benchmarks.olympiadbench.data": {"path": str(olymp)}})
    out = tmp_path / "problems.jsonl"
    with caplog.at_level(logging.ERROR, logger="prift"):
        assert main(["prepare", "--config", cfg, "--benchmark", "math500", "--out", str(out)]) == 2
        assert main(["prepare", "--config", cfg, "--benchmark", "olympiadbench", "--out", str(out)]) == 2
    assert f"{bench}:2: math500 record 1 (id 'b'): no gold answer" in caplog.text
    assert f"{olymp}:1: olympiadbench record 0 (id '7'): no gold answer" in caplog.text
    assert not out.exists()


def test_prepare_does_not_blame_analysis_heldout_for_bad_data(tmp_path, caplog):
    """With drift probes on, a data error of the training set is reported as itself (file and line), not under the
    unrelated config key `analysis.heldout`."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"problem": f"p{i}", "solution": f"s{i}"}) + "\n" for i in range(5))
                     + '{"problem": "p5", "solution": \n' + "".join(
                         json.dumps({"problem": f"p{i}", "solution": f"s{i}"}) + "\n" for i in range(6, 40)))
    cfg = _cli_config(tmp_path, **{"domains.math.train": {"path": str(train)}, "analysis.heldout": 4})
    with caplog.at_level(logging.ERROR, logger="prift"):
        rc = main(["prepare", "--config", cfg, "--domain", "math", "--out", str(tmp_path / "train.out.jsonl"),
                   "--heldout-out", str(tmp_path / "held.jsonl")])
    assert rc == 2
    assert f"{train}:6: not valid JSON" in caplog.text and "analysis.heldout" not in caplog.text
