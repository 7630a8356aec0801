"""Sampling n completions per prompt: vLLM on GPU, transformers on CPU, one interface and one output format.

Output: jsonl, one line per (prompt, sample): {id, sample, text, finish_reason, prompt_tokens, completion_tokens}
(+ `chat` for evalplus prompts: whether the chat prompt was used, which the grader needs to rebuild the program).
temperature 0 is greedy decoding (one sample per prompt).

Both backends get the same token ids (the prompt string encoded as vLLM encodes a text prompt: with the
tokenizer's default special tokens - a BOS for LLaMA-style tokenizers, none for Qwen's), the same stops and the same
seeds, and report stops the same way:
  stops          the harness's, as the benchmark's kind says (prift.benchmarks): math - the Qwen2.5-Math harness's
                 stop strings and the ids of those that are single tokens of the vocabulary (<|im_end|> 151645,
                 <|endoftext|> 151643 for Qwen), configurable under `generation:`; evalplus - evalplus's own stop
                 strings; LiveCodeBench - its runner's "###"; and the model's end-of-sequence ids (tokenizer and
                 generation_config) everywhere, as vLLM stops on them;
  finish_reason  "stop" (end of sequence, a stop id or a stop string), "length" (out of tokens or positions);
  text           what was written before the stop (a stop string or stop token is not part of it);
  completion_tokens  the tokens generated, without a final end-of-sequence / stop token; with a stop string, the
                 tokens up to the one that completed it (vLLM's token_ids);
  seeds          one per (problem id, sample index): a sample does not depend on what else is in its batch;
  positions      prompt + completion never exceed the model's positions (`max_model_len`, e.g. 4,096 for
                 Qwen2.5-Math): the budget of each prompt is min(max_new_tokens, max_model_len - prompt length).
Generation resumes: finished prompts are appended to `<out>.partial` as they complete; its first line is the
fingerprint of what produces the samples (model, prompts, settings), and a partial file made by anything else is
discarded. Batches are fixed by the whole problem list (prompts of similar lengths together, to cut padding), and a
batch with any prompt left is generated whole, so a resumed file equals an uninterrupted one. The final file appears
(atomically) only when every prompt is done.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

# ----------------------------------------------------------------------------------------------------------------------
# Prompts and stops (each benchmark kind renders its prompts and says its stops: prift.benchmarks)

def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Prompt token ids as vLLM makes them from a text prompt (the tokenizer's default special tokens)."""
    return [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]


def eos_ids(tokenizer, model_path: str) -> list[int]:
    """The model's end-of-sequence ids: the tokenizer's and its generation_config's (vLLM stops on both)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    try:
        from transformers import GenerationConfig
        e = GenerationConfig.from_pretrained(model_path).eos_token_id
        ids |= set(e if isinstance(e, (list, tuple)) else [e] if e is not None else [])
    except (OSError, ValueError):  # no generation_config.json
        pass
    return sorted(ids)


def sample_seed(seed: int, problem_id: str, k: int) -> int:
    """A seed per (problem, sample index): the same whatever the batching or a resume, distinct across samples."""
    h = hashlib.sha256(f"{seed}\x00{k}\x00{problem_id}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def budgets(prompt_ids: list[list[int]], keys: list[str], max_new_tokens: int, max_len: int | None) -> list[int]:
    """New tokens each prompt may take: max_new_tokens, capped so that prompt + completion fit max_len positions. A
    prompt that leaves no room is an error (vLLM refuses it too), naming the problem."""
    out = []
    for ids, key in zip(prompt_ids, keys):
        b = max_new_tokens if not max_len else min(max_new_tokens, max_len - len(ids))
        if b < 1:
            raise ValueError(f"problem {key!r}: its prompt of {len(ids)} tokens leaves no room in the model's "
                             f"{max_len} positions (backbone max_model_len / max_position_embeddings)")
        out.append(b)
    return out


def finish(tokenizer, ids: list[int], budget: int, eos: set[int], stops: list[str]) -> tuple[str, str, int]:
    """(text, finish_reason, completion_tokens) of generated ids, as vLLM reports them: cut at the first end-of-
    sequence / stop id (not counted) or at the first stop string (text before it; tokens up to the one that
    completed it), else "length" after `budget` tokens."""
    ids = ids[:budget]
    cut = next((i for i, t in enumerate(ids) if t in eos), None)
    seq = ids if cut is None else ids[:cut]
    text = tokenizer.decode(seq, skip_special_tokens=True)
    hits = [text.find(s) for s in stops if s and s in text]
    if hits:
        lo, hi = 1, len(seq)  # the shortest prefix whose text holds a stop string
        while lo < hi:
            mid = (lo + hi) // 2
            part = tokenizer.decode(seq[:mid], skip_special_tokens=True)
            if any(s and s in part for s in stops):
                hi = mid
            else:
                lo = mid + 1
        return text[:min(hits)], "stop", lo
    if cut is not None:
        return text, "stop", cut
    return text, "length", len(seq)


# ----------------------------------------------------------------------------------------------------------------------
# Backends: (model_path, prompt ids, keys, batches, ...) → yields (prompt index, [(text, finish_reason, n_prompt,
# n_completion)] × n) for every prompt of every batch given

class SeededSampler:
    """A transformers logits processor that samples each row with its own generator (row r of the batch is sample
    `seeds[r]`), so that a sample depends on its (problem, sample index) seed only, as vLLM's per-request seeds: it
    returns scores that are -inf everywhere but at the drawn token, for greedy search to pick."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device):
        self.gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.temperature, self.top_p = float(temperature), float(top_p)

    def __call__(self, input_ids, scores):
        x = scores.float() / self.temperature  # [R, V]
        if self.top_p < 1.0:  # keep the smallest set of tokens whose mass reaches top_p
            sp, si = x.sort(-1, descending=True)
            ps = sp.softmax(-1)
            drop = (ps.cumsum(-1) - ps) >= self.top_p  # the mass before a token already reaches top_p
            x = x.scatter(-1, si, sp.masked_fill(drop, float("-inf")))
        probs = x.softmax(-1)  # [R, V]
        drawn = torch.cat([torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(self.gens)])  # [R]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(drawn), device=scores.device), drawn] = 0.0
        return out


