"""prift.weighting against independent float64 references (numpy / plain loops), plus registry and source tests."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from prift import rules as R
from prift import weighting as W

RTOL, ATOL = 1e-5, 1e-7  # relative error bound; absolute floor for values that are ~0
QWEN_V = 151_936


# -----------------------------------------------------------------------------
# float64 references: one row at a time, obvious formulas


def ref_row(x: np.ndarray, t: int, k: int = 20) -> dict:
    x = x.astype(np.float64)
    p = np.exp(x - x.max())
    p = p / p.sum()  # softmax
    lp = np.log(p)
    k = min(k, len(p))
    top = np.sort(p)[::-1][:k]
    top = top / top.sum()
    return {
        "logp": lp[t],
        "prob": p[t],
        "entropy": -np.sum(p * lp),
        "entropy_topk": -np.sum(top * np.log(top)) / np.log(k),
        "mass": p[p <= p[t]].sum(),
        "rank": float((p > p[t]).sum()),
    }


def ref_stats(logits: torch.Tensor, targets: torch.Tensor, k: int = 20) -> dict:
    x = logits.detach().double().reshape(-1, logits.shape[-1]).numpy()
    t = targets.reshape(-1).clamp(min=0).numpy()
    rows = [ref_row(x[i], int(t[i]), k) for i in range(len(t))]
    return {key: torch.tensor([r[key] for r in rows], dtype=torch.float64).reshape(targets.shape)
            for key in W.STAT_KEYS}


def assert_stats_close(got: dict, ref: dict):
    assert set(got) == set(W.STAT_KEYS)
    for key in W.STAT_KEYS:
        assert got[key].dtype == torch.float32, key
        assert got[key].shape == ref[key].shape, key
        if key == "rank":
            assert torch.equal(got[key].double(), ref[key]), key
        else:
            torch.testing.assert_close(got[key].double(), ref[key], rtol=RTOL, atol=ATOL, msg=key)


def make_logits(shape, V, kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":  # small integers: many exact duplicates, targets tied with others and with the max
        x = torch.randint(-3, 3, (*shape, V), generator=g).float()
    else:
        x = torch.randn(*shape, V, generator=g) * {"normal": 1.0, "sharp": 30.0, "flat": 0.01}[kind]
    t = torch.randint(0, V, tuple(shape), generator=g)
    if kind == "ties":  # force some targets onto a (tied) maximum
        flat_x, flat_t = x.reshape(-1, V), t.reshape(-1)
        flat_t[::2] = flat_x[::2].argmax(-1)
    else:  # and some onto the argmax, some onto the argmin
        flat_x, flat_t = x.reshape(-1, V), t.reshape(-1)
        flat_t[::3] = flat_x[::3].argmax(-1)
        flat_t[1::5] = flat_x[1::5].argmin(-1)
    return x, t


CASES = [(shape, V, kind) for shape, V in [((3, 7), 11), ((5,), 11), ((3, 7), 1000), ((5,), 1000), ((2, 2), QWEN_V)]
         for kind in ("normal", "sharp", "flat", "ties")]


# -----------------------------------------------------------------------------
# statistics


@pytest.mark.parametrize("shape,V,kind", CASES)
def test_token_stats_matches_float64(shape, V, kind):
    logits, targets = make_logits(shape, V, kind)
    assert_stats_close(W.token_stats(logits, targets), ref_stats(logits, targets))


def test_token_stats_topk_and_edge_values():
    logits, targets = make_logits((4, 6), 50, "normal", seed=1)
    for k in (2, 5, 50, 80):  # k > V is capped at V
        got = W.token_stats(logits, targets, topk=k)
        torch.testing.assert_close(got["entropy_topk"].double(), ref_stats(logits, targets, k)["entropy_topk"],
                                   rtol=RTOL, atol=ATOL)
    # top-ranked target: u = 1 and rank 0; uniform distribution: H = log V, H_topk = 1, u = 1
    stats = W.token_stats(logits, logits.argmax(-1))
    assert torch.all(stats["mass"] == 1.0) and torch.all(stats["rank"] == 0)
    uni = W.token_stats(torch.zeros(3, 50), torch.tensor([0, 7, 49]))
    torch.testing.assert_close(uni["entropy"], torch.full((3,), math.log(50)))
    torch.testing.assert_close(uni["entropy_topk"], torch.ones(3))
    assert torch.all(uni["mass"] == 1.0) and torch.all(uni["rank"] == 0)


def test_token_stats_ignore_index_and_dtypes():
    logits, targets = make_logits((3, 7), 11, "normal")
    targets[:, -2:] = -100
    stats = W.token_stats(logits.bfloat16().requires_grad_(), targets)  # bf16 in, grad enabled: no crash
    ref = ref_stats(logits.bfloat16().float(), targets)  # -100 is gathered as token 0
    for key in W.STAT_KEYS:
        assert stats[key].dtype == torch.float32 and not stats[key].requires_grad
        assert torch.isfinite(stats[key]).all()
    assert_stats_close(stats, ref)
    half = W.token_stats(logits.half(), targets)
    assert_stats_close(half, ref_stats(logits.half().float(), targets))


@pytest.mark.parametrize("N,V,exact", [(13, 37, True), (13, 1000, False), (5, QWEN_V, False)])
def test_token_stats_chunked_equals_token_stats(N, V, exact):
    g = torch.Generator().manual_seed(3)
    D = 8
    if exact:  # small integers: the matmul is exact, so ties are exact and results must be identical
        h = torch.randint(-2, 3, (N, D), generator=g).float()
        Wt = torch.randint(-2, 3, (V, D), generator=g).float()
        bias = torch.randint(-2, 3, (V,), generator=g).float()
    else:
        h, Wt, bias = torch.randn(N, D, generator=g), torch.randn(V, D, generator=g), torch.randn(V, generator=g)
    targets = torch.randint(0, V, (N,), generator=g)
    targets[-1] = -100
    for b, scale in [(None, None), (bias, 0.5)]:
        logits = F.linear(h, Wt, b) * (1.0 if scale is None else scale)  # [N, V]
        full = W.token_stats(logits, targets)
        assert_stats_close(full, ref_stats(logits, targets))
        for chunk in (1, 4, 5, N, 100):  # 4 and 5 do not divide 13
            got = W.token_stats_chunked(h, Wt, targets, chunk_size=chunk, lm_head_bias=b, logit_scale=scale)
            for key in W.STAT_KEYS:
                if exact:
                    assert torch.equal(got[key], full[key]), (key, chunk)
                else:
                    torch.testing.assert_close(got[key], full[key], rtol=RTOL, atol=ATOL, msg=f"{key} {chunk}")


def test_token_stats_chunked_shapes_and_bf16():
    g = torch.Generator().manual_seed(4)
    h, Wt = torch.randn(2, 3, 8, generator=g).bfloat16(), torch.randn(40, 8, generator=g).bfloat16()
    targets = torch.randint(0, 40, (2, 3), generator=g)
    got = W.token_stats_chunked(h, Wt, targets, chunk_size=4)
    full = W.token_stats(F.linear(h, Wt), targets)  # what the model's bf16 lm_head would output
    for key in W.STAT_KEYS:
        assert got[key].shape == (2, 3) and got[key].dtype == torch.float32
        torch.testing.assert_close(got[key], full[key], rtol=RTOL, atol=ATOL)


# -----------------------------------------------------------------------------
# rules


def ref_talr_tau(probs: list[list[float]], masks: list[list[bool]], over: str = "tokens") -> float:
    """TALR's adaptive temperature in float64, from its definition: the median (statistics.median) of the losses
    -log p_t of the masked tokens, or of the sequences' mean losses."""
    import statistics
    if over == "tokens":
        vals = [-math.log(p) for row, m in zip(probs, masks) for p, k in zip(row, m) if k]
    else:
        vals = [statistics.fmean(-math.log(p) for p, k in zip(row, m) if k) for row, m in zip(probs, masks) if any(m)]
    return max(statistics.median(vals), 1e-6)


