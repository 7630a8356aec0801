"""Drift analysis (Fig. 1a/1b/3a/3c): statistics against scipy, and the probe on a real (tiny) training run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from prift.analysis import DriftProbe, drift_metrics, pearson, rank_bins, read_probes, spearman


def test_correlations_match_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(500, generator=g)
    b = 0.5 * a + 0.5 * torch.rand(500, generator=g)
    b[::7] = b[3]  # ties
    assert pearson(a, b) == pytest.approx(sps.pearsonr(a.double().numpy(), b.double().numpy())[0], rel=1e-10)
    assert spearman(a, b) == pytest.approx(sps.spearmanr(a.double().numpy(), b.double().numpy())[0], rel=1e-10)


def test_rank_bins_are_equal_sized_by_reference_rank():
    p = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.05])
    bins = rank_bins(p, 5)
    assert torch.bincount(bins).tolist() == [2] * 5
    assert bins[p.argmin()] == 0 and bins[p.argmax()] == 4
    m = drift_metrics(p, p, bins)
    assert m["pearson"] == pytest.approx(1.0) and m["mae"] == 0.0
    assert m["median_p_by_bin"] == sorted(m["median_p_by_bin"])
    # two tokens per bin; torch.median takes the lower of the two middle values
    assert m["median_p_by_bin"] == [float(np.sort(p.numpy())[2 * i]) for i in range(5)]


def test_probe_records_drift_during_training(tiny_backbone, tmp_path):
    from prift.backbone import load_model, load_tokenizer
    from prift.data import prepare_train, tokenize_all
    tok = load_tokenizer(str(tiny_backbone))
    ex = prepare_train({"generator": "demo_math", "split": "train", "n": 4}, "math", "qwen-boxed")
    held = tokenize_all(tok, ex, 96)
    model, ref = load_model(str(tiny_backbone)), load_model(str(tiny_backbone))
    probe = DriftProbe(held, tmp_path / "probe.jsonl", every=1, ref_model=ref)
    probe._probe(model, 0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    probe._probe(model, 1, final=True)
    recs = read_probes(tmp_path / "probe.jsonl")
    assert [r["step"] for r in recs] == [0, 1]
    assert recs[0]["pearson"] == pytest.approx(1.0) and recs[0]["kl_ref_online"] == pytest.approx(0.0, abs=1e-6)
    assert recs[1]["pearson"] < 0.999 and recs[1]["kl_ref_online"] > 0 and recs[1]["mae"] > 0
    assert len(recs[1]["entropy"]) == recs[1]["n_tokens"]


def test_probe_records_per_token_p_of_the_first_examples(tiny_backbone, tmp_path):
    """Fig. 5's data: `token_p` holds the online p_t of every response token of the first `tokens` examples, equal
    to an independent forward pass of the model."""
    from prift.backbone import load_model, load_tokenizer
    from prift.data import prepare_train, tokenize_all
    tok = load_tokenizer(str(tiny_backbone))
    ex = prepare_train({"generator": "demo_math", "split": "train", "n": 3}, "math", "qwen-boxed")
    held = tokenize_all(tok, ex, 96)
    model, ref = load_model(str(tiny_backbone)), load_model(str(tiny_backbone))
    probe = DriftProbe(held, tmp_path / "probe.jsonl", every=1, ref_model=ref, kl=False, tokens=2)
    probe._probe(model, 0)
    rec = read_probes(tmp_path / "probe.jsonl")[0]
    assert len(rec["token_p"]) == 2
    for h, got in zip(held[:2], rec["token_p"]):
        ids, labels = torch.tensor([h["input_ids"]]), torch.tensor(h["labels"][1:])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        m = labels != -100
        want = logp[m].gather(-1, labels[m][:, None]).squeeze(-1).exp()
        assert len(got) == int(m.sum()) > 5
        assert got == pytest.approx(want.tolist(), abs=6e-5)  # rounded to 4 digits
    # tokens=0 records none (keeps probes.jsonl small)
    probe0 = DriftProbe(held, tmp_path / "p0.jsonl", every=1, ref_model=ref, kl=False, tokens=0)
    probe0._probe(model, 0)
    assert "token_p" not in read_probes(tmp_path / "p0.jsonl")[0]


def test_every_rank_runs_the_probe_forward_only_rank_zero_writes(tiny_backbone, tmp_path):
    """Under FSDP the online model's forward is a collective over all ranks, so the callback must run the probe's
    forward passes on every rank (a rank-0-only probe hangs the job); only the main process writes records."""
    from types import SimpleNamespace
    from prift.backbone import load_model, load_tokenizer
    from prift.data import prepare_train, tokenize_all
    tok = load_tokenizer(str(tiny_backbone))
    held = tokenize_all(tok, prepare_train({"generator": "demo_math", "split": "train", "n": 3}, "math",
                                           "qwen-boxed"), 96)
    ref = load_model(str(tiny_backbone))
    files = {}
    for rank in (0, 1):
        model = load_model(str(tiny_backbone))
        calls = []
        model.register_forward_hook(lambda *a, calls=calls: calls.append(1))
        files[rank] = tmp_path / f"rank{rank}.jsonl"
        probe = DriftProbe(held, files[rank], every=2, ref_model=ref)
        for step in (0, 1, 2):
            state = SimpleNamespace(global_step=step, is_world_process_zero=rank == 0)
            (probe.on_train_begin if step == 0 else probe.on_step_end)(None, state, None, model=model)
        probe.on_train_end(None, SimpleNamespace(global_step=2, is_world_process_zero=rank == 0), None, model=model)
        assert len(calls) == 3 * len(held), rank  # steps 0 and 2, and the final probe: one forward per example
    assert [r["step"] for r in read_probes(files[0])] == [0, 2, 2] and "entropy" in read_probes(files[0])[-1]
    assert not files[1].exists()