def _generate_transformers(model_path, prompt_ids, keys, batches, *, n, temperature, top_p, max_new_tokens, seed,
                           stop, stop_token_ids, max_model_len=None, dtype=None, timings=None):
    """Batched sampling with KV cache, one generator per sample (SeededSampler)."""
    from transformers import GenerationConfig, LogitsProcessorList
    from prift.backbone import load_model, load_tokenizer
    t0 = time.time()
    tok = load_tokenizer(model_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_path, dtype=dtype, device=device).eval()
    if timings is not None:
        timings["load_s"] = time.time() - t0
    max_pos = getattr(model.config, "max_position_embeddings", None)
    max_len = min(x for x in (max_model_len, max_pos) if x) if (max_model_len or max_pos) else None
    limit = budgets(prompt_ids, keys, max_new_tokens, max_len)
    eos = set(eos_ids(tok, model_path)) | set(stop_token_ids)
    pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos))
    for batch in batches:
        rows = [(i, k) for i in batch for k in range(n)]  # one row per sample
        width = max(len(prompt_ids[i]) for i in batch)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (i, _) in enumerate(rows):  # left padding
            ids[r, width - len(prompt_ids[i]):] = torch.tensor(prompt_ids[i])
            att[r, width - len(prompt_ids[i]):] = 1
        gen_cfg = GenerationConfig(max_new_tokens=max(limit[i] for i in batch), do_sample=False,
                                   eos_token_id=sorted(eos), pad_token_id=pad,
                                   stop_strings=[s for s in stop if s] or None)
        procs = LogitsProcessorList()
        if temperature > 0:
            procs.append(SeededSampler([sample_seed(seed, keys[i], k) for i, k in rows], temperature, top_p, device))
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), generation_config=gen_cfg,
                                 logits_processor=procs, tokenizer=tok)
        gen = out[:, width:].tolist()
        for j, i in enumerate(batch):
            samples = [finish(tok, gen[j * n + k], limit[i], eos, stop) for k in range(n)]
            yield i, [(t, fr, len(prompt_ids[i]), nc) for t, fr, nc in samples]


def _generate_vllm(model_path, prompt_ids, keys, batches, *, n, temperature, top_p, max_new_tokens, seed, stop,
                   stop_token_ids, max_model_len=None, dtype=None, tensor_parallel_size=1,
                   gpu_memory_utilization=0.9, timings=None):
    t0 = time.time()
    from vllm import LLM, SamplingParams
    llm = LLM(model=model_path, tensor_parallel_size=tensor_parallel_size, seed=seed, dtype=dtype or "auto",
              max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization)
    if timings is not None:
        timings["load_s"] = time.time() - t0
    limit = budgets(prompt_ids, keys, max_new_tokens, llm.llm_engine.model_config.max_model_len)
    # One request per sample, each with its own seed: SamplingParams(n=16, seed=s) gives every one of the 16 samples
    # the same seed, hence 16 identical samples (seen with vLLM 0.32); prefix caching shares the prompt's KV cache.
    for batch in batches:
        params = [SamplingParams(n=1, temperature=temperature, top_p=top_p, max_tokens=limit[i], stop=list(stop),
                                 stop_token_ids=list(stop_token_ids), seed=sample_seed(seed, keys[i], k))
                  for i in batch for k in range(n)]
        outs = llm.generate([{"prompt_token_ids": prompt_ids[i]} for i in batch for _ in range(n)], params)
        for j, i in enumerate(batch):
            yield i, [(o.outputs[0].text, o.outputs[0].finish_reason, len(o.prompt_token_ids),
                       vllm_completion_tokens(o.outputs[0])) for o in outs[j * n:(j + 1) * n]]


