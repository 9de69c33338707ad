"""The least load time any policy could spend on a residency trace, knowing the future.

``bench/residency.py`` measures what the router's policy spends; this script asks what the
best possible policy would spend on the same traces, on the same machine model, so a missed
target can be told apart from an unreachable one. Its policy is an oracle: it knows every
request's true class and every request still to come, and chooses each request's model to
spend the fewest load seconds for a given mean task fit (dynamic programming over the
trace). Nothing runs: the traces are built (``bench/residency_trace.py``) and scored.

The machine model is the reference machine's under Ollama's scheduler: a model loaded beside
others must fit in free VRAM, and each of the three models is larger than the 16 GiB card
alone, so exactly one is resident and every switch is a full load of the new model's
weights at 2 GB/s (what ``bench/residency.py`` reports as reference seconds). The warm fast
model is resident at the start, as after the router's warm-up. A model serves a request only
when its configured ``num_ctx`` holds the prompt plus the reserved output. Misclassification,
``num_ctx`` reloads and the emulator's timing do not exist here: the oracle is a floor.

For each trace it prints best fit (every request on its best model, one switch per change)
and, for a few fractions of best fit's mean fit, the oracle's least load seconds and their
ratio to best fit's: the issue's target asks for at most 1/3 at 95%.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/residency_oracle.py --seeds 0 1 2
    ... bench/residency_oracle.py --seeds 0 1 2 3 4 5 --tasks 8 --json bench/results/oracle.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.* (the emulator's reference profile) is importable

from tests.ollama_emulator import reference_profile  # noqa: E402

from residency import REFERENCE_DISK_GB_S, TARGET_FIT_RATIO, TARGET_LOAD_RATIO, WARM  # noqa: E402
from residency_trace import TraceItem, build_trace  # noqa: E402

FRACTIONS = (0.90, TARGET_FIT_RATIO, 0.98, 1.0)
UNIT = 100  # task fits have two decimals: fit x 100 is an integer


@dataclass(frozen=True)
class Machine:
    models: list[str]
    fit: dict[str, dict[str, float]]
    num_ctx: dict[str, int]
    load_s: dict[str, float]  # reference seconds to load each model
    reserved_output: int


def reference_machine() -> Machine:
    catalog = yaml.safe_load((REPO / "config" / "models.yaml").read_text(encoding="utf-8"))
    weights = {name: spec.weights_bytes for name, spec in reference_profile().models.items()}
    models = [m["name"] for m in catalog["models"]]
    for model in catalog["models"]:
        for task, fit in model["task_fit"].items():
            if abs(fit * UNIT - round(fit * UNIT)) > 1e-9:
                raise SystemExit(f"{model['name']}: task_fit {task} {fit} has over two decimals")
    return Machine(
        models=models,
        fit={m["name"]: m["task_fit"] for m in catalog["models"]},
        num_ctx={m["name"]: m["num_ctx"] for m in catalog["models"]},
        load_s={name: weights[name] / 1e9 / REFERENCE_DISK_GB_S for name in models},
        reserved_output=catalog["reserved_output_tokens"],
    )


def _servable(machine: Machine, item: TraceItem) -> list[str]:
    needed = item.prompt_tokens + machine.reserved_output
    models = [m for m in machine.models if machine.num_ctx[m] >= needed]
    if not models:
        raise ValueError(f"request {item.index} ({needed} tokens) fits no model")
    return models


def best_fit(machine: Machine, trace: list[TraceItem], start: str) -> tuple[float, float, int]:
    """Mean fit, load seconds and loads with every request on its best servable model."""
    resident, load_s, loads, fits = start, 0.0, 0, []
    for item in trace:
        models = _servable(machine, item)
        model = max(models, key=lambda m: machine.fit[m][item.label])  # first of equals
        if model != resident:
            load_s += machine.load_s[model]
            loads += 1
            resident = model
        fits.append(machine.fit[model][item.label])
    return sum(fits) / len(fits), load_s, loads


def least_load_s(machine: Machine, trace: list[TraceItem], start: str) -> np.ndarray:
    """Least load seconds to reach each total fit (in UNITs): ``result[u]`` is the least any
    choice of models spends to serve the trace with a total fit of at least ``u`` units."""
    top = UNIT * len(trace)
    inf = np.inf
    # spent[m][u]: least load seconds so far, with m resident and exactly u units of fit.
    spent = {m: np.full(top + 1, inf) for m in machine.models}
    spent[start][0] = 0.0
    for item in trace:
        servable = _servable(machine, item)
        nxt = {m: np.full(top + 1, inf) for m in machine.models}
        stay_or_best = np.minimum.reduce([spent[m] for m in machine.models])
        for model in servable:
            gain = round(machine.fit[model][item.label] * UNIT)
            # Arrive with `model` resident: it was resident already, or load it now.
            arrive = np.minimum(spent[model], stay_or_best + machine.load_s[model])
            nxt[model][gain:] = arrive[: top + 1 - gain]
        spent = nxt
    exact = np.minimum.reduce([spent[m] for m in machine.models])
    return np.minimum.accumulate(exact[::-1])[::-1]  # at least u: the best of u and above


def _least_at(least: np.ndarray, total_fit: float) -> float:
    """The oracle's least load seconds for a total fit of at least ``total_fit``."""
    needed = int(np.ceil(round(total_fit * UNIT, 6)))
    return float(least[needed]) if needed < len(least) else float("inf")


