"""Weighted SFT: each method's loss on a fixed batch equals a hand computation from the weighting core; our DFT
equals TRL's built-in `loss_type="dft"`; a short training run writes a loadable checkpoint and is never redone."""
from __future__ import annotations

import json
import math

import pytest
import torch

from prift.backbone import load_model, load_tokenizer
from prift.data import prepare_train, tokenize_all
from prift.scoring import ScoreCache, score
from prift.losses import method_loss, method_loss_hidden
from prift.sft import Method, Recipe, WeightedCollator, train


@pytest.fixture(scope="module")
def examples():
    return prepare_train({"generator": "demo_math", "split": "train", "n": 16}, "math", "qwen-boxed")


@pytest.fixture(scope="module")
def batch_and_cache(tiny_backbone, examples, tmp_path_factory):
    path = tmp_path_factory.mktemp("scores") / "s.safetensors"
    score(str(tiny_backbone), examples, path, max_length=96, log=lambda *_: None)
    cache = ScoreCache(path)
    tok = load_tokenizer(str(tiny_backbone))
    tokenized = tokenize_all(tok, examples, 96)
    feats = [{"input_ids": t["input_ids"], "labels": t["labels"], "idx": i} for i, t in enumerate(tokenized[:4])]
    return WeightedCollator(tok.pad_token_id, cache)(feats), cache


@pytest.fixture(scope="module")
def forwards(tiny_backbone, batch_and_cache):
    """Logits and hidden states on the fixed batch of an online model moved away from the reference (so that the
    sources differ) and of the reference itself (the model the cache was scored with), no grad."""
    batch, _ = batch_and_cache
    ref_model = load_model(str(tiny_backbone))
    model = load_model(str(tiny_backbone))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        fwd = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        out = {}
        for key, m in (("on", model), ("ref", ref_model)):
            h = m.model(**fwd).last_hidden_state
            out[key] = {"hidden": h, "logits": m.lm_head(h), "head": (m.lm_head.weight, None)}
    return out


def _positions(labels):
    """Response positions (b, t): token t is a target (predicted at t-1), row-major order."""
    return [(b, t) for b in range(labels.shape[0]) for t in range(1, labels.shape[1]) if int(labels[b, t]) != -100]


def _hand_stats(lp_row, y, K=20):
    """float64 statistics of one next-token distribution (log-probs lp_row [V]) at target y, by their definitions."""
    p = lp_row.exp()
    H = float(-(p * lp_row).sum())
    top = p.topk(min(K, p.numel())).values
    r = top / top.sum()
    Hk = float(-(r * r.log()).sum()) / math.log(min(K, p.numel()))
    mass = float(p[p <= p[y]].sum())
    return {"logp": float(lp_row[y]), "prob": float(p[y]), "entropy": H, "entropy_topk": Hk, "mass": mass}


