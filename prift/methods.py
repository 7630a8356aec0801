"""A method = a weighting rule (prift.rules) × a statistics source (`SOURCES`) + loss extras, defined and validated
without torch: config validation calls `check_method` before any job; the trainer builds `Method.from_config`.

Sources (where the per-token statistics m_t is computed from come from):
  online      the model being fine-tuned, stop-gradient, in the same forward (DFT, EAFT, IDFT, TALR, ASFT)
  pretrained  the frozen initial checkpoint: the cached reference pass of the trained backbone (PriFT, Table 6)
  reference   the cached reference pass of another frozen model (`reference:` a backbone key): Table 8's cross-model
              statistics, Table 7's KD teacher, Fig. 1c's partly fine-tuned references
  ema         an EMA of the online model with momentum `ema_rho` (Fig. 6a), computed online
Extras: `asft_beta` (ASFT's β·KL(π_ref ‖ π_θ), the reference model online), `kd_beta` (App. D.1's non-target term,
the teacher online when β > 0).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from prift import rules as R

MIN_SELECTED_FRAC = 1e-3   # a run whose weights select fewer response tokens than this stops (Method.min_selected_frac)


@dataclass(frozen=True)
class Source:
    name: str
    cached: bool       # the statistics are read from a reference pass file (no second model in memory)
    reference: str     # whose reference pass: "self" (the trained backbone), "named" (the method's `reference:`), ""
    needs: tuple = ()  # method keys the source needs


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("online", cached=False, reference=""),
    Source("pretrained", cached=True, reference="self"),
    Source("reference", cached=True, reference="named", needs=("reference",)),
    Source("ema", cached=False, reference="", needs=("ema_rho",)),
)}
KEYS = ("rule", "source", "params", "reference", "ema_rho", "asft_beta", "kd_beta", "min_selected_frac")
# keys of a method entry that are not the method: its label, a seed run's seed (prift.seeds)
RUN_KEYS = ("label", "seed")
ENTRY_KEYS = KEYS + RUN_KEYS


def _close(name: str, known) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_method(name: str, spec: dict) -> list[str]:
    """Every problem with one entry of `methods:`, each as "config key 'methods.<name>...': ..."; [] when it is a
    valid method."""
    key = f"config key 'methods.{name}"
    msgs = [f"{key}.{k}': unknown key{_close(k, ENTRY_KEYS)}; allowed here: {sorted(ENTRY_KEYS)}"
            for k in spec if k not in ENTRY_KEYS]
    rule, source = spec.get("rule", "sft"), spec.get("source", "online")
    if rule not in R.RULES:
        msgs.append(f"{key}.rule': unknown rule '{rule}'{_close(rule, R.RULES)}; known: {sorted(R.RULES)}")
    else:
        msgs += [f"{key}.params': {p}" for p in R.check_rule_params(rule, spec.get("params"))]
    if source not in SOURCES:
        msgs.append(f"{key}.source': unknown source '{source}'{_close(source, SOURCES)}; known: {sorted(SOURCES)}")
    else:
        msgs += [f"{key}.{k}': required when source is '{source}'" for k in SOURCES[source].needs
                 if spec.get(k) is None]
    if "kd_beta" in spec and (rule != "prob" or source != "reference"):
        # App. D.1: −q(y)log p(y) − β Σ_{v≠y} q(v) log p(v): the target term is the weighted NLL with m_t = q(y_t),
        # i.e. rule `prob` on the teacher's cached statistics; the teacher is also the model of `reference`.
        msgs.append(f"{key}.kd_beta': KD (App. D.1) is rule 'prob' on the teacher's cached statistics (source "
                    f"'reference'), not rule '{rule}' with source '{source}'")
    for k in ("asft_beta", "kd_beta"):
        if spec.get(k) is not None and not spec[k] >= 0:
            msgs.append(f"{key}.{k}': must be >= 0, got {spec[k]!r}")
    return msgs


def reference_of(spec: dict, backbone: str) -> str | None:
    """The backbone whose cached reference pass a method of `backbone` reads (None: it reads none)."""
    src = SOURCES[spec.get("source", "online")]
    return {"self": backbone, "named": spec.get("reference"), "": None}[src.reference]


@dataclass
class Method:
    """A weighting rule × a statistics source (+ extras). Built from one entry of the config's `methods`."""
    name: str
    rule: str = "sft"
    source: str = "online"
    params: dict = field(default_factory=dict)  # the rule's parameters (tau, w_min, b, stat/keep/frac, ...)
    reference: str | None = None     # backbone key of the frozen reference (source reference; the KD teacher)
    ema_rho: float | None = None     # momentum of the EMA source
    asft_beta: float = 0.0           # ASFT's KL anchor β·KL(π_ref ‖ π_θ) (needs the reference model online)
    kd_beta: float | None = None     # App. D.1: −q(y)log p(y) − β Σ_{v≠y} q(v) log p(v) (the teacher online if β > 0)
    min_selected_frac: float = MIN_SELECTED_FRAC  # stop when the weights select fewer tokens (0: intended, Fig. 6b)

    @classmethod
    def from_config(cls, name: str, spec: dict) -> "Method":
        problems = check_method(name, spec)
        if problems:
            raise ValueError(f"method '{name}': " + "; ".join(problems))
        return cls(name=name, **{k: v for k, v in spec.items() if k not in RUN_KEYS})

    @property
    def stats(self) -> tuple[str, ...]:
        """The statistics the rule reads (the only columns the collator attaches for a cached source)."""
        return R.rule_reads(self.rule, self.params)

    @property
    def cached(self) -> bool:
        """Whether the statistics come from a reference pass file (no second model in memory)."""
        return SOURCES[self.source].cached

    @property
    def needs_ref_logits(self) -> bool:
        """Whether the frozen reference model runs beside the online one (ASFT's KL, KD's non-target term; KD with
        β = 0 is the weighted NLL on cached statistics alone and loads no teacher)."""
        return self.asft_beta > 0 or bool(self.kd_beta)