def vllm_completion_tokens(c) -> int:
    """vLLM keeps the end-of-sequence or stop token it stopped on in ``token_ids`` (``stop_reason`` None or that
    token id); the transformers backend does not count it, nor does this. A stop string (``stop_reason`` a str)
    ends on the token that completed it, which counts in both."""
    n = len(c.token_ids)
    return n - 1 if n and c.finish_reason == "stop" and not isinstance(c.stop_reason, str) else n


BACKENDS = {"transformers": _generate_transformers, "vllm": _generate_vllm}


# ----------------------------------------------------------------------------------------------------------------------
# The partial file: a fingerprint line, then one line per finished prompt

def _read_partial(partial: Path, fingerprint: str, log) -> dict[str, list]:
    """The finished prompts of a partial file made with this fingerprint ({id: rows}); any other partial file is
    discarded (and said so). A line cut by a crash, and what follows it, is dropped."""
    if not partial.exists():
        return {}
    with open(partial, encoding="utf-8") as f:
        lines = f.readlines()
    try:
        head = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        head = {}
    if head.get("prift_partial") != fingerprint:
        log(f"{partial}: made by another model, prompt set or generation settings "
            f"(fingerprint {head.get('prift_partial')} != {fingerprint}); discarded, starting over")
        partial.unlink()
        return {}
    done, keep = {}, [lines[0]]
    for line in lines[1:]:
        try:
            rows = json.loads(line)
        except json.JSONDecodeError:
            break
        keep.append(line)
        done[rows[0]["id"]] = rows
    with open(partial, "w", encoding="utf-8") as f:  # rewrite without a torn last line
        f.writelines(keep)
    return done


