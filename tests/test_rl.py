"""DAPO stage: the reward on hand-made completions, dynamic sampling (pure refill logic and the trainer hook with a
scripted generator), the App. E batch mapping, and a few real DAPO steps on the tiny backbone with kill-and-resume."""
from __future__ import annotations

import collections
import json
import math
import random
import types

import pytest
import torch

from prift import config as C
from prift import dapo, rl
from prift.dapo import GroupCollector, filter_groups
from prift.rl import RLRecipe, batch_mapping, completion_text, rl_prompts
from tests.conftest import REPO

# ----------------------------------------------------------------------------------------------------------------------
# Rewards


def test_completion_text_formats():
    assert completion_text("x \\boxed{3}") == "x \\boxed{3}"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "b"}]}]) == "b"
    assert completion_text({"role": "assistant", "content": "c"}) == "c"


def _reward(recipe, texts, gold, lengths=None):
    """The reward the trainer computes: the weighted sum of the recipe's reward functions (as TRL sums them)."""
    funcs, weights = rl.reward_functions(recipe)
    ids = [[0] * n for n in (lengths or [1] * len(texts))]
    per = [f(completions=texts, gold=gold, completion_ids=ids) for f in funcs]
    return [sum(w * r[i] for w, r in zip(weights, per)) for i in range(len(texts))]


def test_reward_hand_made():
    gold = ["12", "12", "12", "12", "1/2"]
    texts = ["We add 5 and 7. The final answer is $\\boxed{12}$.",   # correct, boxed
             "We add 5 and 7. The final answer is $\\boxed{13}$.",   # wrong
             "We add 5 and 7, so the answer is 12.",                  # right number, no box
             "",                                                      # empty
             "So $x = \\boxed{\\frac{1}{2}}$"]                        # equivalent form
    no_penalty = RLRecipe(overlong_buffer=0)
    assert _reward(no_penalty, texts, gold) == [1.0, -1.0, -1.0, -1.0, 1.0]
    # without the box requirement the evaluation's verdict alone decides (the unboxed answer counts)
    assert _reward(RLRecipe(overlong_buffer=0, require_boxed=False), texts, gold) == [1.0, -1.0, 1.0, -1.0, 1.0]
    # conversational completions (TRL passes [{"role": "assistant", "content": ...}] for chat prompts)
    conv = [[{"role": "assistant", "content": t}] for t in texts]
    assert _reward(no_penalty, conv, gold) == _reward(no_penalty, texts, gold)


def test_overlong_punishment():
    # DAPO Eq. 13 with L_max = 100, L_cache = 20: 0 up to 80 tokens, linear to −1 at 100, −1 beyond
    ok = "The final answer is $\\boxed{12}$."
    r = RLRecipe(max_response_length=100, overlong_buffer=20, overlong_penalty=1.0)
    assert _reward(r, [ok, ok, ok, ok, "no"], ["12"] * 5, [50, 80, 90, 100, 100]) == [1.0, 1.0, 0.5, 0.0, -2.0]
    r = RLRecipe(max_response_length=100, overlong_buffer=20, overlong_penalty=0.5)
    assert _reward(r, [ok], ["12"], [90]) == [0.75]


# ----------------------------------------------------------------------------------------------------------------------
# Dynamic sampling: pure functions


def test_filter_groups_removes_exactly_the_all_equal_groups():
    rewards = [1, 1, 1, 1,  -1, -1, -1, -1,  1, -1, -1, -1,  -1, -1, -1, 1,  0.5, 0.5, 0.5, 0.5,  -1, -1.5, -1, -1]
    assert filter_groups(rewards, 4) == [2, 3, 5]
    assert filter_groups(torch.tensor(rewards), 4) == [2, 3, 5]
    assert filter_groups([1.0, 1.0 + 1e-9], 2, tol=1e-6) == []
    with pytest.raises(ValueError):
        filter_groups([1, 2, 3], 2)


def _round(pattern, G):
    """Rewards of one round: 'm' a mixed group, 'c' all correct, 'w' all wrong."""
    out = []
    for p in pattern:
        out += {"m": [1] + [-1] * (G - 1), "c": [1] * G, "w": [-1] * G}[p]
    return out


