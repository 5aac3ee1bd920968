"""Which configurations (sets of switched-on components) a sweep runs.

Designs: full factorial grid (Yates order), the paper's Table-4 cumulative rows, leave-one-out,
and two-level fractional factorials 2^(k-p) found by a small search for the fewest runs that
reach a requested resolution, maximising resolution and then minimising aberration. Effects of a
factorial design are estimated by `factorial_effects`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np

from harness.components import REGISTRY
from harness.config import DesignConfig
from harness.data import TASKS

# Factor letters of a fractional design; "I" is the identity of the defining relation.
LETTERS = "ABCDEFGHJKLMNOPQRSTUVWXYZ"
_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII"}


def component_label(components: Iterable[str]) -> str:
    """`"QR+LT+HCT"` in pipeline order, `"baseline"` for none."""
    return REGISTRY.label(components)


@dataclass(frozen=True)
class Configuration:
    """One point of a design: the components switched on in a trial."""

    components: frozenset[str]
    label: str
    row: int
    # The +-1 levels of the switches (in switch order) for factorial designs, else None.
    coded: tuple[int, ...] | None = None

    def effective(self, task: str) -> frozenset[str]:
        """The components that act on `task` (HCT only QC, SIT/DG only QI)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
        return frozenset(c for c in self.components if REGISTRY[c].applies_to(task))


def _check(switches: Sequence[str], always_on: Sequence[str]) -> None:
    for name in [*switches, *always_on]:
        if name not in REGISTRY:
            raise ValueError(f"unknown component {name!r} (expected one of {', '.join(REGISTRY.names)})")
    for names in (switches, always_on):
        twice = [n for i, n in enumerate(names) if n in names[:i]]
        if twice:
            raise ValueError(f"component listed twice: {twice[0]}")
    both = [n for n in switches if n in always_on]
    if both:
        raise ValueError(f"{both[0]} is both switched and always on")


def _from_coded(rows: np.ndarray, switches: Sequence[str],
                always_on: Sequence[str]) -> list[Configuration]:
    configurations = []
    for index, levels in enumerate(rows):
        on = frozenset(always_on) | {s for s, level in zip(switches, levels, strict=True) if level > 0}
        configurations.append(Configuration(on, component_label(on), index,
                                            tuple(int(v) for v in levels)))
    return configurations


def _yates(k: int) -> np.ndarray:
    """2^k x k matrix of +-1 in standard order: the first factor alternates fastest."""
    runs = np.arange(2**k)[:, None]
    return np.where((runs >> np.arange(k)) & 1, 1, -1)


def grid(switches: Sequence[str], *, always_on: Sequence[str] = ()) -> list[Configuration]:
    """Full factorial 2^k over `switches` in standard (Yates) order, baseline first."""
    _check(switches, always_on)
    return _from_coded(_yates(len(switches)), switches, always_on)


def cumulative(order: Sequence[str], *, always_on: Sequence[str] = ()) -> list[Configuration]:
    """Table-4 rows: baseline, then the components of `order` added one at a time."""
    _check(order, always_on)
    configurations = []
    for index in range(len(order) + 1):
        on = frozenset(always_on) | set(order[:index])
        configurations.append(Configuration(on, component_label(on), index))
    return configurations


def leave_one_out(switches: Sequence[str], *, always_on: Sequence[str] = ()) -> list[Configuration]:
    """Everything on ("all"), then each switch turned off in turn ("all - HCT")."""
    _check(switches, always_on)
    everything = frozenset(always_on) | set(switches)
    configurations = [Configuration(everything, "all", 0)]
    for index, name in enumerate(switches, start=1):
        configurations.append(Configuration(everything - {name}, f"all - {name}", index))
    return configurations


# ------------------------------------------------------------------ fractional factorials
# A word (effect) is a bit mask over the factors: bit j set means factor j is in it, and the
# product of two words is their XOR.


def _length(word: int) -> int:
    return word.bit_count()


def _bits(word: int) -> list[int]:
    return [j for j in range(word.bit_length()) if word >> j & 1]


def _group(generators: Sequence[int]) -> list[int]:
    """All products of the generator words except I, sorted by length then factor order."""
    words = set()
    for size in range(1, len(generators) + 1):
        for subset in itertools.combinations(generators, size):
            product = 0
            for word in subset:
                product ^= word
            words.add(product)
    return sorted(words, key=lambda w: (_length(w), _bits(w)))