def fixed_batches(lengths: list[int], per_batch: int) -> list[list[int]]:
    """Batches of prompt indices, `per_batch` each, of prompts of similar lengths (sorted by length, stable), so that
    left padding costs little: a deterministic function of the whole prompt list, hence the same batches before and
    after a resume."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s:s + per_batch] for s in range(0, len(order), per_batch)]


def generate(model_path: str, problems: list[dict], out: str | Path, *, n: int = 16, temperature: float = 1.0,
             top_p: float = 1.0, max_new_tokens: int = 4096, seed: int = 0, backend: str = "auto",
             batch_size: int = 64, kind: str = "math", fmt: str | None = None, chat: bool = True,
             prompt: str = "harness", stop: list[str] | None = None, stop_token_ids: list[int] | str = "auto",
             max_model_len: int | None = None, provenance: dict | None = None, log=print, **backend_kwargs) -> dict:
    """Sample `n` completions of every problem into `out` (see the module doc) with the prompts and stops of the
    benchmark kind `kind` (prift.benchmarks.KINDS; `fmt`: the benchmark's record format, `chat`, `prompt`, `stop`,
    `stop_token_ids`: what the kind reads of them). `provenance`: what else identifies the samples (the backbone entry
    of the config), part of the partial file's fingerprint."""
    from tqdm import tqdm
    from prift.backbone import load_tokenizer
    from prift.benchmarks import kind as benchmark_kind
    from prift.io import write_jsonl
    from prift.runs import model_identity
    if temperature == 0 and n != 1:
        raise ValueError(f"temperature 0 is greedy decoding: every sample would be the same; set n: 1 (got n={n})")
    if backend == "auto":
        backend = "vllm" if torch.cuda.is_available() else "transformers"
    if backend not in BACKENDS:
        raise ValueError(f"unknown generation backend {backend!r}; known: {sorted(BACKENDS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(model_path)
    K = benchmark_kind(kind)
    prompt_ids = encode_prompts(tok, K.prompts(tok, problems, chat=chat, prompt=prompt))
    stops, stop_ids = K.stops(tok, chat=chat, fmt=fmt, stop=stop, stop_token_ids=stop_token_ids)
    extra = K.sample_fields(tok, chat)
    keys = [str(p["id"]) for p in problems]
    per_batch = max(1, batch_size // n) if backend == "transformers" else max(1, batch_size)
    settings = {"n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed,
                "backend": backend, "per_batch": per_batch, "stop": stops, "stop_token_ids": stop_ids,
                "max_model_len": max_model_len, "dtype": backend_kwargs.get("dtype")}
    fingerprint = hashlib.sha256(json.dumps(
        {"model": model_identity(model_path), "provenance": provenance or {}, "settings": settings,
         "prompts": [[k, ids] for k, ids in zip(keys, prompt_ids)]}, sort_keys=True).encode()).hexdigest()[:24]
    partial = out.with_name(out.name + ".partial")
    done = _read_partial(partial, fingerprint, log)
    batches = [b for b in fixed_batches([len(x) for x in prompt_ids], per_batch) if any(keys[i] not in done for i in b)]
    t0 = time.time()
    n_tok, n_new = 0, 0
    timings = {}
    if batches:
        if not partial.exists():
            partial.write_text(json.dumps({"prift_partial": fingerprint, "settings": settings}) + "\n")
        bar = tqdm(total=sum(len(b) for b in batches) * n, unit="sample", desc=f"generate {out.stem}", mininterval=2)
        with open(partial, "a", encoding="utf-8") as f:
            for i, samples in BACKENDS[backend](model_path, prompt_ids, keys, batches, n=n, temperature=temperature,
                                                top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, stop=stops,
                                                stop_token_ids=stop_ids, max_model_len=max_model_len,
                                                timings=timings, **backend_kwargs):
                bar.update(n)
                if keys[i] in done:  # generated again with its batch: the same samples, already written
                    continue
                rows = [{"id": keys[i], "sample": s, "text": t, "finish_reason": fr, "prompt_tokens": np_,
                         "completion_tokens": nc} | extra for s, (t, fr, np_, nc) in enumerate(samples)]
                n_tok += sum(r["completion_tokens"] for r in rows)
                n_new += 1
                done[keys[i]] = rows
                f.write(json.dumps(rows, ensure_ascii=False) + "\n")
                f.flush()
        bar.close()
    # final file: one line per sample, in the problems' order
    write_jsonl(out, (r for k in keys for r in done[k]))
    partial.unlink(missing_ok=True)
    secs = time.time() - t0
    gen_secs = secs - timings.get("load_s", 0.0)  # sampling alone: without loading the model (and vLLM's warm-up)
    stats = {"problems": len(problems), "resumed": len(problems) - n_new, "n": n, "backend": backend,
             "completion_tokens": n_tok, "seconds": round(secs, 2),
             "load_seconds": round(timings.get("load_s", 0.0), 2),
             "samples_per_s": round(n_new * n / max(secs, 1e-9), 2),
             "tokens_per_s": round(n_tok / max(secs, 1e-9), 1),
             "gen_samples_per_s": round(n_new * n / max(gen_secs, 1e-9), 2),
             "gen_tokens_per_s": round(n_tok / max(gen_secs, 1e-9), 1)}
    log(f"generate: {stats}")
    return stats


def generate_benchmark(cfg: dict, benchmark: str, model: str, problems: str | Path, out: str | Path, *,
                       backbone: str | None = None, seed_offset: int = 0, log=print) -> dict:
    """`prift generate`: sample a benchmark's prepared problems with its kind's prompts and stops and the config's
    generation settings (the global `generation` section, the benchmark's own over it); `backbone`: the model's
    backbone entry (its max_model_len, and part of the samples' provenance); `seed_offset`: added to the config's
    seed (a further seed's run samples its own stream: prift.seeds)."""
    from prift import benchmarks as B
    from prift.config import resolve_weights
    from prift.data import read_jsonl
    entry, K = B.entry(cfg, benchmark), B.kind_of(cfg, benchmark)
    if not K.sampled:
        raise SystemExit(f"benchmark '{benchmark}' (kind {K.name}) is not sampled: `prift grade --model` scores it")
    g = B.generation_settings(cfg, benchmark)
    bb = cfg["backbones"].get(backbone, {}) if backbone else {}
    kw = {"tensor_parallel_size": g["tensor_parallel_size"]} if "tensor_parallel_size" in g and g.get(
        "backend") == "vllm" else {}
    return generate(resolve_weights(cfg, model), read_jsonl(problems), out,
                    n=g.get("n", 16), temperature=g.get("temperature", 1.0),
                    top_p=g.get("top_p", 1.0), max_new_tokens=g.get("max_new_tokens", 4096),
                    seed=cfg["seed"] + seed_offset,
                    backend=g.get("backend", "auto"), batch_size=g.get("batch_size", 64), kind=K.name,
                    fmt=entry.get("format"), chat=entry.get("chat", True), prompt=g.get("prompt", "harness"),
                    stop=g.get("stop"), stop_token_ids=g.get("stop_token_ids", "auto"),
                    max_model_len=bb.get("max_model_len"), provenance={"backbone": bb}, log=log, **kw)