def test_group_collector_refills_to_the_batch_size():
    G = 4
    c = GroupCollector(target=4, group_size=G, max_rounds=10)
    assert c.add(_round("mwcw", G)) == ([0], [1, 2, 3])      # 1 informative; degenerate ones kept as filler
    assert not c.done
    assert c.add(_round("wmmw", G)) == ([1, 2], [])          # 3 informative, filler already covers the rest
    keep, _ = c.add(_round("mmmm", G))
    assert keep == [0]                                       # only what is missing is taken
    assert c.done and c.exhausted
    kept, filler = c.final()
    assert kept == [(0, 0), (1, 1), (1, 2), (2, 0)] and filler == []
    s = c.stats()
    assert s == {"rounds": 3, "groups_generated": 12, "groups_filtered": 5, "frac_filtered": 5 / 12,
                 "groups_kept": 4, "groups_short": 0}


def test_group_collector_runs_out_of_rounds():
    G = 2
    c = GroupCollector(target=3, group_size=G, max_rounds=2)
    c.add(_round("wcw", G))
    c.add(_round("mww", G))
    assert c.exhausted and not c.done
    kept, filler = c.final()
    assert kept == [(1, 0)]
    assert filler == [(0, 0), (0, 1)]                        # the batch is completed with filtered groups
    assert len(kept) + len(filler) == 3
    assert c.stats()["groups_short"] == 2 and c.stats()["groups_filtered"] == 5


def test_group_collector_all_informative_first_round():
    c = GroupCollector(target=2, group_size=2, max_rounds=3)
    assert c.add([1, -1, -1, 1]) == ([0, 1], [])
    assert c.done and c.final() == ([(0, 0), (0, 1)], [])


# ----------------------------------------------------------------------------------------------------------------------
# Dynamic sampling: the trainer hook, with a scripted generator in place of TRL's generation + scoring


class _Acc:
    process_index, num_processes, device = 0, 1, torch.device("cpu")

    def gather(self, t):
        return t


def _scripted_trainer(monkeypatch, pattern_of, G, n_prompts_total, max_rounds=5, on_exhausted="mask"):
    """A DAPOTrainer without a model: the parent's `_generate_and_score_completions` is replaced by a function that
    returns, for each row, prompt ids / completion ids encoding the prompt's index (widths differing per call) and
    sets the rewards given by `pattern_of[prompt id]`."""
    from trl import GRPOTrainer
    T = dapo.DAPOTrainer
    calls = []

    def fake_parent(self, inputs):
        idx = [int(x["id"][1:]) for x in inputs]
        B = len(inputs)
        P, C = 3 + len(calls), 5 + 2 * len(calls)           # widths vary from call to call
        prompt_ids = torch.full((B, P), 0)
        prompt_mask = torch.zeros((B, P), dtype=torch.long)
        completion_ids = torch.full((B, C), 0)
        completion_mask = torch.zeros((B, C), dtype=torch.long)
        rewards = []
        for r, i in enumerate(idx):
            lp = 1 + i % 3                                   # left-padded prompt of length lp
            prompt_ids[r, P - lp:] = 1000 + i
            prompt_mask[r, P - lp:] = 1
            lc = 1 + (r % G)                                 # right-padded completion
            completion_ids[r, :lc] = 1000 + i
            completion_mask[r, :lc] = 1
        for g in range(B // G):
            rewards += {"m": [1.0] + [-1.0] * (G - 1), "c": [1.0] * G, "w": [-1.0] * G}[pattern_of[idx[g * G]]]
        rw = torch.tensor(rewards)
        self._last_rewards_per_func = rw.unsqueeze(1)
        grouped = rw.view(-1, G)
        adv = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).view(-1)
        calls.append(idx)
        return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
                "completion_mask": completion_mask, "advantages": adv,
                "old_per_token_logps": completion_mask.float() * -0.5,
                "num_items_in_batch": completion_mask.sum()}

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", fake_parent)
    t = object.__new__(T)
    ids = [f"p{i}" for i in range(n_prompts_total)]
    t.__dict__.update(
        model=types.SimpleNamespace(training=True), dynamic_sampling=True, filter_metric="acc",
        max_gen_rounds=max_rounds, on_exhausted=on_exhausted, num_generations=G, accelerator=_Acc(), _tokenizer=types.SimpleNamespace(
            pad_token_id=0), args=types.SimpleNamespace(seed=0), state=types.SimpleNamespace(global_step=3),
        train_dataset=_Rows(ids), _ds_ids=ids, _metrics={"train": collections.defaultdict(list)},
        reward_weights=torch.ones(1))
    return t, calls


