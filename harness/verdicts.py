"""Which component helps: paired comparisons of a plan's trials, from their per-row predictions.

A *contrast* compares two configurations of the plan on the same evaluation rows: each one that
adds a single component to another (the step of a cumulative design, the drop of a
leave-one-out design, each "does X help" pair of a grid) and each configuration against the
baseline. For each, the F1 difference is pooled over the seeds both sides ran (mean of per-seed
differences; a cluster bootstrap over query groups with one resample shared by every seed for
the rows' error, the seed-to-seed spread for training's, both in one t interval from 2 seeds;
harness.paired.pooled_over_seeds), McNemar's test is run per seed, and Holm's correction is
applied across every contrast one report makes. A verdict is "helps" / "hurts" only when the
combined interval excludes 0 and the Holm-adjusted p is below 0.05; otherwise "no detectable
difference". One seed gives an estimate and a row interval but no verdict (training variance
is unmeasured); contrasts with a trial that learned nothing get no verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.components import REGISTRY
from harness.design import Configuration, factorial_effects
from harness.paired import (
    Aligned,
    McNemarResult,
    PooledResult,
    align,
    bootstrap_system_f1,
    holm,
    mcnemar_test,
    pooled_over_seeds,
    verdict,
)
from harness.plan import Plan
from harness.record import TrialRecord
from harness.stats import percentile_interval, seed_interval

ALPHA = 0.05


def format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


@dataclass
class Contrast:
    task: str
    model: str
    a: str  # label of the configuration compared against
    b: str
    added: tuple[str, ...]  # components on in b and not in a (for this task)
    result: PooledResult | None = None
    mcnemar: list[McNemarResult] | None = None
    p_holm: float | None = None
    note: str = ""  # why there is no verdict (n/a, missing trials, learned nothing)

    @property
    def name(self) -> str:
        return f"{self.a} → {self.b}"

    @property
    def verdict(self) -> str:
        if self.result is None:
            return "no verdict"
        return verdict(self.result, alpha=ALPHA, p_adjusted=self.p_holm)

    @property
    def significant(self) -> bool:
        return self.verdict in ("helps", "hurts")


def _pairs(configurations: Sequence[Configuration], task: str) -> list[tuple[Configuration, Configuration]]:
    """(a, b): b adds one component to a, or a is the baseline; in design order, each once."""
    baseline = next((c for c in configurations if not c.components), None)
    pairs, seen = [], set()
    for b in configurations:
        candidates = [a for a in configurations
                      if a.components < b.components and len(b.components - a.components) == 1]
        if baseline is not None and baseline is not b and baseline not in candidates:
            candidates.append(baseline)
        for a in candidates:
            if (a.label, b.label) not in seen:
                seen.add((a.label, b.label))
                pairs.append((a, b))
    return pairs


def _planned(records: dict[str, TrialRecord], plan: Plan, *, model: str, task: str,
             components: frozenset[str]) -> dict[int, TrialRecord]:
    """Finished trials of this configuration, by seed (every language in training)."""
    ordered = REGISTRY.ordered(components)
    return {t.seed: records[t.key] for t in plan.trials
            if t.model == model and t.task == task and t.components == ordered
            and t.heldout_language is None and t.role == "planned" and t.key in records}


def contrasts(plan: Plan, records: Sequence[TrialRecord], *, models: Sequence[str],
              n_resamples: int = 2000) -> list[Contrast]:
    """Every contrast of the plan with its paired result, Holm-adjusted across all of them."""
    finished = {r.key: r for r in records if r.status == "FINISHED" and plan.owns(r)}
    out: list[Contrast] = []
    for model in models:
        for task in plan.tasks:
            seen: set[tuple[frozenset[str], frozenset[str]]] = set()
            for a, b in _pairs(plan.configurations, task):
                on_a, on_b = a.effective(task), b.effective(task)
                if on_a == on_b:
                    out.append(Contrast(task, model, a.label, b.label, (), note=(
                        f"n/a: {', '.join(sorted(b.components - a.components))} "
                        f"does not apply to {task}")))
                    continue
                if (on_a, on_b) in seen:  # the same two trials under other design labels
                    continue
                seen.add((on_a, on_b))
                contrast = Contrast(task, model, REGISTRY.label(on_a), REGISTRY.label(on_b),
                                    REGISTRY.ordered(on_b - on_a))
                out.append(contrast)
                side_a = _planned(finished, plan, model=model, task=task, components=on_a)
                side_b = _planned(finished, plan, model=model, task=task, components=on_b)
                seeds = sorted(set(side_a) & set(side_b))
                if not seeds:
                    contrast.note = "no verdict: trials missing"
                    continue
                trials = [side_a[s] for s in seeds] + [side_b[s] for s in seeds]
                degenerate = [t for t in trials if t.degenerate]
                if degenerate:
                    contrast.note = (f"no verdict: {len(degenerate)} of {len(trials)} trials "
                                     "learned nothing")
                    continue
                _compare(contrast, [(side_a[s], side_b[s]) for s in seeds], n_resamples)
    tested = {id(c): c.result.p_value for c in out
              if c.result is not None and c.result.n_seeds >= 2}
    for key, p in holm(tested).items():
        next(c for c in out if id(c) == key).p_holm = p
    return out


def paired_over_seeds(aligned: Sequence[Aligned], *, n_resamples: int = 2000) -> PooledResult:
    """The pooled paired result of aligned seed pairs, resampled by query group when the rows
    carry more than one group."""
    grouped = all(p.group is not None for p in aligned) and len(set(aligned[0].group)) > 1
    return pooled_over_seeds(aligned, n_resamples=n_resamples, groups="group" if grouped else None)


def _compare(contrast: Contrast, pairs: list[tuple[TrialRecord, TrialRecord]],
             n_resamples: int) -> None:
    aligned = [align(a.predictions, b.predictions) for a, b in pairs]
    contrast.result = paired_over_seeds(aligned, n_resamples=n_resamples)
    contrast.mcnemar = [mcnemar_test(p) for p in aligned]


@dataclass
class Effect:
    """A factorial main effect or two-factor interaction on F1, with its intervals."""

    name: str  # "HCT" or "LT:HCT"
    estimate: float
    low: float
    high: float
    t_low: float | None = None  # over seeds (>= 3 seeds): training variance
    t_high: float | None = None


def factorial_estimates(plan: Plan, records: Sequence[TrialRecord], *, model: str, task: str,
                        switches: Sequence[str], n_resamples: int = 2000) -> list[Effect]:
    """Main effects and two-factor interactions of a grid or fractional design on `task`:
    mean F1 at +1 minus mean at -1 (harness.design.factorial_effects), with a bootstrap interval
    over query groups (one resample for every run and seed) and, with >= 3 seeds, a t-interval
    of the per-seed estimates. Switches that do not apply to `task` are left out. Empty when
    the design has no coded levels or a run has no finished trials."""
    configurations = [c for c in plan.configurations if c.coded is not None]
    if not configurations or len(configurations) != len(plan.configurations):
        return []
    columns = [j for j, name in enumerate(switches) if REGISTRY[name].applies_to(task)]
    if not columns:
        return []
    finished = {r.key: r for r in records if r.status == "FINISHED" and plan.owns(r)}
    runs = []
    for configuration in configurations:
        by_seed = _planned(finished, plan, model=model, task=task,
                           components=configuration.effective(task))
        if not by_seed or any(r.degenerate for r in by_seed.values()):
            return []
        runs.append(by_seed)
    seeds = sorted(set.intersection(*(set(r) for r in runs)))
    if not seeds:
        return []
    coded = np.array([[c.coded[j] for j in columns] for c in configurations])
    names = [switches[j] for j in columns]
    systems = [[run[s].predictions for s in seeds] for run in runs]
    grouped = all("group" in f for f in systems[0]) and systems[0][0]["group"].nunique() > 1
    point, boot = bootstrap_system_f1(systems, n_resamples=n_resamples,
                                      groups="group" if grouped else None)
    estimates = factorial_effects(coded, point, names=names)
    resampled = [factorial_effects(coded, row, names=names) for row in boot]
    per_seed = [factorial_effects(coded, np.array([run[s].metrics["f1"] for run in runs]),
                                  names=names) for s in seeds]
    effects = []
    for name, estimate in estimates.items():
        low, high = percentile_interval(np.array([r[name] for r in resampled]))
        effect = Effect(name, estimate, low, high)
        if len(seeds) >= 3:
            effect.t_low, effect.t_high = seed_interval([e[name] for e in per_seed])
        effects.append(effect)
    return effects


def sentence(contrast: Contrast) -> str:
    """One line a reader can quote: the difference, its intervals, the tests, the verdict."""
    head = f"{contrast.task} {contrast.name}"
    if contrast.result is None:
        return f"{head}: {contrast.note}."
    r = contrast.result
    seeds = f"{r.n_seeds} seed{'s' if r.n_seeds > 1 else ''}"
    interval = f"95% CI [{r.low:+.3f}, {r.high:+.3f}]"
    if r.n_seeds == 1:
        return (f"{head}: untested with one seed (Δ F1 {r.difference:+.3f}, rows-only {interval}; "
                "training variance unmeasured: run 2 or more seeds for a verdict).")
    parts = f"rows only [{r.rows_low:+.3f}, {r.rows_high:+.3f}]" + (
        f", seeds only [{r.t_low:+.3f}, {r.t_high:+.3f}]" if r.t_low is not None else "")
    discordant = (sum(m.b01 for m in contrast.mcnemar), sum(m.b10 for m in contrast.mcnemar))
    mid_p = float(np.median([m.mid_p for m in contrast.mcnemar]))
    tests = (f"p {format_p(r.p_value)}, Holm p {format_p(contrast.p_holm)}; McNemar "
             f"{discordant[0]} vs {discordant[1]} discordant rows, median mid-p {format_p(mid_p)}")
    outcome = contrast.verdict
    what = ("no detectable difference" if outcome == "no detectable difference"
            else f"{'+'.join(contrast.added)} {outcome}")
    return (f"{head}: {what} (Δ F1 {r.difference:+.3f}, {interval}; {parts}; {seeds}; "
            f"{tests}).")


__all__ = ["ALPHA", "Contrast", "Effect", "contrasts", "factorial_estimates", "format_p", "sentence"]
