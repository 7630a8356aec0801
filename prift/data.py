"""Datasets: a registry of sources (hub id, local path, or the demo generator), prompt templates and tokenisation.

Every dataset entry of the config is a dict with one of
  ``generator``  the project's deterministic demo generator (no network),
  ``path``       a local jsonl / jsonl.gz / json file (the override every dataset has),
  ``hub``        a Hugging Face dataset id (with ``split``, ``name``, ``revision``), loaded with `datasets`.
``path`` wins over ``hub`` so that a cluster without internet can point at a local copy.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

# ----------------------------------------------------------------------------------------------------------------------
# Templates

SYSTEM_PROMPT = "You are a helpful assistant."
BOXED_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def math_messages(problem: str, template: str = "qwen-boxed") -> list[dict]:
    """Chat messages of a math prompt. ``qwen-boxed`` is the authors' evaluation template; ``plain`` is the bare
    problem as the user turn (the training prompt of the NuminaMath recipe)."""
    if template == "qwen-boxed":
        return [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": problem + BOXED_SUFFIX}]
    if template == "plain":
        return [{"role": "user", "content": problem}]
    raise ValueError(f"unknown prompt template {template!r} (known: qwen-boxed, plain)")


def harness_prompt(problem: str) -> str:
    """The math evaluation prompt of the Qwen2.5-Math harness (prompt type "qwen-boxed"): one fixed ChatML string
    for every backbone, whatever its own chat template (a Qwen2.5 chat template renders the same text from
    math_messages(problem, "qwen-boxed"); Qwen3's, DeepSeekMath's or LLaMA's would not)."""
    return (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{problem}{BOXED_SUFFIX}<|im_end|>\n"
            f"<|im_start|>assistant\n")


def mcq_prompt(question: str, options: dict[str, str]) -> str:
    """ASFT's medical multiple-choice prompt."""
    opts = "\n".join(f"{k}. {v}" for k, v in options.items())
    return f"Question: {question}\n\nOptions:\n{opts}\n\nAnswer:"


# ----------------------------------------------------------------------------------------------------------------------
# Reading files and the hub

class DataError(ValueError):
    """A file or record that cannot be read as its config entry says; the message names the file and the line."""


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a jsonl / jsonl.gz file (blank lines skipped), or of a .json file (a list, or a mapping's
    values). Every error names the file and the line: missing file, invalid UTF-8, invalid JSON, a line that is no
    JSON object, a corrupt gzip stream."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file not found: {path}")
    if path.name.endswith(".json"):
        raw = _read_bytes(path)
        try:
            data = json.loads(_utf8(raw, path))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        return list(data) if isinstance(data, list) else list(data.values())
    rows = []
    for i, line in _lines(path):
        try:
            row = json.loads(_utf8(line, path, i))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{i}: not a JSON object (a record is {{\"field\": value, ...}}), got "
                            f"{type(row).__name__}")
        rows.append(row)
    return rows


def _opener(path: Path):
    return gzip.open if path.suffix == ".gz" else open


def _read_bytes(path: Path) -> bytes:
    try:
        with _opener(path)(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a truncated stream an EOFError
        raise DataError(f"{path}: cannot be read ({e})") from None


def _lines(path: Path):
    """(line number, stripped bytes) of the non-blank lines of a text file, gzip or not."""
    try:
        with _opener(path)(path, "rb") as f:
            for i, line in enumerate(f, 1):
                line = line.strip()
                if line:
                    yield i, line
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be read ({e})") from None


def _utf8(raw: bytes, path: Path, line: int | None = None) -> str:
    """`raw` decoded; invalid UTF-8 is an error naming the file and the line (`line`: the line `raw` is, or None
    when `raw` is the whole file)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if line is None:
            line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start:e.start + 1]!r}); re-encode the file "
                        f"as UTF-8") from None


def count_records(path: str | Path, stop: int | None = None) -> int:
    """How many records read_jsonl would return, counting at most `stop` (jsonl: non-blank lines, not parsed)."""
    path = Path(path)
    if path.name.endswith(".json"):
        return len(read_jsonl(path))
    n = 0
    for n, _ in enumerate(_lines(path), 1):
        if stop is not None and n >= stop:
            break
    return n


def record_location(spec: dict, idx: int, *, base_dir: str | Path = ".") -> str:
    """Where record `idx` of a dataset entry is, for error messages: `file:line` for a jsonl file, `file record i`
    for a .json file, the hub id or generator with the record's index otherwise."""
    if spec.get("path"):
        p = Path(spec["path"])
        p = p if p.is_absolute() else Path(base_dir) / p
        if not p.name.endswith(".json"):
            for n, (line, _) in enumerate(_lines(p)):
                if n == idx:
                    return f"{p}:{line}"
        return f"{p} record {idx}"
    if spec.get("hub"):
        name = f" {spec['name']}" if spec.get("name") else ""
        return f"{spec['hub']}{name} [{spec.get('split', 'train')}] record {idx}"
    return f"generator {spec.get('generator')} [{spec.get('split')}] record {idx}"


def load_records(spec: dict, *, base_dir: str | Path = ".") -> list[dict]:
    """Raw records of one dataset entry of the config (see module doc)."""
    if "generator" in spec:
        gen = spec["generator"]
        from prift.demo_data import GENERATORS
        if gen not in GENERATORS:
            raise KeyError(f"unknown generator {gen!r}; available: {sorted(GENERATORS)}")
        rows = GENERATORS[gen](**{k: v for k, v in spec.items() if k not in ("generator", "limit", "label", "kind")})
    elif spec.get("path"):
        p = Path(spec["path"])
        rows = read_jsonl(p if p.is_absolute() else Path(base_dir) / p)
    elif spec.get("hub"):
        import datasets  # network access: only on the cluster
        ds = datasets.load_dataset(spec["hub"], spec.get("name"), split=spec.get("split", "train"),
                                   revision=spec.get("revision"))
        rows = [dict(r) for r in ds]
    else:
        raise ValueError(f"dataset entry needs one of 'generator', 'path' or 'hub': {spec}")
    limit = spec.get("limit")
    return rows[:limit] if limit else rows


# ----------------------------------------------------------------------------------------------------------------------
# Normalised training examples: {id, messages, response}

# The fields each training format reads (a record without one of them is refused, naming the file and the line).
FORMAT_FIELDS = {"numina": ("problem", "solution"), "math": ("problem", "solution"), "messages": ("messages",),
                 "medmcqa": ("question", "opa", "opb", "opc", "opd", "cop")}


def to_sft_example(rec: dict, fmt: str, template: str, idx: int) -> dict:
    """One raw training record → {id, messages (prompt turns), response}."""
    if fmt not in FORMAT_FIELDS:
        raise ValueError(f"unknown training format {fmt!r} (known: {', '.join(FORMAT_FIELDS)})")
    missing = [k for k in FORMAT_FIELDS[fmt] if rec.get(k) is None]
    if missing:
        raise ValueError(f"no {' or '.join(repr(k) for k in missing)} field (format '{fmt}' reads "
                         f"{', '.join(FORMAT_FIELDS[fmt])}; the record has {', '.join(map(repr, rec)) or 'no field'})")
    if fmt in ("numina", "math"):  # AI-MO/NuminaMath-CoT and the demo: problem + worked solution
        return {"id": str(rec.get("id", idx)), "messages": math_messages(rec["problem"], template),
                "response": rec["solution"]}
    if fmt == "messages":  # tulu-3-sft-personas-code and any chat dataset: last assistant turn is the response
        msgs = rec["messages"]
        if not msgs or msgs[-1].get("role") != "assistant":
            raise ValueError("'messages' must end with an assistant turn")
        return {"id": str(rec.get("id", idx)), "messages": msgs[:-1], "response": msgs[-1]["content"]}
    # medmcqa: MedMCQA train: question, opa..opd, cop (0-3) → ASFT's prompt, answer letter
    opts = {L: rec[f"op{l}"] for L, l in zip("ABCD", "abcd")}
    if str(rec["cop"]) not in ("0", "1", "2", "3"):
        raise ValueError(f"'cop' must be the index 0-3 of the correct option, got {rec['cop']!r}")
    letter = "ABCD"[int(rec["cop"])]
    return {"id": str(rec.get("id", idx)), "prompt": mcq_prompt(rec["question"], opts),
            "response": f" {letter}. {opts[letter]}"}


def _examples(spec: dict, fmt: str, template: str, exclude_problems: set[str], base_dir, extra: int = 0
              ) -> tuple[int, list[tuple[int, dict]]]:
    """(records read, [(record index, normalised example)]) of a dataset entry, the benchmarks' problems left out;
    `extra` records past the entry's `limit` are read too. A record that does not fit its format is an error naming
    the file and the line (prift.data.record_location)."""
    limit = spec.get("limit")
    rows = load_records({**spec, "limit": limit + extra} if extra and limit else spec, base_dir=base_dir)
    out = []
    for i, r in enumerate(rows):
        if r.get("problem") in exclude_problems:
            continue
        try:
            out.append((i, to_sft_example(r, fmt, template, i)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{record_location(spec, i, base_dir=base_dir)}: {e}") from None
    return len(rows), out


def prepare_train(spec: dict, fmt: str, template: str, exclude_problems: set[str] = frozenset(),
                  base_dir: str | Path = ".") -> list[dict]:
    """Normalised training examples of a dataset entry, without the benchmarks' problems."""
    return [ex for _, ex in _examples(spec, fmt, template, exclude_problems, base_dir)[1]]


class HeldoutError(ValueError):
    """The dataset has too few records for `analysis.heldout` held-out examples (config key analysis.heldout)."""


def prepare_train_heldout(spec: dict, fmt: str, template: str, heldout: int,
                          exclude_problems: set[str] = frozenset(),
                          base_dir: str | Path = ".") -> tuple[list[dict], list[dict]]:
    """(train, held): prepare_train's examples and `heldout` more never trained on, for the drift probes. With a
    `limit` they are the records right after the first `limit` (the training set is then prepare_train's, probes on
    or off); without one, the last `heldout` examples (the training set loses them). Too few records for that is a
    HeldoutError (prift.preflight checks the same before any job where the records can be counted)."""
    limit = spec.get("limit")
    src = spec.get("path") or spec.get("hub") or f"generator {spec.get('generator')}"
    n_rows, out = _examples(spec, fmt, template, exclude_problems, base_dir, extra=heldout)
    if limit and n_rows < limit + heldout:
        raise HeldoutError(f"heldout={heldout}: {src} has {n_rows} records, {max(n_rows - limit, 0)} after its "
                           f"first limit={limit} (needs {limit + heldout})")
    cut = limit if limit else (out[-heldout][0] if len(out) > heldout else None)
    if cut is None or not any(i < cut for i, _ in out):
        raise HeldoutError(f"heldout={heldout} leaves no training example ({len(out)} examples of {src} in all)")
    train, held = [ex for i, ex in out if i < cut], [ex for i, ex in out if i >= cut]
    if not held:
        raise HeldoutError(f"heldout={heldout}: the {heldout} records of {src} after the first limit={limit} are "
                           f"all benchmark problems")
    return train, held


def read_examples(path: str | Path) -> list[dict]:
    """A prepared training set (`prift prepare --domain`: {id, messages | prompt, response} per line), as the
    reference pass and the trainer read it; a row without these fields is an error naming the file and the line."""
    rows = read_jsonl(path)
    for i, r in enumerate(rows):
        problems = [f"no '{k}' field" for k in ("id", "response") if k not in r]
        if "messages" not in r and "prompt" not in r:
            problems.append("no 'messages' or 'prompt' field")
        if "response" in r and not isinstance(r["response"], str):
            problems.append(f"'response' is {type(r['response']).__name__}, not text")
        if problems:
            raise DataError(f"{record_location({'path': str(path)}, i)}: {'; '.join(problems)} (a prepared "
                            f"training example is {{id, messages or prompt, response}}: `prift prepare --domain` "
                            f"writes them)")
    return rows


def dataset_hash(examples: list[dict]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def tokenizer_hash(tokenizer) -> str:
    """Hash of the vocabulary, special tokens and chat template: what decides the token ids."""
    h = hashlib.sha256()
    h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    h.update(str(tokenizer.eos_token).encode())
    h.update(str(getattr(tokenizer, "chat_template", "")).encode())
    return h.hexdigest()[:16]


# How the token ids of a training example are derived (`tokenize_example`). Part of the provenance of every score
# file and of every run's fingerprint: statistics or checkpoints made another way are refused, not reused.
TOKENIZATION = "joint-v1"


def prompt_text(tokenizer, ex: dict) -> tuple[str, bool]:
    """(the prompt as text, whether encoding it adds the tokenizer's own special tokens).

    Chat messages go through the backbone's chat template, which writes its own special tokens (encoded without
    adding more, as `apply_chat_template(tokenize=True)` does); a raw prompt (the medical format) is encoded as
    lm-eval encodes a context: with the tokenizer's defaults, i.e. a BOS for LLaMA-2 and none for Qwen."""
    if "messages" in ex:
        return tokenizer.apply_chat_template(ex["messages"], add_generation_prompt=True, tokenize=False), False
    return ex["prompt"], True


def _encode(tokenizer, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def tokenize_example(tokenizer, ex: dict, max_length: int) -> dict:
    """input_ids = prompt + response + eos, truncated to ``max_length``; labels = -100 on the prompt.

    The response ids come from ONE encoding of prompt + response, split at the prompt's length (lm-eval's
    `_encode_pair`: the whole is encoded, the ids after the prompt's own encoding are the response's; for a raw
    prompt, trailing spaces of the prompt move to the response first, as lm-eval does). Encoded on its own, a SentencePiece tokenizer (LLaMA-2) starts
    " A. Hypertension" with a bare "▁" token, i.e. it would train a token at the very position the evaluation scores
    " A"; jointly, the first trained token is "▁A", the id lm-eval scores after "Answer:".
    Both the reference pass (`prift score`) and the trainer call this function, so the response tokens of the
    cached statistics line up with the trainer's labels one to one."""
    text, special = prompt_text(tokenizer, ex)
    response = ex["response"]
    n_spaces = len(text) - len(text.rstrip())
    if special and n_spaces and text.strip():  # a raw prompt, as lm-eval scores it (a chat prompt ends where
        text, response = text[:-n_spaces], text[-n_spaces:] + response  # generation starts: "assistant\n")
    p = _encode(tokenizer, text, special)
    whole = _encode(tokenizer, text + response, special)
    r = whole[len(p):] + [tokenizer.eos_token_id]
    ids = (p + r)[:max_length]
    labels = ([-100] * len(p) + r)[:max_length]
    return {"id": ex["id"], "input_ids": ids, "labels": labels, "truncated": len(p) + len(r) > max_length,
            "empty": not ex["response"].strip()}


def tokenize_all(tokenizer, examples: list[dict], max_length: int) -> list[dict]:
    out = [tokenize_example(tokenizer, ex, max_length) for ex in examples]
    empty = [t["id"] for t in out if all(l == -100 for l in t["labels"][1:])]
    if empty:
        raise ValueError(f"{len(empty)} examples have no response token within max_length={max_length} "
                         f"(first ids: {empty[:5]}); raise max_length or filter them")
    return out


def length_report(tokenized: list[dict]) -> dict:
    """How many tokenised examples have an empty response (only the end-of-sequence token is trained) or were cut
    by max_length (their response is partly or wholly lost), with the first ids of each."""
    n = len(tokenized)
    cut = [t["id"] for t in tokenized if t["truncated"]]
    empty = [t["id"] for t in tokenized if t["empty"]]
    return {"examples": n, "truncated": len(cut), "truncated_frac": len(cut) / max(n, 1), "truncated_ids": cut[:5],
            "empty": len(empty), "empty_frac": len(empty) / max(n, 1), "empty_ids": empty[:5]}


def check_lengths(report: dict, *, max_truncated_frac: float, max_empty_frac: float, what: str, log=print) -> None:
    """Log the length report of a tokenised dataset and stop past the allowed fractions (training recipe keys
    `max_truncated_frac`, `max_empty_frac`)."""
    log(f"{what}: {report['examples']} examples, {report['truncated']} cut by max_length "
        f"({100 * report['truncated_frac']:.2f}%), {report['empty']} with an empty response "
        f"({100 * report['empty_frac']:.2f}%)")
    for key, limit, fix in (("truncated", max_truncated_frac, "raise max_length"),
                            ("empty", max_empty_frac, "filter the data")):
        if report[f"{key}_frac"] > limit:
            raise ValueError(f"{what}: {report[key]} of {report['examples']} examples are {key} "
                             f"({100 * report[f'{key}_frac']:.2f}% > max_{key}_frac={limit:g}; first ids: "
                             f"{report[f'{key}_ids']}); {fix} or raise max_{key}_frac in the training recipe")