class _Rows:
    def __init__(self, ids):
        self.ids = ids

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, k):
        if k == "id":
            return list(self.ids)
        return {"id": self.ids[k], "prompt": [{"role": "user", "content": self.ids[k]}], "gold": "1"}


def _inputs(ids, G):
    return [{"id": i, "prompt": [{"role": "user", "content": i}], "gold": "1"} for i in ids for _ in range(G)]


def test_trainer_hook_filters_and_refills(monkeypatch):
    G = 3
    pattern = {0: "w", 1: "m", 2: "c", 3: "w"} | {i: "m" for i in range(4, 40)}
    t, calls = _scripted_trainer(monkeypatch, pattern, G, n_prompts_total=40)
    out = t._generate_and_score_completions(_inputs(["p0", "p1", "p2", "p3"], G))
    assert len(calls) == 2                                   # one refill round was enough (3 groups were missing)
    assert set(calls[1]).isdisjoint(calls[0])                # refill prompts are new prompts
    rows = out["completion_ids"][:, 0].tolist()
    groups = [rows[g * G:(g + 1) * G] for g in range(4)]
    assert all(len(set(g)) == 1 for g in groups)             # whole groups, in order
    kept = [g[0] - 1000 for g in groups]
    assert kept[0] == 1 and all(pattern[k] == "m" for k in kept)   # exactly the mixed groups survive
    # shapes: 4 groups × G rows; prompt side still left-padded, completion side right-padded
    assert out["prompt_ids"].shape[0] == 4 * G and out["completion_ids"].shape[0] == 4 * G
    assert bool((out["prompt_mask"][:, -1] == 1).all())
    assert bool((out["completion_mask"][:, 0] == 1).all())
    pm = out["prompt_mask"]
    assert bool(((out["prompt_ids"] != 0) == pm.bool()).all())
    assert bool(((out["completion_ids"] != 0) == out["completion_mask"].bool()).all())
    assert out["old_per_token_logps"].shape == out["completion_ids"].shape
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    assert bool((out["advantages"].view(-1, G).abs().sum(1) > 0).all())
    m = t._metrics["train"]
    assert m["dynamic_sampling/rounds"] == [2.0] and m["dynamic_sampling/groups_short"] == [0.0]
    assert m["dynamic_sampling/groups_generated"] == [8.0]
    assert m["dynamic_sampling/groups_filtered"] == [3.0]
    assert m["dynamic_sampling/frac_filtered"] == [3 / 8]


def test_trainer_hook_short_batch_is_masked(monkeypatch):
    G = 2
    pattern = {i: ("m" if i == 5 else "w") for i in range(12)}
    t, calls = _scripted_trainer(monkeypatch, pattern, G, n_prompts_total=12, max_rounds=2)
    out = t._generate_and_score_completions(_inputs(["p0", "p1", "p2"], G))
    assert len(calls) == 2
    assert out["completion_ids"].shape[0] == 3 * G           # batch shape kept
    mask = out["completion_mask"].view(3, G, -1)
    informative = [g for g in range(3) if mask[g].sum() > 0]
    n_mixed = int(5 in calls[1])                             # the one mixed prompt, if the refill drew it
    assert len(informative) == n_mixed
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())
    assert float(out["advantages"].view(3, G)[[g for g in range(3) if g not in informative]].abs().sum()) == 0.0
    assert t._metrics["train"]["dynamic_sampling/groups_short"] == [float(3 - n_mixed)]


def test_trainer_hook_short_batch_stops_as_verl_does(monkeypatch):
    """on_exhausted="error" (the paper config, verl 0.4's behaviour): rounds used up with too few informative groups
    stop the run, saying what happened and what the choices are."""
    G = 2
    pattern = {i: "w" for i in range(12)}
    t, calls = _scripted_trainer(monkeypatch, pattern, G, n_prompts_total=12, max_rounds=2, on_exhausted="error")
    with pytest.raises(RuntimeError, match=r"2 generation rounds \(max_gen_rounds=2\).*0 of 3.*verl 0.4.*mask"):
        t._generate_and_score_completions(_inputs(["p0", "p1", "p2"], G))
    assert len(calls) == 2