def score(machine: Machine, trace: list[TraceItem], start: str = WARM) -> dict[str, Any]:
    fit, load_s, loads = best_fit(machine, trace, start)
    least = least_load_s(machine, trace, start)
    rows = []
    for fraction in FRACTIONS:
        oracle = _least_at(least, fraction * fit * len(trace))
        rows.append(
            {
                "fit_fraction": fraction,
                "oracle_load_s": round(oracle, 1),
                "ratio_to_best_fit": round(oracle / load_s, 3) if load_s else None,
            }
        )
    return {
        "requests": len(trace),
        "best_fit": {"mean_fit": round(fit, 4), "load_s": round(load_s, 1), "loads": loads},
        "oracle": rows,
    }


def against_measured(machine: Machine, path: Path) -> dict[str, Any]:
    """A ``bench/residency.py`` result next to the oracle on the same trace: for each policy
    measured, the least load seconds any policy needs for the mean fit it reached."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("sessions", 1) != 1:
        raise SystemExit(f"{path}: the oracle models one developer (--sessions 1)")
    trace = build_trace(document["seed"], document["tasks"])
    least = least_load_s(machine, trace, WARM)
    rows = {}
    for result in document["results"]:
        if result["requests"] != len(trace):
            raise SystemExit(f"{path}: {result['requests']} requests, the trace has {len(trace)}")
        # The exact total, from each request's model (the reported mean is rounded); a
        # request that failed adds nothing.
        total = sum(
            machine.fit[sent["model"]][sent["label"]]
            for sent in result["requests_detail"]
            if sent["status"] == 200 and sent["model"] in machine.fit
        )
        oracle = _least_at(least, total)
        rows[result["policy"]] = {
            "mean_fit": result["mean_fit"],
            "load_s": result["load_s_reference"],
            "oracle_load_s_at_that_fit": round(oracle, 1),
        }
    return {"seed": document["seed"], "tasks": document["tasks"], "policies": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument(
        "--measured", type=Path, nargs="*", default=[], help="bench/residency.py result files"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    machine = reference_machine()
    print(
        "reference seconds per load: "
        + ", ".join(f"{m} {s:.1f}" for m, s in machine.load_s.items())
        + f"; {WARM} resident at the start"
    )
    results = {}
    for seed in args.seeds:
        result = score(machine, build_trace(seed, args.tasks))
        results[seed] = result
        best = result["best_fit"]
        cells = ", ".join(
            f"{row['fit_fraction']:.0%} of its fit: {row['oracle_load_s']:.0f} s "
            f"({row['ratio_to_best_fit']:.2f})"
            for row in result["oracle"]
        )
        print(
            f"seed {seed}: {result['requests']} requests; best fit {best['mean_fit']:.3f} with "
            f"{best['loads']} loads, {best['load_s']:.0f} s; oracle at {cells}"
        )
    at_target = [
        row["ratio_to_best_fit"]
        for result in results.values()
        for row in result["oracle"]
        if row["fit_fraction"] == TARGET_FIT_RATIO
    ]
    within = sum(ratio <= TARGET_LOAD_RATIO for ratio in at_target)
    print(
        f"least load ratio at {TARGET_FIT_RATIO:.0%} of best fit's fit: "
        f"{min(at_target):.3f}-{max(at_target):.3f} (target <= {TARGET_LOAD_RATIO:.3f}): "
        f"within it on {within} of {len(at_target)} traces for a policy that knew the future"
    )
    measured = [against_measured(machine, path) for path in args.measured]
    for item in measured:
        for policy, row in item["policies"].items():
            print(
                f"measured, seed {item['seed']}, {policy}: mean fit {row['mean_fit']:.3f} for "
                f"{row['load_s']:.0f} s of loads; the oracle needs "
                f"{row['oracle_load_s_at_that_fit']:.0f} s for that fit"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"tasks": args.tasks, "seeds": results, "measured": measured}
        args.json.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