@cache
def _search(k: int, resolution: int) -> tuple[int, tuple[int, ...]]:
    """(number of basic factors, basic-factor words of the generated factors)."""
    basic = 0
    while 2**basic - 1 < k:
        basic += 1
    for b in range(basic, k):
        candidates = [w for w in range(1, 2**b) if _length(w) >= 2]
        best: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        for combo in itertools.combinations(candidates, k - b):
            lengths = [_length(w) for w in _group(_generator_words(b, combo))]
            key = (-min(lengths), tuple(lengths.count(n) for n in range(1, k + 1)))
            if best is None or key < best[0]:
                best = (key, combo)
        if best is not None and -best[0][0] >= resolution:
            return b, best[1]
    return k, ()


def _generator_words(b: int, combo: Sequence[int]) -> list[int]:
    """Defining words of generators: generated factor b+j times its basic-factor word."""
    return [word | 1 << (b + j) for j, word in enumerate(combo)]


@dataclass(frozen=True)
class FractionalDesign:
    """A two-level fractional factorial over `switches` (factor letters A, B, ... in order)."""

    switches: tuple[str, ...]
    always_on: tuple[str, ...]
    configurations: list[Configuration]
    # "E=ABC" per generated factor; `letters` maps each letter to its component.
    generators: list[str]
    # Words of the defining relation I = ... (letters), shortest first; empty for a full factorial.
    defining_relation: list[str]
    # Achieved resolution; None for a full factorial (every effect estimable).
    resolution: int | None
    # Each main effect and two-factor interaction -> the effects (up to 3 factors) it is aliased with.
    aliases: dict[str, list[str]]

    @property
    def letters(self) -> dict[str, str]:
        return dict(zip(LETTERS, self.switches, strict=False))

    @property
    def runs(self) -> int:
        return len(self.configurations)

    @property
    def coded(self) -> np.ndarray:
        """runs x k matrix of +-1 levels, one column per switch."""
        return np.array([c.coded for c in self.configurations], dtype=int).reshape(self.runs, -1)

    def describe(self) -> str:
        """Multi-line text for the plan printout."""
        k = len(self.switches)
        factors = ", ".join(f"{letter}={name}" for letter, name in self.letters.items())
        if self.resolution is None:
            return (f"Full factorial 2^{k} = {self.runs} runs ({factors}): no fraction of fewer "
                    "runs reaches the requested resolution; every main effect and interaction "
                    "is estimable.")
        p = len(self.generators)
        lines = [f"Fractional factorial 2^({k}-{p}) = {self.runs} runs, "
                 f"resolution {_ROMAN[self.resolution]} ({factors})"]
        named = []
        for generator in self.generators:
            target, word = generator.split("=")
            named.append(f"{generator} ({self.letters[target]} = "
                         f"{'*'.join(self.letters[c] for c in word)})")
        lines.append("Generators: " + "; ".join(named))
        lines.append("Defining relation: I = " + " = ".join(self.defining_relation))
        lines.append(f"Resolution {_ROMAN[self.resolution]}: " + {
            3: "main effects are aliased with two-factor interactions",
            4: "main effects are clear of two-factor interactions; "
               "two-factor interactions are aliased with each other",
        }.get(self.resolution, "main effects and two-factor interactions are clear of each "
                               "other (aliased only with higher-order interactions)"))
        shown: set[str] = set()
        for effect, aliased in self.aliases.items():
            chain = [effect] + [a for a in aliased if a.count(":") <= 1]
            if len(chain) > 1 and effect not in shown:
                shown.update(chain)
                lines.append("  " + " = ".join(chain))
        return "\n".join(lines)


def fractional(switches: Sequence[str], *, resolution: int,
               always_on: Sequence[str] = ()) -> FractionalDesign:
    """The 2^(k-p) fraction with the fewest runs whose resolution is at least `resolution`.

    Among fractions of that size: highest resolution, then minimum aberration. A full factorial
    when no fraction reaches the resolution. Principal fraction (generators with a + sign).
    """
    _check(switches, always_on)
    if resolution not in (3, 4, 5):
        raise ValueError(f"resolution must be 3, 4 or 5 (got {resolution})")
    k = len(switches)
    if k > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} switches")
    b, combo = _search(k, resolution)
    basic = _yates(b)
    columns = [basic] + [np.prod(basic[:, _bits(word)], axis=1, keepdims=True) for word in combo]
    coded = np.hstack(columns).astype(int)
    words = _group(_generator_words(b, combo))

    def letters(word: int) -> str:
        return "".join(LETTERS[j] for j in _bits(word))

    def name(word: int) -> str:
        return ":".join(switches[j] for j in _bits(word))

    effects = [1 << j for j in range(k)] + [1 << i | 1 << j for i, j in itertools.combinations(range(k), 2)]
    aliases = {}
    for effect in effects:
        aliased = sorted((effect ^ w for w in words if _length(effect ^ w) <= 3),
                         key=lambda w: (_length(w), _bits(w)))
        aliases[name(effect)] = [name(w) for w in aliased]
    return FractionalDesign(
        switches=tuple(switches), always_on=tuple(always_on),
        configurations=_from_coded(coded, switches, always_on),
        generators=[f"{LETTERS[b + j]}={letters(w)}" for j, w in enumerate(combo)],
        defining_relation=[letters(w) for w in words],
        resolution=min((_length(w) for w in words), default=None),
        aliases=aliases)