def _hand_loss(spec, logits, labels, ref_stats=None, ref_logits=None):
    """Σ_t m_t·(−log p_t) [+ β·KL(q‖p) for ASFT, + β·Σ_{v≠y} −q(v) log p(v) for KD] / (number of response tokens),
    in float64 by plain loops over the tokens, with each rule written out from its definition (Table 1, Eq. 2-3,
    App. B, App. D.1)."""
    rule, source, prm = spec.get("rule", "sft"), spec.get("source", "online"), spec.get("params", {})
    lp = torch.log_softmax(logits.double(), -1)
    lq = torch.log_softmax(ref_logits.double(), -1) if ref_logits is not None else None
    pos = _positions(labels)
    stats = []
    for b, t in pos:
        y = int(labels[b, t])
        if source == "online":
            stats.append(_hand_stats(lp[b, t - 1], y))
        else:
            stats.append({k: float(ref_stats[f"ref_{k}"][b, t]) for k in ("logp", "prob", "entropy",
                                                                          "entropy_topk", "mass")})
    tau_talr = prm.get("tau", "adaptive")
    if rule == "talr" and tau_talr == "adaptive":   # the median loss of the batch's response tokens (or sequences)
        import statistics
        if prm.get("median_over", "tokens") == "tokens":
            tau_talr = statistics.median(-s["logp"] for s in stats)
        else:
            rows = sorted({b for b, _ in pos})
            tau_talr = statistics.median(statistics.fmean(-s["logp"] for (b, _), s in zip(pos, stats) if b == r)
                                         for r in rows)
    if rule == "quantile":
        vals = [s[prm["stat"]] for s in stats]
        order = sorted(range(len(vals)), key=lambda i: (-vals[i] if prm["keep"] == "top" else vals[i], i))
        chosen = set(order[:math.floor(prm.get("frac", 0.5) * len(vals) + 0.5)])
        weights = [1.0 if i in chosen else 0.0 for i in range(len(vals))]
    else:
        weights = []
        for s in stats:
            if rule == "sft":
                w = 1.0
            elif rule == "prob":
                w = s["prob"]
            elif rule == "profit":
                w = float(s["prob"] >= prm.get("tau", 0.1))
            elif rule == "talr":
                w = max(s["prob"] ** (1.0 / tau_talr), prm.get("w_min", 0.01))
            elif rule == "eaft":
                w = s["entropy_topk"]
            elif rule == "idft":
                bb = prm.get("b", 1.0)
                phi = min(max(s["logp"] + s["entropy"], -bb), bb)
                w = s["prob"] ** math.exp(-phi)
            elif rule == "mass":
                tau = prm.get("tau", 0.5)
                w = float(s["mass"] > tau) if prm.get("strict") else float(s["mass"] >= tau)
            else:
                raise AssertionError(rule)
            weights.append(w)
    total = 0.0
    for (b, t), w in zip(pos, weights):
        y = int(labels[b, t])
        total += w * -float(lp[b, t - 1, y])
        if spec.get("asft_beta"):
            q = lq[b, t - 1].exp()
            total += spec["asft_beta"] * float((q * (lq[b, t - 1] - lp[b, t - 1])).sum())
        if spec.get("kd_beta") is not None:
            q = lq[b, t - 1].exp()
            nt = -(float((q * lp[b, t - 1]).sum()) - float(q[y] * lp[b, t - 1, y]))  # Σ over v ≠ y
            total += spec["kd_beta"] * nt
    return total / len(pos)


METHODS = [
    ("sft", {"rule": "sft", "source": "online"}),
    ("dft", {"rule": "prob", "source": "online"}),
    ("profit", {"rule": "profit", "source": "online", "params": {"tau": 0.1}}),
    ("talr", {"rule": "talr", "source": "online", "params": {"tau": 0.5, "w_min": 0.01}}),
    ("talr-adaptive", {"rule": "talr", "source": "online", "params": {"w_min": 0.01}}),
    ("talr-adaptive-seq", {"rule": "talr", "source": "online", "params": {"median_over": "sequences"}}),
    ("eaft", {"rule": "eaft", "source": "online"}),
    ("idft", {"rule": "idft", "source": "online", "params": {"b": 1.0}}),
    ("prift-prob", {"rule": "prob", "source": "pretrained"}),
    ("prift-mass", {"rule": "mass", "source": "pretrained", "params": {"tau": 0.5}}),
    ("prift-mass-strict-0.7", {"rule": "mass", "source": "pretrained", "params": {"tau": 0.7, "strict": True}}),
    # Table 6: the pretrained-source variants
    ("eaft-pt", {"rule": "eaft", "source": "pretrained"}),
    ("idft-pt", {"rule": "idft", "source": "pretrained", "params": {"b": 1.0}}),
    ("talr-pt", {"rule": "talr", "source": "pretrained", "params": {"tau": 0.5, "w_min": 0.01}}),
    ("talr-pt-adaptive", {"rule": "talr", "source": "pretrained", "params": {"tau": "adaptive"}}),
    # Table 2: batch-level top / bottom 50% by p_t or H_t, online and pretrained
    *[(f"q-{st}-{keep}-{src}", {"rule": "quantile", "source": src, "params": {"stat": st, "keep": keep, "frac": 0.5}})
      for st in ("prob", "entropy") for keep in ("top", "bottom") for src in ("online", "pretrained")],
    # ASFT (App. B): DFT + 0.05·KL(π_ref ‖ π_θ)
    ("asft", {"rule": "prob", "source": "online", "asft_beta": 0.05}),
    # KD (App. D.1, Table 7): rule prob on the teacher's statistics + β · non-target term
    ("kd-0.5", {"rule": "prob", "source": "reference", "reference": "teacher", "kd_beta": 0.5}),
    ("kd-1", {"rule": "prob", "source": "reference", "reference": "teacher", "kd_beta": 1.0}),
]