def ref_rule(rule: str, r: dict, **p) -> torch.Tensor:
    """Float64 reference weights from float64 reference statistics, element by element."""
    out = torch.empty_like(r["prob"])
    flat = {key: val.reshape(-1).tolist() for key, val in r.items()}
    if rule == "talr" and p.get("tau", "adaptive") == "adaptive":
        rows = r["prob"].reshape(r["prob"].shape[0], -1).tolist()
        p = {**p, "tau": ref_talr_tau(rows, [[True] * len(x) for x in rows], p.get("median_over", "tokens"))}
    for i in range(out.numel()):
        pt, H, Hk, u = flat["prob"][i], flat["entropy"][i], flat["entropy_topk"][i], flat["mass"][i]
        if rule == "sft":
            w = 1.0
        elif rule == "prob":
            w = pt
        elif rule == "profit":
            w = float(pt >= p.get("tau", 0.1))
        elif rule == "talr":
            w = max(pt ** (1.0 / p.get("tau", 1.0)), p.get("w_min", 0.01))
        elif rule == "eaft":
            w = Hk
        elif rule == "idft":
            b = p.get("b", 1.0)
            phi = min(max(math.log(pt) + H, -b), b)
            w = pt ** math.exp(-phi)
        elif rule == "mass":
            tau = p.get("tau", 0.5)
            w = float(u > tau) if p.get("strict", False) else float(u >= tau)
        out.view(-1)[i] = w
    return out


