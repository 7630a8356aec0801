"""Seeds: a training recipe may list several (`training.<domain>.seeds`); every method its domain's tables show then
runs once per seed, and the tables and paired comparisons pool the seeds (prift.tables.cells, prift.tables.paired).

The first seed's run is the run of a single-seed config, under the same path and with the same signature: a method
key `m`. Each further seed s is a run of its own, the method key `m@seed=s` (`<init>@seed=s+rl` for RL from it), an
ordinary method entry `{**methods[m], seed: s}` added at validation (`expand_seeds`, called by
prift.config.validate), so that the rules run it unchanged and going from one seed to several reruns nothing that
exists. A seed run is its first-seed run with every random stream shifted by the same offset s - seeds[0]: the SFT
trainer's seed and data order (`seed` = s), the RL run from it (the RL recipe's seed + offset) and the evaluation
samples (`seed` of the config + offset: prift.generate.sample_seed). Figures (drift probes, sweeps) are drawn from
the first seed's runs; `original` (the backbone, not trained) has one run.
"""
from __future__ import annotations

import re

from prift.config import ORIGINAL, RL_SUFFIX, ConfigError, rl_init, table_cells

SEED_MARK = "@seed="
_SEEDED = re.compile(r"^(?P<base>.+)@seed=(?P<seed>-?\d+)(?P<rl>\+rl)?$")


def with_seed(method: str, seed: int) -> str:
    """The method key of `method`'s run with seed `seed`: `sft` → `sft@seed=1`, `sft+rl` → `sft@seed=1+rl`."""
    init = rl_init(method)
    return f"{init}{SEED_MARK}{seed}{RL_SUFFIX}" if init is not None else f"{method}{SEED_MARK}{seed}"


def split_seed(method: str) -> tuple[str, int | None]:
    """(the method key of the first seed, the seed) of a run's method key; seed None for a first-seed run:
    `sft@seed=1+rl` → (`sft+rl`, 1), `sft` → (`sft`, None)."""
    m = _SEEDED.match(method)
    if not m:
        return method, None
    return m["base"] + (m["rl"] or ""), int(m["seed"])


def seed_order(seed: int | None) -> tuple[bool, int]:
    """Sort key of the seeds of split_seed: the first seed's run (None) first, then the further seeds in order."""
    return (seed is not None, seed or 0)


def seeds_of(cfg: dict, domain: str) -> list[int]:
    """The seeds of a domain's training recipe: `seeds`, else its one `seed` (its runs are today's single runs)."""
    recipe = cfg["training"].get(domain) or {}
    return list(recipe.get("seeds") or [recipe.get("seed")])


def seed_runs(cfg: dict, domain: str, method: str) -> list[str]:
    """The method keys of every seed's run of `method` on `domain`, the first seed's (`method` itself) first."""
    if method == ORIGINAL:
        return [method]
    return [method] + [with_seed(method, s) for s in seeds_of(cfg, domain)[1:]]


def seed_offset(cfg: dict, domain: str, method: str) -> int:
    """How far a run's random streams are shifted from its first-seed run's: s - seeds[0] for `m@seed=s`, else 0."""
    _, seed = split_seed(method)
    return 0 if seed is None else seed - seeds_of(cfg, domain)[0]


def recipe_of(cfg: dict, domain: str, method: str) -> dict:
    """The training recipe of one run (prift.recipes.Recipe's keys): its domain's, without the list of seeds, with the
    run's own seed where its method entry gives one. Also the `training` part of the sft rule's signature: a
    single-seed run's is its domain's recipe as before, whatever seeds are added."""
    recipe = {k: v for k, v in cfg["training"][domain].items() if k != "seeds"}
    seed = cfg["methods"].get(method, {}).get("seed")
    return recipe if seed is None else {**recipe, "seed": seed}


def table_inputs(cfg: dict, table: str) -> list[tuple[str, str, str]]:
    """(backbone, method, benchmark) of every file a table reads: each cell of prift.config.table_cells, once per
    seed (`original` once)."""
    spec = cfg["tables"][table]
    return [(b, s, bench) for b, m, bench in table_cells(spec) for s in seed_runs(cfg, spec["domain"], m)]


def check_seeds(cfg: dict) -> list[str]:
    """Each recipe's `seeds`: distinct, and `seed` (when given too) its first."""
    msgs = []
    for d, recipe in cfg["training"].items():
        seeds = recipe.get("seeds")
        if seeds is None:
            continue
        if len(set(seeds)) != len(seeds):
            msgs.append(f"config key 'training.{d}.seeds': {seeds} repeats a seed")
        if "seed" in recipe and seeds and recipe["seed"] != seeds[0]:
            msgs.append(f"config key 'training.{d}.seed': {recipe['seed']} is not the first of `seeds` {seeds} (the "
                        f"first seed's runs are the single-seed runs; give one of the two, or the same first)")
    for key in cfg["methods"]:
        if SEED_MARK in key and split_seed(key)[0] not in cfg["methods"]:
            msgs.append(f"config key 'methods.{key}': '{SEED_MARK}' names the runs of further seeds "
                        f"(training.<domain>.seeds); rename the method")
    return msgs


def expand_seeds(cfg: dict) -> dict:
    """Sets each seeded recipe's `seed` to its first seed and adds the method entries of the further seeds of every
    method its domain's tables show (RL runs: of their init). Idempotent: an expanded config expands to itself."""
    for d, recipe in cfg["training"].items():
        if recipe.get("seeds"):
            recipe["seed"] = recipe["seeds"][0]
    for spec in cfg["tables"].values():
        for _, m, _ in table_cells(spec):
            base = rl_init(m) or m
            if base == ORIGINAL:
                continue
            entry = cfg["methods"][base]
            for s in seeds_of(cfg, spec["domain"])[1:]:
                key, seeded = with_seed(base, s), {**entry, "label": f"{entry['label']} (seed {s})", "seed": s}
                if cfg["methods"].get(key, seeded) != seeded:
                    raise ConfigError(f"config key 'methods.{key}': the seed runs need this name for another entry "
                                      f"(rename yours)")
                cfg["methods"][key] = seeded
    return cfg
