"""The frozen reference pass: one forward of a reference model over a tokenised dataset → per-token statistics.

The file stores statistics, not weights, so that every rule and threshold stays free: PriFT-prob, PriFT-mass, the
pretrained variants of EAFT/IDFT/TALR and the Table 2 selections all read the same file. Format: one safetensors
file, columns concatenated over examples in dataset order (`offsets[i]:offsets[i+1]` are example i's response
tokens), float32 statistics and int32 ranks (4 bytes per token per statistic), provenance in the metadata.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from prift import packing
from prift.weighting import STAT_KEYS, token_stats_chunked

# Fields that must agree between the cached statistics and the data a trainer feeds (else a clear error).
PROVENANCE_CHECKED = ("tokenizer_hash", "dataset_hash", "max_length", "n_examples", "tokenization")
CHECKSUMS = "checksums"  # metadata key: {column: sha256 of its bytes} (files written before it have none)


def _batches_by_length(lengths: list[int], max_tokens: int, packed: bool = False) -> list[list[int]]:
    """Indices sorted by length (longest first), grouped so that the positions a batch computes stay ≤ max_tokens:
    batch_size × longest padded, the sum of the lengths packed."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, cur, total = [], [], 0
    for i in order:
        grown = total + lengths[i] if packed else (len(cur) + 1) * lengths[cur[0] if cur else i]
        if cur and grown > max_tokens:
            batches.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += lengths[i]
    if cur:
        batches.append(cur)
    return batches


def packs_by_default(model) -> bool:
    """Whether the reference pass packs its batches when not told: where each sequence of a packed row can attend to
    itself alone, at the cost of its own length - flash-attention's variable-length path, or sdpa through
    prift.packing.varlen_sdpa. Padded batches, even sorted by length, compute much padding when a batch spans a wide
    range of lengths (32 MATH-500 examples in one 32,768-token batch: half of the positions;
    benchmarks/results/reference_pass.md). An eager model stays padded: its packed row would attend through a
    [T, T] block-diagonal mask."""
    impl = str(getattr(model.config, "_attn_implementation", ""))
    return impl.startswith("flash") or impl in ("sdpa", packing.ATTENTION)


def _padded_batch(tokenized: list[dict], batch: list[int]) -> dict:
    lengths = [len(tokenized[i]["input_ids"]) for i in batch]
    L = max(lengths)
    ids = torch.zeros((len(batch), L), dtype=torch.long)
    att = torch.zeros((len(batch), L), dtype=torch.long)
    lab = torch.full((len(batch), L), -100, dtype=torch.long)
    for r, (i, n) in enumerate(zip(batch, lengths)):
        ids[r, :n] = torch.tensor(tokenized[i]["input_ids"])
        att[r, :n] = 1
        lab[r, :n] = torch.tensor(tokenized[i]["labels"])
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def _packed_batch(tokenized: list[dict], batch: list[int]) -> dict:
    """One row [1, T] of the sequences one after another, position ids restarting at each (transformers' packed
    attention); each sequence's first token is not a target, so no position predicts across a boundary."""
    lab = []
    for i in batch:
        lab += [-100] + list(tokenized[i]["labels"][1:])
    return {"input_ids": torch.tensor([t for i in batch for t in tokenized[i]["input_ids"]])[None],
            "position_ids": torch.cat([torch.arange(len(tokenized[i]["input_ids"])) for i in batch])[None],
            "labels": torch.tensor(lab)[None]}


@torch.no_grad()
def reference_stats(model, tokenized: list[dict], *, topk: int = 20, max_batch_tokens: int = 16384,
                    chunk_size: int = 1024, device: str | None = None, progress: bool = True,
                    compile: bool = False, vocab_rows: int | None = None, packed: bool | None = None) -> list[dict]:
    """Statistics of every response token (label != -100, predicted from the previous position) of every example.
    Returns, per example, a dict of 1-D tensors (float32; rank int64) in the order of the response tokens.
    vocab_rows: the distribution over the first rows of the output layer only (the rows the student of Tables 7/8
    has: see `score`). packed: batches as padding-free packed rows (None: `packs_by_default`); the same
    statistics either way."""
    from tqdm import tqdm
    device = device or next(model.parameters()).device
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    head = model.get_output_embeddings()
    head_w = head.weight[:vocab_rows] if vocab_rows else head.weight  # [V, D]
    head_b = getattr(head, "bias", None)
    head_b = head_b[:vocab_rows] if (head_b is not None and vocab_rows) else head_b
    packed = packs_by_default(model) if packed is None else packed
    results: list[dict | None] = [None] * len(tokenized)
    workspace = {}  # the [chunk, V] buffers of token_stats_chunked, allocated once for the whole pass
    lengths = [len(t["input_ids"]) for t in tokenized]
    bar = tqdm(total=sum(lengths), unit="tok", unit_scale=True, desc="reference pass", disable=not progress,
               mininterval=2)
    # an sdpa model attends per sequence while this pass packs (prift.packing), and is sdpa again afterwards
    with packing.varlen_sdpa_during(model, packed):
        for batch in _batches_by_length(lengths, max_batch_tokens, packed):
            b = {k: v.to(device) for k, v in (_packed_batch if packed else _padded_batch)(tokenized, batch).items()}
            lab = b.pop("labels")
            hidden = base(**b, use_cache=False).last_hidden_state  # [B, L, D] ([1, T, D] packed)
            targets = lab[:, 1:]  # [B, L-1]: token t+1 is predicted at position t
            mask = targets != -100
            h = hidden[:, :-1][mask]  # [N, D] only response positions: no [B, L, V] tensor is made
            stats = token_stats_chunked(h, head_w, targets[mask], topk=topk, chunk_size=chunk_size,
                                        lm_head_bias=head_b, compile=compile, workspace=workspace)
            counts = ([sum(1 for l in tokenized[i]["labels"][1:] if l != -100) for i in batch] if packed
                      else mask.sum(1).tolist())
            start = 0
            for r, i in enumerate(batch):
                results[i] = {k: stats[k][start:start + counts[r]].float().cpu() if k != "rank"
                              else stats[k][start:start + counts[r]].long().cpu() for k in STAT_KEYS}
                start += counts[r]
            bar.update(sum(lengths[i] for i in batch))
    bar.close()
    return results  # type: ignore[return-value]