def test_paper_rl_recipe_is_verl_0_4():
    """The paper config's DAPO: no importance-sampling correction (TRL's default has one; verl 0.4 none) and an error
    when dynamic sampling runs out of rounds (masking stays an option)."""
    cfg = C.load(REPO / "config" / "config.yaml")
    r = RLRecipe.from_config(cfg["rl"]["recipe"], cfg["rl"]["backbones"]["qwen2.5-math-1.5b"])
    assert r.on_exhausted == "error" and r.importance_sampling_correction is False
    args = rl.vllm_args(r)
    assert args["vllm_importance_sampling_correction"] is False and args["vllm_mode"] == "colocate"
    from trl import GRPOConfig
    assert GRPOConfig(output_dir="/tmp/x", use_cpu=True).vllm_importance_sampling_correction is True  # TRL's default
    with pytest.raises(ValueError, match="on_exhausted"):
        RLRecipe.from_config({"on_exhausted": "skip"})


def test_trainer_hook_off_in_eval(monkeypatch):
    t, calls = _scripted_trainer(monkeypatch, {0: "w", 1: "w"}, 2, n_prompts_total=2)
    t.model.training = False
    out = t._generate_and_score_completions(_inputs(["p0", "p1"], 2))
    assert len(calls) == 1 and out["completion_ids"].shape[0] == 4


# ----------------------------------------------------------------------------------------------------------------------
# Recipe → GRPOConfig


def test_app_e_batch_mapping():
    r = RLRecipe()                                           # App. E: 128 prompts, mini-batch 32, n = 32
    assert (r.steps, r.prompt_batch_size, r.mini_batch_size, r.rollouts_per_prompt) == (100, 128, 32, 32)
    bm = batch_mapping(r, world_size=1)
    assert bm["gradient_accumulation_steps"] * bm["per_device_train_batch_size"] == 32 * 32   # one mini-batch
    assert bm["steps_per_generation"] * bm["per_device_train_batch_size"] == 128 * 32         # one RL step
    assert bm["max_steps"] == 400 and bm["warmup_steps"] == 40 and bm["logging_steps"] == 4
    bm4 = batch_mapping(RLRecipe(rollouts_per_prompt=16), world_size=4)                      # 8B on 4 GPUs
    assert bm4["gradient_accumulation_steps"] * 8 * 4 == 32 * 16
    assert bm4["steps_per_generation"] * 8 * 4 == 128 * 16
    with pytest.raises(ValueError):
        RLRecipe.from_config({"mini_batch_size": 30})
    with pytest.raises(ValueError):
        RLRecipe.from_config({"no_such_key": 1})
    assert RLRecipe.from_config({"steps": 5}, {"rollouts_per_prompt": 16}).rollouts_per_prompt == 16


def test_rl_prompts_dapo_format_and_dedup():
    wrapped = ("Solve the following math problem step by step. The last line of your response should be of the form "
               "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\nWhat is $1+1$?\n\n"
               "Remember to put your answer on its own line after \"Answer:\".")
    rec = {"prompt": [{"role": "user", "content": wrapped}], "reward_model": {"ground_truth": "2", "style": "rule"},
           "extra_info": {"index": "abc"}}
    out = rl_prompts([rec, dict(rec), {"problem": "p", "answer": "3", "id": 7}])
    assert out == [{"id": "abc", "problem": "What is $1+1$?", "gold": "2"}, {"id": "7", "problem": "p", "gold": "3"}]


# ----------------------------------------------------------------------------------------------------------------------
# Real DAPO steps on the tiny backbone (generation through transformers, as on CPU in the demo)


@pytest.fixture(scope="module")
def prompts():
    """'Solve for x' problems of the demo (answers 1..9): the untrained tiny model names the right digit now and
    then, so some groups have mixed verdicts."""
    from prift.demo_data import _problem
    rng = random.Random(0)
    rows = []
    for i in range(24):
        prob, _, ans = _problem(rng, "lin")
        rows.append({"id": f"lin{i}", "problem": prob, "gold": ans})
    return rows


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    """conftest's tiny backbone (same recipe), built here with one intra-op thread: on the shared 2-core machine the
    default two threads make the 60 pre-training steps ~10x slower (~105 s against ~11 s)."""
    from prift.backbone import build_tiny
    from prift.demo_data import demo_math
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("rl_backbone") / "tiny"
        build_tiny(out, demo_math("pretrain", 1500), pretrain_steps=60, seed=0, log=lambda *_: None)
    finally:
        torch.set_num_threads(n)
    return out