RULE_PARAMS = [("sft", {}), ("prob", {}), ("profit", {}), ("profit", {"tau": 0.3}), ("talr", {}),
               ("talr", {"median_over": "sequences"}), ("talr", {"tau": 1.0}),
               ("talr", {"tau": 0.5}), ("talr", {"tau": 2.0, "w_min": 0.05}), ("eaft", {}), ("idft", {}),
               ("idft", {"b": 0.3}), ("mass", {}), ("mass", {"tau": 0.8}), ("mass", {"tau": 1.0, "strict": True})]


@pytest.mark.parametrize("kind", ["normal", "sharp", "flat", "ties"])
@pytest.mark.parametrize("rule,params", RULE_PARAMS)
def test_rules_match_float64(rule, params, kind):
    logits, targets = make_logits((3, 7), 1000 if kind != "ties" else 11, kind, seed=5)
    ref = ref_stats(logits, targets)
    got = W.token_weights(rule, W.token_stats(logits, targets), **params)
    want = ref_rule(rule, ref, **params)
    assert got.dtype == torch.float32 and got.shape == targets.shape
    if rule in ("profit", "mass"):  # thresholds: compare away from float32-vs-float64 borderline cases
        stat = ref["prob" if rule == "profit" else "mass"]
        tau = params.get("tau", 0.1 if rule == "profit" else 0.5)
        keep = (stat - tau).abs() > 1e-5
        assert torch.equal(got.double()[keep], want[keep])
    else:
        torch.testing.assert_close(got.double(), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("over", ["tokens", "sequences"])
def test_talr_adaptive_tau_is_the_median_loss_of_the_masked_tokens(over):
    """TALR's default tau is recomputed from the batch the rule receives: the median of -log p_t over its masked
    tokens (or of the per-sequence mean losses); masked-out positions take no part. Float64 reference."""
    logits, targets = make_logits((4, 6), 50, "normal", seed=11)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, :4] = False
    mask[2, :] = False                     # a row without response tokens takes no part in the sequence median
    ref = ref_stats(logits, targets)
    tau = ref_talr_tau(ref["prob"].tolist(), mask.tolist(), over)
    want = torch.where(mask, (ref["logp"] / tau).exp().clamp_min(0.01), 0.0)
    got = W.token_weights("talr", W.token_stats(logits, targets), mask, median_over=over)
    torch.testing.assert_close(got.double(), want, rtol=RTOL, atol=ATOL)
    assert float(R.talr_tau(W.token_stats(logits, targets)["logp"], mask, over)) == pytest.approx(tau, rel=1e-5)
    # not DFT with a floor: the weights of tau = 1 differ
    dft_floor = W.token_weights("talr", W.token_stats(logits, targets), mask, tau=1.0)
    assert (got - dft_floor).abs().max() > 0.05