@pytest.mark.parametrize("path", ["logits", "hidden"])
@pytest.mark.parametrize("name,spec", METHODS, ids=[m[0] for m in METHODS])
def test_method_loss_equals_hand_computation(batch_and_cache, forwards, name, spec, path):
    """Both implementations of every method's loss equal the float64 hand computation on a fixed batch."""
    batch, _ = batch_and_cache
    ref = {k: v for k, v in batch.items() if k.startswith("ref_")}
    labels = batch["labels"]
    n = (labels[:, 1:] != -100).sum()
    method = Method.from_config(name, spec)
    on, rf = forwards["on"], forwards["ref"]
    if path == "logits":
        loss, _ = method_loss(method, on["logits"], labels, n, ref, ref_logits=rf["logits"])
    else:
        loss, _ = method_loss_hidden(method, on["hidden"], *on["head"], labels, n, ref, ref_hidden=rf["hidden"],
                                     ref_head=rf["head"])
    hand = _hand_loss(spec, on["logits"], labels, ref, rf["logits"] if method.needs_ref_logits else None)
    assert loss.item() == pytest.approx(hand, rel=1e-5)


GRAD_METHODS = [m for m in METHODS if m[0] in ("dft", "idft", "q-entropy-top-online", "prift-mass", "asft", "kd-0.5")]


@pytest.mark.parametrize("name,spec", GRAD_METHODS, ids=[m[0] for m in GRAD_METHODS])
def test_hidden_path_gradient_equals_logits_path(tiny_backbone, batch_and_cache, name, spec):
    """The fused path (chunked LM head, checkpointed KL) gives the same gradient as the full-logits path."""
    batch, _ = batch_and_cache
    ref = {k: v for k, v in batch.items() if k.startswith("ref_")}
    labels = batch["labels"]
    n = (labels[:, 1:] != -100).sum()
    method = Method.from_config(name, spec)
    model, ref_model = load_model(str(tiny_backbone)), load_model(str(tiny_backbone))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        rh = ref_model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    grads = []
    for path in ("logits", "hidden"):
        model.zero_grad()
        h = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        if path == "logits":
            loss, _ = method_loss(method, model.lm_head(h), labels, n, ref, ref_logits=ref_model.lm_head(rh))
        else:
            loss, _ = method_loss_hidden(method, h, model.lm_head.weight, None, labels, n, ref, ref_hidden=rh,
                                         ref_head=(ref_model.lm_head.weight, None))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[0] - grads[1]).norm() <= 1e-5 * grads[0].norm()


@pytest.mark.parametrize("path", ["logits", "hidden"])
def test_asft_kl_is_zero_when_online_equals_reference(batch_and_cache, forwards, path):
    batch, _ = batch_and_cache
    labels = batch["labels"]
    n = (labels[:, 1:] != -100).sum()
    rf = forwards["ref"]
    asft = Method.from_config("asft", {"rule": "prob", "source": "online", "asft_beta": 0.05})
    dft = Method.from_config("dft", {"rule": "prob", "source": "online"})
    if path == "logits":
        a, da = method_loss(asft, rf["logits"], labels, n, ref_logits=rf["logits"])
        d, _ = method_loss(dft, rf["logits"], labels, n)
    else:
        a, da = method_loss_hidden(asft, rf["hidden"], *rf["head"], labels, n, ref_hidden=rf["hidden"],
                                   ref_head=rf["head"])
        d, _ = method_loss_hidden(dft, rf["hidden"], *rf["head"], labels, n)
    assert abs(float(da["kl_sum"])) < 1e-6 * float(da["resp_tokens"])
    assert a.item() == pytest.approx(d.item(), rel=1e-6)