@pytest.fixture
def one_thread():
    """One intra-op thread for the tiny model's many small ops: on a shared 2-core machine, two threads per process
    are several times slower (oversubscription); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny_recipe(**kw):
    # filter on the total reward: with the overlong buffer covering most of the 24 tokens, completions of different
    # lengths score differently, so groups are informative even when every verdict is "wrong"
    base = dict(steps=2, prompt_batch_size=2, mini_batch_size=1, rollouts_per_prompt=4, lr=1e-3, warmup_steps=0,
                max_prompt_length=128, max_response_length=24, overlong_buffer=20, require_boxed=False,
                filter_metric="reward", max_gen_rounds=3, micro_batch_size=2, use_vllm=False,
                gradient_checkpointing=False, save_steps=1, seed=0, on_exhausted="mask")
    return RLRecipe(**{**base, **kw})


def test_dapo_steps_change_the_policy(tiny_backbone, prompts, tmp_path, one_thread):
    from prift.backbone import load_model
    recipe = _tiny_recipe()
    logs = []
    out = tmp_path / "rl" / "final"
    s = rl.train_rl(model_path=str(tiny_backbone), prompts=prompts, out_dir=out, recipe=recipe, log=logs.append)
    assert s["rl_steps"] == 2 and s["optimizer_steps"] == 4     # 2 PPO mini-batches per RL step
    assert (out / "config.json").exists() and (out / "tokenizer_config.json").exists()
    hist = json.loads((out / "train_log.json").read_text())
    steps = [h for h in hist if "reward" in h]
    assert len(steps) == 2
    for h in steps:
        assert math.isfinite(h["loss"])
        for k in ("reward_std", "rewards/correct/mean", "rewards/soft_overlong_punishment_reward/mean",
                  "completions/mean_length", "clip_ratio/region_mean", "clip_ratio/high_mean", "kl", "entropy",
                  "dynamic_sampling/frac_filtered", "dynamic_sampling/groups_kept", "dynamic_sampling/rounds"):
            assert k in h, k
        assert h["dynamic_sampling/groups_kept"] + h["dynamic_sampling/groups_short"] == 2
    assert any("rl step 2/2" in line for line in logs)
    # the run's tokens (the cost table): TRL's count of prompt + completion tokens, the last logged value
    assert s["tokens"] == max(h["num_tokens"] for h in hist if "num_tokens" in h) > 0
    a, b = load_model(str(tiny_backbone)), load_model(str(out))
    with torch.no_grad():
        moved = max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))
    assert moved > 1e-6
    # a finished run is never redone
    again = rl.train_rl(model_path=str(tiny_backbone), prompts=prompts, out_dir=out, recipe=recipe, log=logs.append)
    assert again == s and logs[-1].endswith("nothing to do")



def test_kill_and_resume(tiny_backbone, prompts, tmp_path, one_thread):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step == 2:
                raise KeyboardInterrupt("killed after checkpoint-2")

    out = tmp_path / "rl" / "final"
    # 1 update per RL step (checkpoint-k = RL step k); filtering on the verdict, which is mostly "wrong" for every
    # rollout of this model, exercises the refill rounds and the masked completion of a short batch in a real run
    recipe = _tiny_recipe(steps=3, prompt_batch_size=2, mini_batch_size=2, max_response_length=16,
                          overlong_buffer=12, filter_metric="acc", max_gen_rounds=2)
    with pytest.raises(KeyboardInterrupt):
        rl.train_rl(model_path=str(tiny_backbone), prompts=prompts, out_dir=out, recipe=recipe, callbacks=[Kill()],
                    log=lambda *_: None)
    assert not out.exists()
    assert (tmp_path / "rl" / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
    logs = []
    s = rl.train_rl(model_path=str(tiny_backbone), prompts=prompts, out_dir=out, recipe=recipe, log=logs.append)
    assert any("resuming from" in line and line.endswith("checkpoint-2") for line in logs)
    assert s["resumed_from"].endswith("checkpoint-2") and s["rl_steps"] == 3
    hist = [h for h in json.loads((out / "train_log.json").read_text()) if "reward" in h]
    assert hist[-1]["step"] == 3
    for h in hist:
        assert math.isfinite(h["loss"])
        assert h["dynamic_sampling/groups_kept"] + h["dynamic_sampling/groups_short"] == 2
        assert 1 <= h["dynamic_sampling/rounds"] <= 2