def test_talr_tau_even_count_and_degenerate_batches():
    lp = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.0625]]))
    assert float(R.talr_tau(lp, None)) == pytest.approx((math.log(4) + math.log(8)) / 2)  # mean of the middle two
    assert float(R.talr_tau(torch.zeros(2, 3), None)) == pytest.approx(R.TALR_TAU_MIN)   # every p_t = 1
    assert float(R.talr_tau(lp, torch.zeros(1, 4, dtype=torch.bool))) == 1.0             # no token: no weights


@pytest.mark.parametrize("rule,params,problem", [
    ("mass", {"tauu": 0.5}, "unknown parameter 'tauu' of rule 'mass' (did you mean 'tau'?)"),
    ("mass", {"tau": 7.0}, "parameter 'tau' must be a number in [0, 1], got 7.0"),
    ("talr", {"tau": 0}, "parameter 'tau' must be 'adaptive' or a number > 0"),
    ("talr", {"median_over": "rows"}, "parameter 'median_over' must be 'tokens' or 'sequences'"),
    ("quantile", {"frac": 2}, "parameter 'frac' must be a number in [0, 1]"),
    ("quantile", {"stat": "probability"}, "parameter 'stat' must be one of"),
    ("idft", {"b": -1}, "parameter 'b' must be a number in (0, inf]"),
    ("profit", {"tau": "high"}, "parameter 'tau' must be a number in [0, 1]"),
])
def test_rule_parameters_are_checked_without_tensors(rule, params, problem):
    assert any(problem in m for m in R.check_rule_params(rule, params)), R.check_rule_params(rule, params)


def test_valid_rule_parameters_pass_and_rules_declare_their_statistics():
    for rule, params in RULE_PARAMS:
        assert R.check_rule_params(rule, params) == []
    assert R.rule_reads("talr") == ("logp",) and R.rule_reads("mass") == ("mass",) and R.rule_reads("sft") == ()
    assert R.rule_reads("quantile", {"stat": "entropy"}) == ("entropy",)
    assert R.rule_reads("eaft") == ("entropy_topk",)


def test_mass_strict_and_extremes():
    logits, targets = make_logits((4, 5), 30, "normal", seed=6)
    stats = W.token_stats(logits, targets)
    assert torch.all(W.token_weights("mass", stats, tau=0.0) == 1)  # tau = 0 -> SFT
    assert torch.all(W.token_weights("mass", stats, tau=1.0, strict=True) == 0)  # tau = 1 -> nothing (Fig. 6b)
    top = W.token_stats(logits, logits.argmax(-1))
    assert torch.all(W.token_weights("mass", top, tau=1.0) == 1)  # top-ranked target has u = 1 (Fig. 2)


def ref_quantile(values: torch.Tensor, mask, keep: str, frac: float) -> torch.Tensor:
    v = values.reshape(-1).tolist()
    m = [True] * len(v) if mask is None else mask.reshape(-1).tolist()
    pos = [i for i in range(len(v)) if m[i]]
    k = int(math.floor(frac * len(pos) + 0.5))
    pos.sort(key=lambda i: -v[i] if keep == "top" else v[i])  # Python's sort is stable: ties by position
    out = [0.0] * len(v)
    for i in pos[:k]:
        out[i] = 1.0
    return torch.tensor(out).reshape(values.shape)


@pytest.mark.parametrize("stat", ["prob", "entropy"])
@pytest.mark.parametrize("keep", ["top", "bottom"])
@pytest.mark.parametrize("frac", [0.5, 0.25, 1.0, 0.0])
@pytest.mark.parametrize("with_mask", [False, True])
def test_quantile_rule(stat, keep, frac, with_mask):
    logits, targets = make_logits((3, 9), 40, "normal", seed=7)
    stats = W.token_stats(logits, targets)
    mask = torch.rand(3, 9, generator=torch.Generator().manual_seed(8)) > 0.3 if with_mask else None
    got = W.token_weights("quantile", stats, mask, stat=stat, keep=keep, frac=frac)
    assert torch.equal(got, ref_quantile(stats[stat], mask, keep, frac))
    n = 27 if mask is None else int(mask.sum())
    assert int(got.sum()) == math.floor(frac * n + 0.5)


