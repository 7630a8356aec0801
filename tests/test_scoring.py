"""The frozen reference pass: statistics equal those of the model's full logits, provenance is enforced."""
from __future__ import annotations

import pytest
import torch

from prift.backbone import load_model, load_tokenizer
from prift.data import prepare_train, tokenize_all
from prift.scoring import ScoreCache, save_scores, score
from prift.weighting import STAT_KEYS, token_stats


@pytest.fixture(scope="module")
def examples():
    return prepare_train({"generator": "demo_math", "split": "train", "n": 12}, "math", "qwen-boxed")


def test_reference_pass_matches_full_logits(tiny_backbone, examples, tmp_path):
    out = tmp_path / "scores.safetensors"
    prov = score(str(tiny_backbone), examples, out, max_length=96, chunk_size=7, max_batch_tokens=200,
                 log=lambda *_: None)
    assert prov["n_examples"] == len(examples) and not (tmp_path / "scores.safetensors.tmp").exists()
    cache = ScoreCache(out)
    tok = load_tokenizer(str(tiny_backbone))
    model = load_model(str(tiny_backbone)).eval()
    tokenized = tokenize_all(tok, examples, 96)
    assert len(cache) == len(examples)
    for i, t in enumerate(tokenized):
        ids = torch.tensor([t["input_ids"]])
        labels = torch.tensor(t["labels"])[1:]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1]
        ref = token_stats(logits[labels != -100], labels[labels != -100])
        got = cache[i]
        for k in STAT_KEYS:
            torch.testing.assert_close(got[k].double(), ref[k].double(), rtol=1e-4, atol=1e-5, msg=k)
    # a pre-trained prior: most demo response tokens are likely under the reference
    assert float(cache.columns["prob"].mean()) > 0.3
    assert torch.all(cache.columns["mass"] >= cache.columns["prob"] - 1e-6)


def test_provenance_mismatch_names_the_field(tiny_backbone, examples, tmp_path):
    out = tmp_path / "scores.safetensors"
    score(str(tiny_backbone), examples, out, max_length=96, log=lambda *_: None)
    with pytest.raises(ValueError, match="'max_length' differs"):
        ScoreCache(out, expect={"max_length": 128})
    with pytest.raises(ValueError, match="'dataset_hash' differs"):
        ScoreCache(out, expect={"dataset_hash": "0" * 16})


def test_missing_scores_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="prift score"):
        ScoreCache(tmp_path / "nope.safetensors")


def _written(tmp_path):
    """A score file as `prift score` writes it (2 examples of 3 and 5 response tokens), and its columns."""
    g = torch.Generator().manual_seed(0)
    per = [{k: torch.randint(0, 20, (n,), generator=g) if k == "rank" else torch.rand(n, generator=g)
            for k in STAT_KEYS} for n in (3, 5)]
    path = tmp_path / "scores.safetensors"
    save_scores(path, per, ["a", "b"], {"n_examples": 2, "max_length": 96})
    return path, per


def test_score_file_round_trips_with_its_checksums(tmp_path):
    path, per = _written(tmp_path)
    cache = ScoreCache(path, expect={"n_examples": 2})
    assert cache.ids == ["a", "b"] and len(cache) == 2 and "checksums" not in cache.provenance
    for i, ex in enumerate(per):
        for k in STAT_KEYS:
            assert torch.equal(cache[i][k], ex[k].to(cache[i][k].dtype)), k


def test_truncated_score_file_is_an_error_naming_the_path(tmp_path):
    path, _ = _written(tmp_path)
    data = path.read_bytes()
    for cut in (len(data) - 7, 20):          # the columns cut short; the header itself cut short
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"{path}: not a readable score file .*re-run `prift score`"):
            ScoreCache(path)


def test_score_file_with_a_zeroed_column_is_refused(tmp_path):
    """Same size, same header, one column's bytes zeroed (a torn copy): the checksums written with the columns
    catch it, naming the file and the column."""
    import json
    path, _ = _written(tmp_path)
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    start, end = json.loads(data[8:8 + n])["prob"]["data_offsets"]
    data[8 + n + start:8 + n + end] = bytes(end - start)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{path}: the columns \['prob'\] do not match the checksums"):
        ScoreCache(path)