def test_kd_beta_zero_is_prift_prob_with_the_teacher(batch_and_cache, forwards):
    """Table 7, β = 0 recovers PriFT-prob with the teacher as reference; and the cached teacher statistics the target
    term reads are the teacher's own q(y) of the KD formula."""
    batch, _ = batch_and_cache
    ref = {k: v for k, v in batch.items() if k.startswith("ref_")}
    labels = batch["labels"]
    n = (labels[:, 1:] != -100).sum()
    on, rf = forwards["on"], forwards["ref"]
    kd0, _ = method_loss_hidden(Method.from_config("kd", {"rule": "prob", "source": "reference",
                                                          "reference": "teacher", "kd_beta": 0.0}),
                                on["hidden"], *on["head"], labels, n, ref, ref_hidden=rf["hidden"], ref_head=rf["head"])
    pp, _ = method_loss_hidden(Method.from_config("pp", {"rule": "prob", "source": "pretrained"}),
                               on["hidden"], *on["head"], labels, n, ref)
    assert kd0.item() == pytest.approx(pp.item(), rel=1e-6)
    q = torch.softmax(rf["logits"].double(), -1)
    for b, t in _positions(labels):
        assert float(ref["ref_prob"][b, t]) == pytest.approx(float(q[b, t - 1, int(labels[b, t])]), abs=1e-5)
    with pytest.raises(ValueError, match="KD \\(App. D.1\\) is rule 'prob'"):
        Method.from_config("bad", {"rule": "sft", "source": "reference", "reference": "teacher", "kd_beta": 0.5})


def test_online_and_pretrained_agree_at_step_zero(batch_and_cache, forwards):
    batch, _ = batch_and_cache
    rf = forwards["ref"]
    ref = {k: v for k, v in batch.items() if k.startswith("ref_")}
    n = (batch["labels"][:, 1:] != -100).sum()
    for spec in ({"rule": "prob"}, {"rule": "mass"}, {"rule": "idft"}):
        a, _ = method_loss_hidden(Method.from_config("on", {**spec, "source": "online"}), rf["hidden"], *rf["head"],
                                  batch["labels"], n, ref)
        b, _ = method_loss_hidden(Method.from_config("pt", {**spec, "source": "pretrained"}), rf["hidden"],
                                  *rf["head"], batch["labels"], n, ref)
        assert a.item() == pytest.approx(b.item(), rel=1e-4)


def test_our_dft_equals_trl_dft(tiny_backbone, batch_and_cache, tmp_path):
    from trl import SFTConfig, SFTTrainer
    from datasets import Dataset
    batch, _ = batch_and_cache
    model = load_model(str(tiny_backbone))
    tok = load_tokenizer(str(tiny_backbone))
    ds = Dataset.from_list([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}])
    args = SFTConfig(output_dir=str(tmp_path), loss_type="dft", report_to=[], use_cpu=True,
                     dataset_kwargs={"skip_prepare_dataset": True}, gradient_checkpointing=False)
    trl = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    n = (batch["labels"][:, 1:] != -100).sum()
    with torch.no_grad():
        theirs = trl.compute_loss(model, dict(inputs), num_items_in_batch=n)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        dft = Method.from_config("dft", {"rule": "prob", "source": "online"})
        ours, _ = method_loss(dft, logits, batch["labels"], n)
        h = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        fused, _ = method_loss_hidden(dft, h, model.lm_head.weight, None, batch["labels"], n)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    assert fused.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_train_writes_checkpoint_and_is_not_redone(tiny_backbone, examples, tmp_path):
    path = tmp_path / "s.safetensors"
    score(str(tiny_backbone), examples, path, max_length=96, log=lambda *_: None)
    recipe = Recipe(epochs=1, global_batch_size=8, per_device_batch_size=4, lr=1e-3, max_length=96, max_truncated_frac=1.0, bf16=False,
                    save_steps=2, logging_steps=1, seed=0)
    out = tmp_path / "run" / "final"
    s = train(model_path=str(tiny_backbone), examples=examples, out_dir=out, scores_path=path, recipe=recipe,
              method=Method.from_config("prift-mass", {"rule": "mass", "source": "pretrained"}), log=lambda *_: None)
    assert s["global_steps"] == 2 and s["grad_accum"] == 2
    log = json.loads((out / "train_log.json").read_text())
    assert any("selected_frac" in r for r in log)
    m = load_model(str(out))
    base = load_model(str(tiny_backbone))
    assert any(not torch.equal(a, b) for a, b in zip(m.parameters(), base.parameters()))
    again = train(model_path=str(tiny_backbone), examples=examples, out_dir=out, scores_path=path, recipe=recipe,
                  method=Method.from_config("prift-mass", {"rule": "mass", "source": "pretrained"}),
                  log=lambda *_: None)
    assert again == json.loads((out / "prift_run.json").read_text())