def test_quantile_is_batch_level_and_halves_complement():
    stats = {"prob": torch.tensor([[0.9, 0.8, 0.7], [0.1, 0.2, 0.3]])}
    top = W.token_weights("quantile", stats, keep="top", frac=0.5)
    bot = W.token_weights("quantile", stats, keep="bottom", frac=0.5)
    assert torch.equal(top, torch.tensor([[1.0, 1, 1], [0, 0, 0]]))  # whole first row: not per-sequence
    assert torch.equal(top + bot, torch.ones(2, 3))
    with pytest.raises(ValueError):
        W.token_weights("quantile", stats, keep="middle")


@pytest.mark.parametrize("rule,params", RULE_PARAMS + [("quantile", {}), ("quantile", {"stat": "entropy"})])
def test_mask_zeroes_weights_and_outputs_are_valid(rule, params):
    logits, targets = make_logits((4, 6), 60, "sharp", seed=9)
    targets[:, -1] = -100
    mask = targets != -100
    mask[0, :3] = False
    stats = W.token_stats(logits, targets)
    w = W.token_weights(rule, stats, mask, **params)
    assert w.dtype == torch.float32 and w.shape == targets.shape and not w.requires_grad
    assert torch.isfinite(w).all() and (w >= 0).all()
    assert torch.all(w[~mask] == 0)
    w_all = W.token_weights(rule, stats, **params)
    assert torch.isfinite(w_all).all() and (w_all >= 0).all()


def test_registry():
    assert {"sft", "prob", "profit", "talr", "eaft", "idft", "mass", "quantile"} <= set(R.RULES)
    with pytest.raises(ValueError):
        R.register_rule("prob")(lambda stats, mask: stats["prob"])
    try:
        @R.register_rule("_test_half")
        def half(stats, mask, *, c=0.5):
            return stats["prob"] * c
        stats = {"prob": torch.tensor([0.2, 0.4])}
        torch.testing.assert_close(W.token_weights("_test_half", stats, c=2.0), torch.tensor([0.4, 0.8]))
        with pytest.raises(ValueError, match="already registered"):
            R.register_rule("_test_half")(half)
    finally:
        R.RULES.pop("_test_half", None)
    with pytest.raises(KeyError) as err:
        W.token_weights("porb", {"prob": torch.ones(2)})
    msg = str(err.value)
    assert "did you mean 'prob'" in msg and all(name in msg for name in ("sft", "mass", "talr", "quantile"))
    with pytest.raises(TypeError, match=r"'profit'.*'temperature'"):
        W.token_weights("profit", {"prob": torch.ones(2)}, temperature=0.1)


def test_token_weights_detached():
    logits = torch.randn(4, 20, requires_grad=True)
    prob = F.softmax(logits, -1)[:, 0]  # carries grad
    w = W.token_weights("prob", {"prob": prob})
    assert not w.requires_grad and torch.equal(w, prob.detach())


# -----------------------------------------------------------------------------
# losses