def column_checksums(tensors: dict) -> dict[str, str]:
    """sha256 of each column's bytes (offsets included): what the file's metadata records, so that a file whose
    columns were changed after writing (a zeroed block, a torn copy of the right size) is refused on load."""
    import hashlib
    return {k: hashlib.sha256(memoryview(tensors[k].contiguous().numpy()).cast("B")).hexdigest()
            for k in sorted(tensors)}


def save_scores(path: str | Path, per_example: list[dict], ids: list[str], provenance: dict) -> None:
    """Atomic write of the columnar file (a crash leaves no file that looks complete), with the checksum of every
    column in the metadata (`checksums`, verified by ScoreCache)."""
    from safetensors.torch import save_file
    counts = torch.tensor([0] + [len(s["prob"]) for s in per_example], dtype=torch.long)
    tensors = {"offsets": torch.cumsum(counts, 0)}
    for k in STAT_KEYS:
        col = torch.cat([s[k] for s in per_example]) if per_example else torch.zeros(0)
        tensors[k] = col.to(torch.int32) if k == "rank" else col.to(torch.float32)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in provenance.items()}
    meta["ids"] = json.dumps(ids)
    meta[CHECKSUMS] = json.dumps(column_checksums(tensors))
    from prift.io import atomic_path
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


class ScoreCache:
    """Read side of the reference statistics: `cache[i]` → dict of 1-D tensors for example i's response tokens."""

    def __init__(self, path: str | Path, expect: dict | None = None):
        from safetensors import SafetensorError, safe_open
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"reference statistics not found: {self.path} (run `prift score` first)")
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                self.columns = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError) as e:  # truncated or not a safetensors file at all
            raise ValueError(f"{self.path}: not a readable score file ({e}); delete it and re-run `prift score`") \
                from None
        self.ids = json.loads(meta.pop("ids", "[]"))
        want = json.loads(meta.pop(CHECKSUMS, "null"))
        if want is not None:
            have = column_checksums(self.columns)
            bad = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
            if bad:
                raise ValueError(f"{self.path}: the columns {bad} do not match the checksums written with them (the "
                                 f"file changed after `prift score` wrote it); delete it and re-run `prift score`")
        self.provenance = {k: json.loads(v) for k, v in meta.items()}
        for field, value in (expect or {}).items():
            have = self.provenance.get(field)
            if have != value:
                raise ValueError(f"{self.path}: provenance field '{field}' differs: the cached statistics have "
                                 f"{have!r}, the training data has {value!r}; re-run `prift score`")
        self.offsets = self.columns.pop("offsets")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> dict:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return {k: v[a:b] for k, v in self.columns.items()}


def _merge_parts(parts: list[Path], out: Path, n_examples: int, provenance: dict) -> None:
    """Merge the shard files of a multi-process pass (example i was scored by shard i % n)."""
    caches = [ScoreCache(p) for p in parts]
    per_example, ids = [None] * n_examples, [None] * n_examples
    for r, c in enumerate(caches):
        for j in range(len(c)):
            i = r + j * len(caches)
            per_example[i] = {k: v.long() if k == "rank" else v for k, v in c[j].items()}
            ids[i] = c.ids[j]
    save_scores(out, per_example, ids, provenance)