def test_two_process_pass_equals_one_process(tiny_backbone, examples, tmp_path):
    """Under torchrun each rank scores every WORLD_SIZE-th example; rank 0 merges. Same file content as one process."""
    import json
    import os
    import subprocess
    import sys
    one = tmp_path / "one.safetensors"
    score(str(tiny_backbone), examples, one, max_length=96, log=lambda *_: None)
    data = tmp_path / "ex.json"
    data.write_text(json.dumps(examples))
    two = tmp_path / "two.safetensors"
    code = ("import json,sys; from prift.scoring import score; "
            f"score({str(tiny_backbone)!r}, json.load(open({str(data)!r})), {str(two)!r}, max_length=96)")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=os.environ | {"RANK": str(r), "WORLD_SIZE": "2",
                                                                           "LOCAL_RANK": str(r)})
             for r in (1, 0)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    a, b = ScoreCache(one), ScoreCache(two)
    assert a.ids == b.ids and torch.equal(a.offsets, b.offsets)
    for k in STAT_KEYS:
        torch.testing.assert_close(a.columns[k], b.columns[k], rtol=1e-5, atol=1e-6, msg=k)
    assert b.provenance["processes"] == 2 and not list(tmp_path.glob("two.safetensors.part*"))
    # the tokens the pass computed (the cost table's tokens/s): every example's prompt + response, once
    from transformers import AutoTokenizer
    from prift.data import tokenize_all
    real = sum(len(t["input_ids"]) for t in tokenize_all(AutoTokenizer.from_pretrained(str(tiny_backbone)), examples, 96))
    assert a.provenance["input_tokens"] == b.provenance["input_tokens"] == real


def test_packed_reference_pass_gives_the_padded_statistics(tiny_backbone, examples, monkeypatch):
    """Packed rows (one row per batch, position ids restarting per sequence: what sdpa and flash-attention models
    take by default) give each sequence's statistics as the padded batches do, in float64; an sdpa model attends
    per sequence during the packed pass (prift.packing.varlen_sdpa) and is sdpa again afterwards."""
    from prift import packing
    from prift.scoring import packs_by_default, reference_stats
    model = load_model(str(tiny_backbone)).eval().double()
    tokenized = tokenize_all(load_tokenizer(str(tiny_backbone)), examples, 96)
    assert packs_by_default(model) and model.config._attn_implementation == "sdpa"
    padded = reference_stats(model, tokenized, max_batch_tokens=300, chunk_size=7, progress=False, packed=False)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(packing.F, "scaled_dot_product_attention",
                        lambda q, *a, **k: (calls.append(q.shape[2]), sdpa(q, *a, **k))[1])
    packed = reference_stats(model, tokenized, max_batch_tokens=300, chunk_size=7, progress=False)
    assert model.config._attn_implementation == "sdpa"
    assert len({len(t["input_ids"]) for t in tokenized}) > 1   # sequences of different lengths share batches
    # one attention per sequence (a packed row of several) and layer, at the sequence's own length
    lens = [len(t["input_ids"]) for t in tokenized]
    assert sorted(calls) == sorted(n for n in lens for _ in range(model.config.num_hidden_layers))
    for a, b in zip(padded, packed):
        for k in STAT_KEYS:
            torch.testing.assert_close(b[k], a[k], rtol=1e-9, atol=1e-9, msg=k)
    model.config._attn_implementation = "eager"
    assert not packs_by_default(model)   # an eager packed row would attend through a [T, T] mask
    model.config._attn_implementation = "flash_attention_2"
    assert packs_by_default(model)


def test_batches_bound_the_positions_computed():
    from prift.scoring import _batches_by_length
    lengths = [5, 40, 12, 30, 8]
    assert _batches_by_length(lengths, 64) == [[1], [3, 2], [4, 0]]          # 1 x 40, 2 x 30, 2 x 8 positions
    assert _batches_by_length(lengths, 64, packed=True) == [[1], [3, 2, 4, 0]]  # 40, 30 + 12 + 8 + 5
    assert _batches_by_length([70, 3], 64, packed=True) == [[0], [1]]           # a longer sequence goes alone