def test_cache_for_other_data_is_refused(tiny_backbone, examples, tmp_path):
    path = tmp_path / "s.safetensors"
    score(str(tiny_backbone), examples[:8], path, max_length=96, log=lambda *_: None)
    with pytest.raises(ValueError, match="dataset_hash"):
        train(model_path=str(tiny_backbone), examples=examples, out_dir=tmp_path / "final", scores_path=path,
              recipe=Recipe(max_length=96, max_truncated_frac=1.0, global_batch_size=4, per_device_batch_size=4, bf16=False),
              method=Method.from_config("pp", {"rule": "prob", "source": "pretrained"}), log=lambda *_: None)


def test_global_batch_must_divide():
    from prift.sft import grad_accum_steps
    assert grad_accum_steps(256, 4, 4) == 16
    with pytest.raises(ValueError, match="global_batch_size=256"):
        grad_accum_steps(256, 3, 4)


def test_loss_path_is_chosen_by_device_and_size(tiny_backbone):
    """fused_head: auto takes the fused head on a GPU, the full logits on CPU (about twice as fast there) while a
    micro-batch's [B, L, V] logits fit the budget, the fused head beyond; true / false force it."""
    from prift.losses import FULL_LOGITS_BUDGET, loss_path
    model = load_model(str(tiny_backbone))
    V = model.get_output_embeddings().weight.shape[0]
    assert loss_path("auto", model, device="cuda", tokens=8) is True
    assert loss_path("auto", model, device="cpu", tokens=8 * 2048) is False
    assert loss_path("auto", model, device="cpu", tokens=FULL_LOGITS_BUDGET // (3 * 4 * V) + 1) is True
    assert loss_path(True, model, device="cpu", tokens=8) is True
    assert loss_path(False, model, device="cuda", tokens=8) is False


def test_auto_loss_path_weighs_the_largest_micro_batch_of_the_data(tiny_backbone, tmp_path, monkeypatch):
    """On CPU, `auto` weighs the largest micro-batch the run's examples can form (padded: the batch × the longest
    example; packed: the sum of the batch's longest; the lengths as the collator feeds them, which cuts nothing),
    not batch × max_length: under a long max_length, short examples take the full logits and long ones the fused
    head."""
    from datasets import Dataset
    from trl import SFTConfig
    from prift import losses
    from prift.backbone import load_tokenizer
    from prift.sft import WeightedCollator, WeightedSFTTrainer, largest_micro_batch
    assert largest_micro_batch([5, 9, 3, 40], 2, packed=False) == 80
    assert largest_micro_batch([5, 9, 3, 40], 2, packed=True) == 49
    assert largest_micro_batch([], 4, packed=True) == 0
    tok = load_tokenizer(str(tiny_backbone))
    V = load_model(str(tiny_backbone)).get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(losses, "FULL_LOGITS_BUDGET", 3 * 4 * V * 20)   # the logits of 20 positions fit, 21 do not
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=False,
                     dataset_kwargs={"skip_prepare_dataset": True}, per_device_train_batch_size=2, max_length=64)
    chosen = {}
    for lengths in ((6, 9, 3), (6, 11, 3), (12, 11, 3)):
        ds = Dataset.from_list([{"input_ids": [5] * n, "labels": [-100] + [5] * (n - 1), "idx": i}
                                for i, n in enumerate(lengths)])
        for packed in (False, True):
            trainer = WeightedSFTTrainer(model=load_model(str(tiny_backbone)), args=args, train_dataset=ds,
                                         processing_class=tok, method=Method.from_config("sft", {"rule": "sft",
                                                                                                  "source": "online"}),
                                         data_collator=WeightedCollator(tok.pad_token_id, packed=packed))
            chosen[lengths, packed] = trainer.fused
    assert chosen == {((6, 9, 3), False): False, ((6, 9, 3), True): False,      # 18 and 15 positions
                      ((6, 11, 3), False): True, ((6, 11, 3), True): False,     # 22 and 17
                      ((12, 11, 3), False): True, ((12, 11, 3), True): True}    # 24 and 23