def test_weighted_nll():
    g = torch.Generator().manual_seed(10)
    logp = (-torch.rand(3, 5, generator=g)).double().requires_grad_()
    w = torch.rand(3, 5, generator=g)
    mask = torch.rand(3, 5, generator=g) > 0.4
    num = 11
    want = sum(float(w[i, j]) * -float(logp.detach()[i, j]) for i in range(3) for j in range(5) if mask[i, j]) / num
    loss = W.weighted_nll(logp, w, mask, num)
    assert loss.dim() == 0
    assert abs(loss.item() - want) <= 1e-6 * abs(want)
    loss.backward()
    torch.testing.assert_close(logp.grad.float(), -(w * mask) / num)  # weights act as constants
    torch.testing.assert_close(W.weighted_nll(logp, w, mask, torch.tensor(num)), loss)
    # masked positions may hold -inf log-probs without poisoning the loss or its gradient
    logp2 = logp.detach().clone()
    logp2[~mask] = -math.inf
    logp2.requires_grad_()
    loss2 = W.weighted_nll(logp2, w, mask, num)
    loss2.backward()
    assert torch.isfinite(loss2) and torch.isfinite(logp2.grad).all()
    assert W.weighted_nll(logp, w, torch.zeros_like(mask), 0) == 0


def ref_kl(online: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    lp, lq = F.log_softmax(online.double(), -1), F.log_softmax(ref.double(), -1)
    return (lq.exp() * (lq - lp)).sum(-1)


@pytest.mark.parametrize("shape,V", [((3, 7), 11), ((5,), 1000), ((2,), QWEN_V)])
def test_asft_kl(shape, V):
    g = torch.Generator().manual_seed(11)
    online = torch.randn(*shape, V, generator=g)
    ref = online + 0.5 * torch.randn(*shape, V, generator=g)
    mask = torch.ones(shape, dtype=torch.bool)
    mask.view(-1)[0] = False
    # zero when online == ref, positive otherwise
    assert W.asft_kl(online, online.clone(), None).abs().max() <= 1e-6
    kl = W.asft_kl(online, ref, None)
    assert (kl > 0).all()
    torch.testing.assert_close(kl.double(), ref_kl(online, ref), rtol=RTOL, atol=ATOL)
    masked = W.asft_kl(online.bfloat16(), ref, mask)
    assert masked.dtype == torch.float32 and masked.view(-1)[0] == 0
    # gradient w.r.t. the online logits against float64 autograd; none flows into the reference
    x = online.clone().requires_grad_()
    r = ref.clone().requires_grad_()
    (W.asft_kl(x, r, mask) * torch.arange(1.0, mask.numel() + 1).reshape(shape)).sum().backward()
    x64 = online.double().requires_grad_()
    (ref_kl(x64, ref) * mask * torch.arange(1.0, mask.numel() + 1).reshape(shape).double()).sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=RTOL, atol=1e-6)
    assert r.grad is None or torch.all(r.grad == 0)


def test_asft_kl_finite_difference():
    g = torch.Generator().manual_seed(12)
    online, ref = torch.randn(2, 6, generator=g).double(), torch.randn(2, 6, generator=g).double()
    x = online.float().requires_grad_()
    W.asft_kl(x, ref.float(), None).sum().backward()
    eps = 1e-6
    for i in range(2):
        for v in range(6):
            d = torch.zeros_like(online)
            d[i, v] = eps
            fd = (ref_kl(online + d, ref).sum() - ref_kl(online - d, ref).sum()) / (2 * eps)
            assert abs(float(x.grad[i, v]) - float(fd)) <= 1e-6 + 1e-5 * abs(float(fd))



