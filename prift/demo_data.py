"""The demo's data: a deterministic math-like domain (`demo_math`) whose problems come in the real benchmarks'
record formats, so that the demo runs every benchmark kind's own preparing, grading and metrics code."""
from __future__ import annotations

import random


def _boxed_solution(steps: list[str], answer: str) -> str:
    return " ".join(steps) + f" The final answer is $\\boxed{{{answer}}}$."


def _problem(rng: random.Random, family: str, style: str = "steps") -> tuple[str, str, str]:
    """(problem, solution, answer) for one demo family. ``style`` varies the wording of solutions so that the
    pre-training corpus differs from the fine-tuning data (the prior is real but not the target)."""
    if family == "zero":
        a = rng.randint(2, 99)
        ans = str(a)
        prob = f"Simplify ${a} + 0$."
        steps = ["Adding zero leaves a number unchanged.", f"${a} + 0 = {a}$."]
    elif family == "succ":
        a = rng.randint(2, 98)
        ans = str(a + 1)
        prob = f"What integer comes right after ${a}$?"
        steps = ["The next integer is one more.", f"${a} + 1 = {ans}$."]
    elif family == "max":
        a, b = rng.sample(range(2, 99), 2)
        ans = str(max(a, b))
        prob = f"Which is larger: ${a}$ or ${b}$?"
        steps = [f"We compare {a} and {b}.", f"The larger number is ${ans}$."]
    elif family == "add":
        a, b = rng.randint(1, 49), rng.randint(1, 49)
        ans = str(a + b)
        prob = f"What is ${a} + {b}$?"
        steps = [f"We add {a} and {b}.", f"${a} + {b} = {ans}$."]
    elif family == "sub":
        a = rng.randint(10, 99)
        b = rng.randint(1, a)
        ans = str(a - b)
        prob = f"Compute ${a} - {b}$."
        steps = [f"We subtract {b} from {a}.", f"${a} - {b} = {ans}$."]
    elif family == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 9)
        ans = str(a * b)
        prob = f"What is ${a} \\times {b}$?"
        steps = [f"We multiply {a} by {b}.", f"${a} \\times {b} = {ans}$."]
    elif family == "lin":
        x, a = rng.randint(1, 9), rng.randint(2, 6)
        b = rng.randint(1, 20)
        c = a * x + b
        ans = str(x)
        prob = f"Solve for $x$: ${a}x + {b} = {c}$."
        steps = [f"Subtract {b} from both sides: ${a}x = {c - b}$.", f"Divide both sides by {a}: $x = {x}$."]
    elif family == "two":
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(2, 5)
        ans = str((a + b) * c)
        prob = f"Compute $({a} + {b}) \\times {c}$."
        steps = [f"First, ${a} + {b} = {a + b}$.", f"Then ${a + b} \\times {c} = {ans}$."]
    else:
        raise ValueError(f"unknown demo family {family!r}")
    if style == "steps":
        sol = _boxed_solution(steps, ans)
    elif style == "terse":
        sol = steps[-1].rstrip(".") + f", so the answer is {ans}."
    else:  # "prose": the pre-training corpus' other way of writing
        sol = " ".join(steps) + f" Therefore the answer is {ans}."
    return prob, sol, ans


# demo split → (families, record format); the splits are named after the real benchmarks, whose record formats
# (prift.grading.GOLD_FORMATS) they are written in, so the same loaders and graders apply (from easy to hard, so
# that the demo's table spreads over the range)
DEMO_BENCHMARKS = {
    "math500": (["zero", "succ"], "math500"),
    "minerva_math": (["max"], "minerva_math"),
    "olympiadbench": (["add", "sub"], "olympiadbench"),
    "aime24": (["lin", "two"], "aime24"),
    "amc23": (["mul"], "amc23"),
}
DEMO_FAMILIES = ["zero", "succ", "max", "add", "sub", "mul", "lin", "two"]


def _as_benchmark_record(fmt: str, i: int, prob: str, sol: str, ans: str) -> dict:
    if fmt == "math500":
        return {"problem": prob, "solution": sol, "answer": ans, "unique_id": f"demo/{i}.json"}
    if fmt == "minerva_math":
        return {"idx": i, "problem": prob, "solution": sol, "type": "demo"}
    if fmt == "olympiadbench":
        return {"id": i, "question": prob, "solution": [sol], "final_answer": [f"${ans}$"],
                "is_multiple_answer": False, "answer_type": "Numerical"}
    if fmt == "aime24":
        return {"id": i, "problem": prob, "solution": sol, "answer": ans.zfill(3)}
    if fmt == "amc23":
        return {"id": i, "problem": prob, "answer": float(ans)}
    raise ValueError(fmt)


def demo_math(split: str, n: int, seed: int = 0) -> list[dict]:
    """Deterministic demo records. ``split``: 'train' (problem/solution, all families), 'pretrain' (problem/solution in
    mixed styles, the corpus the tiny backbone is pre-trained on), or a benchmark name of DEMO_BENCHMARKS. Evaluation
    problems are drawn from their own seeds; `prift prepare` removes any training problem that appears in them."""
    if split == "train":
        rng = random.Random(f"train-{seed}")
        return [dict(zip(("problem", "solution", "answer"), _problem(rng, rng.choice(DEMO_FAMILIES)))) | {"id": i}
                for i in range(n)]
    if split == "pretrain":
        rng = random.Random(f"pretrain-{seed}")
        rows = []
        for i in range(n):
            style = rng.choice(["terse", "prose", "prose", "steps"])
            rows.append(dict(zip(("problem", "solution", "answer"),
                                 _problem(rng, rng.choice(DEMO_FAMILIES), style))) | {"id": i})
        return rows
    if split not in DEMO_BENCHMARKS:
        raise ValueError(f"unknown demo split {split!r}; known: train, pretrain, {', '.join(DEMO_BENCHMARKS)}")
    families, fmt = DEMO_BENCHMARKS[split]
    rng = random.Random(f"{split}-{seed}")
    rows, seen = [], set()
    while len(rows) < n:
        prob, sol, ans = _problem(rng, rng.choice(families))
        if prob in seen:
            continue
        seen.add(prob)
        rows.append(_as_benchmark_record(fmt, len(rows), prob, sol, ans))
    return rows


GENERATORS = {"demo_math": demo_math}