@pytest.mark.parametrize("fused", [True, False], ids=["hidden", "logits"])
@pytest.mark.parametrize("name,spec", METHODS, ids=[m[0] for m in METHODS])
def test_packed_micro_batch_gives_the_padded_loss_and_gradients(tiny_backbone, examples, batch_and_cache, name, spec,
                                                                fused):
    """A packed micro-batch (one row, position ids restarting per example, attention within each example) gives the
    loss and the gradients of the same examples right-padded, for every method and both loss paths, in float64;
    the token count (each normalisation's denominator) is the same. The fused path attends through prift.packing's
    per-sequence sdpa (what the trainer switches an sdpa model to for packed batches), the logits path through
    transformers' block-diagonal mask."""
    from prift import packing
    from prift.losses import add_prift_head
    _, cache = batch_and_cache
    tok = load_tokenizer(str(tiny_backbone))
    tokenized = tokenize_all(tok, examples, 96)
    feats = [{"input_ids": t["input_ids"], "labels": t["labels"], "idx": i} for i, t in enumerate(tokenized[:4])]
    assert len({len(f["input_ids"]) for f in feats}) > 1
    padded = WeightedCollator(tok.pad_token_id, cache).__call__(feats)
    packed = WeightedCollator(tok.pad_token_id, cache, packed=True)(feats)
    model = load_model(str(tiny_backbone)).double()
    ref_model = load_model(str(tiny_backbone)).double()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    add_prift_head(model)
    if fused:
        assert packing.use_varlen_sdpa(model) and packing.use_varlen_sdpa(ref_model)
    method = Method.from_config(name, spec)
    out = {}
    for kind, batch in (("padded", padded), ("packed", packed)):
        fwd = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
        ref = {k: v for k, v in batch.items() if k.startswith("ref_")} if method.cached else None
        n = (batch["labels"][:, 1:] != -100).sum()
        model.zero_grad()
        if fused:
            rh = ref_model.model(**fwd, use_cache=False).last_hidden_state if method.needs_ref_logits else None
            loss, _ = model(**fwd, prift_head=lambda h, w, b: method_loss_hidden(
                method, h, w, b, batch["labels"], n, ref, rh, (ref_model.lm_head.weight, None),
                seq_lens=batch.get("seq_lens")))
        else:
            rl = ref_model(**fwd, use_cache=False).logits if method.needs_ref_logits else None
            loss, _ = method_loss(method, model(**fwd, use_cache=False).logits, batch["labels"], n, ref, rl,
                                  seq_lens=batch.get("seq_lens"))
        loss.backward()
        out[kind] = (loss.detach(), n, [p.grad.clone() for p in model.parameters()])
    # the token count is each normalisation's denominator (micro_batch: this one; global_tokens: their sum)
    assert out["packed"][1] == out["padded"][1]
    # float64 model; the losses' own float32 steps (the cross-entropy, TRL's kernel) bound the agreement
    torch.testing.assert_close(out["packed"][0], out["padded"][0], rtol=1e-6, atol=1e-9)
    for a, b in zip(out["packed"][2], out["padded"][2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
    assert packed["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in feats))