@pytest.mark.parametrize("v_ref", [34, 26])
def test_kd_and_kl_compare_output_layers_of_different_sizes_on_the_shared_rows(v_ref):
    """Table 7: a teacher with more (152,064) or fewer rows than the student (151,936). The student's own distribution
    (over all its rows) is compared with the teacher's renormalised over the rows both layers have. Float64 loops."""
    V, g = 30, torch.Generator().manual_seed(21)
    online, teacher = torch.randn(2, 3, V, generator=g), 2.0 * torch.randn(2, 3, v_ref, generator=g)
    targets = torch.randint(0, min(V, v_ref), (2, 3), generator=g)
    m = min(V, v_ref)
    lp = F.log_softmax(online.double(), -1).reshape(-1, V)
    q = F.softmax(teacher.double()[..., :m], -1).reshape(-1, m)
    t = targets.reshape(-1)
    kd = [-sum(float(q[i, v] * lp[i, v]) for v in range(m) if v != t[i]) for i in range(len(t))]
    kl = [sum(float(q[i, v] * (math.log(q[i, v]) - lp[i, v])) for v in range(m)) for i in range(len(t))]
    torch.testing.assert_close(W.kd_nontarget(online, teacher, targets).double().reshape(-1),
                               torch.tensor(kd, dtype=torch.float64), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(W.asft_kl(online, teacher).double().reshape(-1),
                               torch.tensor(kl, dtype=torch.float64), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape,V", [((3, 7), 11), ((4,), 1000), ((2,), QWEN_V)])
def test_kd_nontarget(shape, V):
    g = torch.Generator().manual_seed(13)
    online = torch.randn(*shape, V, generator=g)
    teacher = 3.0 * torch.randn(*shape, V, generator=g)
    targets = torch.randint(0, V, shape, generator=g)
    targets.view(-1)[0] = teacher.reshape(-1, V)[0].argmax()  # teacher confident on the target
    got = W.kd_nontarget(online, teacher, targets)
    # independent loop reference: -sum_{v != y} q(v) log p(v)
    lp, q = F.log_softmax(online.double(), -1).reshape(-1, V), F.softmax(teacher.double(), -1).reshape(-1, V)
    flat_t = targets.reshape(-1)
    want = torch.tensor([-sum(float(q[i, v] * lp[i, v]) for v in range(V) if v != flat_t[i])
                         if V < 2000 else float(-(q[i] * lp[i]).sum() + q[i, flat_t[i]] * lp[i, flat_t[i]])
                         for i in range(len(flat_t))], dtype=torch.float64).reshape(shape)
    torch.testing.assert_close(got.double(), want, rtol=RTOL, atol=ATOL)
    # beta = 1: target term + non-target term = full teacher cross-entropy -sum_v q log p
    target_term = -(q.gather(-1, flat_t[:, None]) * lp.gather(-1, flat_t[:, None])).squeeze(-1).reshape(shape)
    full_ce = -(q * lp).sum(-1).reshape(shape)
    torch.testing.assert_close(target_term + got.double(), full_ce, rtol=RTOL, atol=ATOL)
    # gradient flows to the student only; ignore-index positions are 0
    x = online.clone().requires_grad_()
    t2 = targets.clone()
    t2.view(-1)[-1] = -100
    out = W.kd_nontarget(x, teacher, t2)
    assert out.view(-1)[-1] == 0
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# -----------------------------------------------------------------------------
# EMA and sources


def test_ema_update():
    g = torch.Generator().manual_seed(14)
    on = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    base = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    for rho in (0.0, 1.0, 0.5, 0.9):
        ema = [b.clone() for b in base]
        W.ema_update(ema, iter(on), rho)  # any iterables
        for e, b, o in zip(ema, base, on):
            want = rho * b.double() + (1 - rho) * o.double()
            torch.testing.assert_close(e.double(), want, rtol=1e-6, atol=1e-7)
            if rho == 0.0:
                assert torch.equal(e, o)
            if rho == 1.0:
                assert torch.equal(e, b)
    with pytest.raises(ValueError):
        W.ema_update(base, on[:1], 0.5)
    # works on parameters that require grad (done under no_grad)
    lin, lin2 = nn.Linear(3, 3), nn.Linear(3, 3)
    W.ema_update(lin.parameters(), lin2.parameters(), 0.0)
    assert torch.equal(lin.weight, lin2.weight)


class Bigram(nn.Module):
    def __init__(self, V=50, D=16):
        super().__init__()
        self.emb, self.head = nn.Embedding(V, D), nn.Linear(D, V)

    def forward(self, idx):  # [B, T] -> [B, T, V]
        return self.head(self.emb(idx))


def test_online_and_pretrained_sources():
    torch.manual_seed(0)
    V = 50
    model = Bigram(V)
    pretrained = copy.deepcopy(model).requires_grad_(False)  # frozen reference (PriFT)
    ema = copy.deepcopy(model).requires_grad_(False)  # EMA source, rho = 0.5
    batch = torch.randint(0, V, (4, 10))
    inp, tgt = batch[:, :-1], batch[:, 1:].clone()  # [4, 9]
    tgt[0, -2:] = -100
    mask = tgt != -100

    def weights(m, rule="prob"):
        with torch.no_grad():
            return W.token_weights(rule, W.token_stats(m(inp), tgt), mask)

    w_on0, w_pt0, w_ema0 = weights(model), weights(pretrained), weights(ema)
    assert torch.equal(w_on0, w_pt0) and torch.equal(w_on0, w_ema0)  # identical at step 0
    # the frozen pass may use the chunked path on hidden states; same statistics
    with torch.no_grad():
        chunked = W.token_stats_chunked(pretrained.emb(inp).reshape(-1, 16), pretrained.head.weight,
                                        tgt.reshape(-1), chunk_size=7, lm_head_bias=pretrained.head.bias)
    for key, val in W.token_stats(pretrained(inp), tgt).items():
        torch.testing.assert_close(chunked[key].reshape(tgt.shape), val, rtol=RTOL, atol=ATOL)

    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    for _ in range(5):  # DFT: weights from the online source
        logits = model(inp)  # [4, 9, V]
        logp = F.log_softmax(logits.float(), -1).gather(-1, tgt.clamp(min=0)[..., None]).squeeze(-1)  # [4, 9]
        loss = W.weighted_nll(logp, weights(model), mask, mask.sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
        W.ema_update(ema.parameters(), model.parameters(), 0.5)
    w_on5, w_pt5, w_ema5 = weights(model), weights(pretrained), weights(ema)
    assert (w_on5 - w_on0).abs().max() > 1e-3  # online weights moved
    assert torch.equal(w_pt5, w_pt0)  # pretrained weights did not
    assert (w_ema5 - w_pt0).abs().max() > 1e-4 and (w_ema5 - w_on5).abs().max() > 1e-4  # EMA in between
    assert torch.all(w_on5[~mask] == 0)


@pytest.mark.parametrize("V", [151_936, 4_096, 1_000, 30])
def test_blockwise_topk_equals_torch_topk(V):
    """The top-K values behind entropy_topk come from a two-stage (block maxima, then candidates) search; it must
    give exactly torch.topk's values and a true argmax, with ties and with the largest values crowded into one
    block."""
    g = torch.Generator().manual_seed(V)
    for trial in range(6):
        z = torch.randn(5, V, generator=g)
        if trial % 2:
            z = torch.round(z * 2) / 2  # many ties
        if trial >= 3 and V >= 64:
            z[:, :64] = 5.0 + torch.arange(64) * 1e-3 * (trial - 3)  # the whole top-20 in one block (or tied)
        vals, argmax = W._topk(z, 20)
        assert torch.equal(vals, z.topk(20, dim=-1).values), (V, trial)
        # the index of one row maximum (any of tied maxima): the softmax path zeroes p there for log p precision
        assert torch.equal(z.gather(1, argmax[:, None]).squeeze(1), z.amax(-1)), (V, trial)


@pytest.mark.slow
def test_compiled_reference_statistics_equal_eager():
    """token_stats_chunked(compile=True) (torch.compile'd passes over V, chunks padded to one shape) gives the
    eager path's statistics, on a Qwen-sized vocabulary with a ragged last chunk, sharp and flat rows."""
    g = torch.Generator().manual_seed(0)
    V, D, N = 151_936, 16, 37
    h = torch.randn(N, D, generator=g)
    h[::3] *= 8.0  # sharp rows
    Wt = torch.randn(V, D, generator=g)
    targets = torch.randint(0, V, (N,), generator=g)
    targets[::4] = (h[::4] @ Wt.T).argmax(-1)  # some top-ranked targets
    eager = W.token_stats_chunked(h, Wt, targets, chunk_size=16)
    fused = W.token_stats_chunked(h, Wt, targets, chunk_size=16, compile=True)
    for key in W.STAT_KEYS:
        torch.testing.assert_close(fused[key], eager[key], rtol=1e-5, atol=1e-6, msg=key)
