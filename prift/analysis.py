"""Training-time analysis of the paper's mechanism (Fig. 1a/1b, 3a, 3c; Fig. 4 for SFT): how far the online model's
token statistics drift from the frozen pretrained reference on held-out response tokens.

At configured steps a `DriftProbe` runs the online model over a fixed held-out set and records
  * Pearson / Spearman correlation and mean absolute error between online and pretrained p_t  (Fig. 1a)
  * median online p_t in each of five equal-sized bins of the tokens' initial pretrained rank (Fig. 1b)
  * mean KL(pretrained ‖ online) over the full vocabulary                                    (Fig. 3c)
  * the online entropy H_t of every held-out token at the last probe                          (Fig. 3a)
  * the online p_t of every target token of the first `tokens` held-out examples (`token_p`)  (Fig. 5)
The pretrained side comes from the frozen reference model (statistics once, at the first probe; its logits again at
each probe when `kl` is on), so a resumed run probes against the same reference. Records go to a jsonl file, one line per probe.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from prift.weighting import token_stats


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = (a.square().sum() * b.square().sum()).sqrt()
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean rank), as scipy.stats.rankdata."""
    x = x.double()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    uniq, inv, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, ranks)
    return (sums / counts)[inv]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return pearson(_ranks(a), _ranks(b))


def rank_bins(ref_prob: torch.Tensor, n_bins: int = 5) -> torch.Tensor:
    """Bin index (0 = lowest pretrained p_t … n_bins-1 = highest) of each token: equal-sized bins by pretrained rank."""
    order = torch.argsort(ref_prob.double(), stable=True)
    bins = torch.empty(len(ref_prob), dtype=torch.long)
    bins[order] = torch.arange(len(ref_prob)) * n_bins // max(len(ref_prob), 1)
    return bins


def drift_metrics(online_prob: torch.Tensor, ref_prob: torch.Tensor, bins: torch.Tensor, n_bins: int = 5) -> dict:
    return {"pearson": pearson(online_prob, ref_prob), "spearman": spearman(online_prob, ref_prob),
            "mae": float((online_prob.double() - ref_prob.double()).abs().mean()),
            "median_p_by_bin": [float(online_prob[bins == b].median()) if (bins == b).any() else float("nan")
                                for b in range(n_bins)]}


@torch.no_grad()
def _forward_stats(model, batch_ids, batch_labels, ref_model=None):
    """Online statistics (and KL(ref ‖ online) per token when ref_model is given) on response tokens."""
    device = next(model.parameters()).device
    probs, ents, kls = [], [], []
    for ids, lab in zip(batch_ids, batch_labels):
        x = torch.tensor([ids], device=device)
        y = torch.tensor(lab[1:], device=device)
        m = y != -100
        logits = model(input_ids=x).logits[0, :-1][m]  # [T, V]
        st = token_stats(logits, y[m])
        probs.append(st["prob"].cpu())
        ents.append(st["entropy"].cpu())
        if ref_model is not None:
            ref_logits = ref_model(input_ids=x).logits[0, :-1][m]
            lq = torch.log_softmax(ref_logits.float(), -1)
            lp = torch.log_softmax(logits.float(), -1)
            kls.append((lq.exp() * (lq - lp)).sum(-1).cpu())
    out = {"prob": torch.cat(probs), "entropy": torch.cat(ents)}
    if kls:
        out["kl"] = torch.cat(kls)
    return out


def token_probs(prob: torch.Tensor, counts: list[int], digits: int = 4) -> list[list[float]]:
    """The first sum(counts) entries of the concatenated per-token `prob`, split per example and rounded."""
    out, start = [], 0
    for n in counts:
        out.append([round(float(p), digits) for p in prob[start:start + n]])
        start += n
    return out


def _callback_base():
    from transformers import TrainerCallback
    return TrainerCallback


class DriftProbe(_callback_base()):
    """TrainerCallback: probes the online model every `every` optimizer steps (and at step 0 and at the end)."""

    def __init__(self, heldout: list[dict], out_path: str | Path, every: int, ref_model, kl: bool = True,
                 n_bins: int = 5, tokens: int = 1):
        self.ids = [h["input_ids"] for h in heldout]
        self.labels = [h["labels"] for h in heldout]
        self.out = Path(out_path)
        self.every = every
        self.ref_model = ref_model.eval().requires_grad_(False)
        self.kl = kl
        self.n_bins = n_bins
        # response tokens of the first `tokens` examples: their per-token p_t is recorded at every probe (Fig. 5)
        self.token_counts = [sum(1 for y in lab[1:] if y != -100) for lab in self.labels[:tokens]]
        self.ref = None
        self.bins = None
        self.done_steps: set[int] = set()

    def _probe(self, model, step: int, final: bool = False, write: bool = True):
        """One probe. Every rank runs the forward passes (under FSDP the online model's parameters are sharded and
        its forward is a collective: a probe on rank 0 alone would wait forever); only `write` (rank 0) records."""
        if step in self.done_steps:
            return
        was_training = model.training
        model.eval()
        if self.ref is None:  # the frozen pretrained reference (also right after a resume)
            self.ref = _forward_stats(self.ref_model, self.ids, self.labels)
            self.bins = rank_bins(self.ref["prob"], self.n_bins)
        cur = _forward_stats(model, self.ids, self.labels, self.ref_model if self.kl else None)
        if was_training:
            model.train()
        self.done_steps.add(step)
        if not write:
            return
        rec = {"step": step, **drift_metrics(cur["prob"], self.ref["prob"], self.bins, self.n_bins),
               "entropy_mean": float(cur["entropy"].mean()), "n_tokens": len(cur["prob"])}
        if self.token_counts:
            rec["token_p"] = token_probs(cur["prob"], self.token_counts)
        if "kl" in cur:
            rec["kl_ref_online"] = float(cur["kl"].mean())
        if final:
            rec["entropy"] = [round(float(e), 5) for e in cur["entropy"]]
            rec["ref_entropy"] = [round(float(e), 5) for e in self.ref["entropy"]]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def on_train_begin(self, args, state, control, model=None, **kw):
        if state.global_step == 0:
            self._probe(model, 0, write=state.is_world_process_zero)

    def on_step_end(self, args, state, control, model=None, **kw):
        if self.every and state.global_step % self.every == 0:
            self._probe(model, state.global_step, write=state.is_world_process_zero)

    def on_train_end(self, args, state, control, model=None, **kw):
        self.done_steps.discard(state.global_step)
        self._probe(model, state.global_step, final=True, write=state.is_world_process_zero)


def read_probes(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]