def student_vocab_rows(ref_tok, student_tok, ref_rows: int, student_rows: int, *, reference: str,
                       student: str) -> int:
    """The output rows a reference model scores a student's tokens over (Tables 7, 8): min of both output layers
    (Qwen2.5-Math-7B has 152,064 rows, the 1.5B 151,936, over one tokenizer of 151,665 tokens), after checking that
    the reference's tokenizer maps every token of the student's vocabulary to the same id and that those ids lie in
    the shared rows. Raises naming both models otherwise."""
    rv, sv = ref_tok.get_vocab(), student_tok.get_vocab()
    differ = [t for t, i in sv.items() if rv.get(t) != i]
    if differ:
        raise ValueError(f"reference '{reference}' cannot score the tokens of '{student}': {len(differ)} of the "
                         f"student's {len(sv)} tokens have another id or none in the reference's vocabulary (e.g. "
                         f"{differ[:3]}); a cross-model reference needs the student's tokenizer family")
    rows = min(ref_rows, student_rows)
    if max(sv.values()) >= rows:
        raise ValueError(f"reference '{reference}' ({ref_rows} output rows) cannot score the tokens of '{student}' "
                         f"({student_rows} output rows): token id {max(sv.values())} lies outside the shared rows")
    return rows


def score(model_path: str, examples: list[dict], out: str | Path, *, max_length: int, topk: int = 20,
          dtype: str | None = None, device: str | None = None, max_batch_tokens: int = 16384,
          chunk_size: int = 1024, template: str = "", revision: str | None = None,
          reference: str = "", student_path: str | None = None, student: str = "", log=print,
          wait_s: float = 3600, compile: bool | str = "auto") -> dict:
    """`prift score`: tokenise, run the reference, write statistics + provenance. Returns the provenance.

    `student_path`: the model whose training data the statistics are for, when it is not the reference itself
    (Tables 7, 8): the data are tokenised exactly as that student's trainer tokenises them (its tokenizer, its chat
    template), and the reference's distribution is taken over the output rows both models have, so that the cached
    p_t lines up with the student's labels (`student_vocab_rows`).

    Under torchrun / accelerate (WORLD_SIZE > 1) each process scores every WORLD_SIZE-th example on its own GPU and
    writes a part file; rank 0 merges the parts into `out`. One SLURM job with N GPUs = one pass, N times faster.
    compile: torch.compile the passes over the vocabulary (weighting.token_stats_chunked); "auto" = on GPU only."""
    from prift.backbone import load_model, load_tokenizer
    from prift.data import TOKENIZATION, check_lengths, dataset_hash, length_report, tokenize_all, tokenizer_hash
    t0 = time.time()
    out = Path(out)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    tok = load_tokenizer(model_path, revision=revision)
    model = load_model(model_path, dtype=dtype, device=device, revision=revision).eval()
    rows = None
    if student_path:
        from transformers import AutoConfig
        ref_tok, tok = tok, load_tokenizer(student_path)
        rows = student_vocab_rows(ref_tok, tok, model.get_output_embeddings().weight.shape[0],
                                  AutoConfig.from_pretrained(student_path).get_text_config().vocab_size,
                                  reference=reference or model_path, student=student or student_path)
    tokenized = tokenize_all(tok, examples, max_length)
    if rank == 0:
        check_lengths(length_report(tokenized), max_truncated_frac=1.0, max_empty_frac=1.0,
                      what=f"reference pass of '{reference or model_path}'", log=log)
    mine = tokenized[rank::world]
    if compile == "auto":
        compile = str(device).startswith("cuda")
    stats = reference_stats(model, mine, topk=topk, max_batch_tokens=max_batch_tokens, chunk_size=chunk_size,
                            device=device, progress=rank == 0, compile=bool(compile), vocab_rows=rows)
    prov = {"reference": reference or model_path, "model_path": model_path, "revision": revision,
            "student": student or None, "vocab_rows": rows, "tokenization": TOKENIZATION,
            "tokenizer_hash": tokenizer_hash(tok), "dataset_hash": dataset_hash(examples), "template": template,
            "max_length": max_length, "topk": topk, "n_examples": len(examples),
            "input_tokens": sum(len(t["input_ids"]) for t in tokenized),   # what the pass computes (cost table)
            "dtype": str(next(model.parameters()).dtype), "processes": world}
    if world > 1:
        part = out.with_name(f"{out.name}.part{rank}of{world}")
        save_scores(part, stats, [t["id"] for t in mine], prov | {"n_examples": len(mine)})
        if rank != 0:
            return prov
        parts = [out.with_name(f"{out.name}.part{r}of{world}") for r in range(world)]
        while not all(p.exists() for p in parts):  # each part appears atomically
            if time.time() - t0 > wait_s:
                raise TimeoutError(f"reference pass: missing part files {[str(p) for p in parts if not p.exists()]}")
            time.sleep(1)
        prov["n_tokens"] = sum(ScoreCache(p).offsets[-1].item() for p in parts)
        prov["seconds"] = round(time.time() - t0, 2)
        _merge_parts(parts, out, len(examples), prov)
        for p in parts:
            p.unlink()
    else:
        prov["n_tokens"] = sum(len(s["prob"]) for s in stats)
        prov["seconds"] = round(time.time() - t0, 2)
        save_scores(out, stats, [t["id"] for t in tokenized], prov)
    n_tokens = prov["n_tokens"]
    log(f"reference pass: {len(examples)} examples, {n_tokens} response tokens, {world} process(es), "
        f"{n_tokens / max(time.time() - t0, 1e-9):.0f} tok/s → {out}")
    return prov