def factorial_effects(coded: np.ndarray, y: np.ndarray, *,
                      names: Sequence[str] | None = None) -> dict[str, float]:
    """Main effects and two-factor interactions: mean of y at +1 minus mean at -1.

    `coded` is runs x k of +-1 (a full or fractional design); effects are named by `names`
    (default A, B, ...), interactions "A:B". Switches constant over the runs (and their
    interactions) are left out. In a fraction each estimate also carries its aliases.
    """
    coded = np.asarray(coded, dtype=float)
    y = np.asarray(y, dtype=float)
    if coded.ndim != 2 or not np.isin(coded, (-1.0, 1.0)).all():
        raise ValueError("coded must be a runs x k matrix of -1/+1")
    if y.shape != (coded.shape[0],):
        raise ValueError(f"y has shape {y.shape}, expected ({coded.shape[0]},)")
    if not np.isfinite(y).all():
        raise ValueError("y has missing or infinite values")
    k = coded.shape[1]
    names = list(names) if names is not None else list(LETTERS[:k])
    if len(names) != k:
        raise ValueError(f"{len(names)} names for {k} columns")
    varied = [j for j in range(k) if np.ptp(coded[:, j]) > 0]
    terms = [(j,) for j in varied] + list(itertools.combinations(varied, 2))
    effects = {}
    for factors in terms:
        high = np.prod(coded[:, factors], axis=1) > 0
        if high.all() or not high.any():
            continue
        effects[":".join(names[j] for j in factors)] = float(y[high].mean() - y[~high].mean())
    return effects


# ------------------------------------------------------------------------- planning


class Design(Protocol):
    """What a design kind provides: its configurations and a description for the plan."""

    def configurations(self) -> list[Configuration]: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class _Listed:
    """A design whose configurations are a plain list (grid, cumulative, leave-one-out, optuna)."""

    kind: str
    items: tuple[Configuration, ...]

    def configurations(self) -> list[Configuration]:
        return list(self.items)

    def describe(self) -> str:
        return f"{self.kind}: " + ", ".join(c.label for c in self.items)


@dataclass(frozen=True)
class _Fractional:
    design: FractionalDesign

    def configurations(self) -> list[Configuration]:
        return self.design.configurations

    def describe(self) -> str:
        return self.design.describe()


def _searched(switches: Sequence[str], *, always_on: Sequence[str] = ()) -> list[Configuration]:
    """An Optuna search tunes one configuration: every switch on."""
    _check(switches, always_on)
    on = frozenset(switches) | set(always_on)
    return [Configuration(on, component_label(on), 0)]


_LISTED = {"grid": grid, "cumulative": cumulative, "leave-one-out": leave_one_out,
           "optuna": _searched}


def make_design(design: DesignConfig) -> Design:
    """The design `design.kind` names."""
    switches, always_on = list(design.switches), list(design.always_on)
    if design.kind == "fractional":
        return _Fractional(fractional(switches, resolution=design.resolution, always_on=always_on))
    if design.kind in _LISTED:
        return _Listed(design.kind, tuple(_LISTED[design.kind](switches, always_on=always_on)))
    raise ValueError(f"unknown design kind {design.kind!r}")


def plan_configurations(design: DesignConfig) -> list[Configuration]:
    """The configurations of `design` (for Optuna: the single one with every switch on)."""
    return make_design(design).configurations()


def per_task(configurations: Sequence[Configuration],
             tasks: Iterable[str]) -> dict[str, list[Configuration]]:
    """Per task: configurations reduced to the task's components, first occurrence kept.

    Rows, coded levels and special labels ("all - LT") stay; component labels are recomputed.
    """
    result = {}
    for task in tasks:
        seen: set[frozenset[str]] = set()
        reduced = []
        for config in configurations:
            effective = config.effective(task)
            if effective in seen:
                continue
            seen.add(effective)
            label = config.label
            if label == component_label(config.components):
                label = component_label(effective)
            reduced.append(Configuration(effective, label, config.row, config.coded))
        result[task] = reduced
    return result


__all__ = [
    "Configuration", "FractionalDesign", "component_label", "cumulative", "factorial_effects",
    "fractional", "grid", "leave_one_out", "make_design", "per_task", "plan_configurations",
]
