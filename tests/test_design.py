import itertools

import numpy as np
import pytest

from harness.config import DesignConfig
from harness.design import (
    Configuration,
    component_label,
    cumulative,
    factorial_effects,
    fractional,
    grid,
    leave_one_out,
    per_task,
    plan_configurations,
)

PAPER_ORDER = ["QR", "LT", "HCT", "SIT", "DG", "ICL", "CoT"]


def labels(configurations):
    return [c.label for c in configurations]


def defining_words(coded):
    """Independent check: subsets of columns whose product is constant over the runs."""
    k = coded.shape[1]
    words = []
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            product = np.prod(coded[:, subset], axis=1)
            if np.all(product == product[0]):
                words.append(subset)
    return words


# ---------------------------------------------------------------------------------- grid


def test_grid_sizes_unique_and_baseline_first():
    for k in range(0, 5):
        configurations = grid(PAPER_ORDER[:k])
        assert len(configurations) == 2**k
        assert len({c.components for c in configurations}) == 2**k
        assert configurations[0].label == "baseline"
        assert configurations[0].components == frozenset()
        assert [c.row for c in configurations] == list(range(2**k))


def test_grid_yates_order_and_coded_levels():
    configurations = grid(["LT", "HCT"])
    assert labels(configurations) == ["baseline", "LT", "HCT", "LT+HCT"]
    assert [c.coded for c in configurations] == [(-1, -1), (1, -1), (-1, 1), (1, 1)]


def test_grid_always_on_and_pipeline_order_labels():
    configurations = grid(["HCT", "LT"], always_on=["QR"])
    assert labels(configurations) == ["QR", "QR+HCT", "QR+LT", "QR+LT+HCT"]
    assert all("QR" in c.components for c in configurations)


def test_invalid_switches_raise():
    with pytest.raises(ValueError, match="unknown component 'XX'"):
        grid(["LT", "XX"])
    with pytest.raises(ValueError, match="listed twice: LT"):
        grid(["LT", "LT"])
    with pytest.raises(ValueError, match="LT is both switched and always on"):
        grid(["LT"], always_on=["LT"])


def test_effective_reduces_to_applicable_components():
    config = Configuration(frozenset({"QR", "HCT", "SIT", "DG"}), "QR+HCT+SIT+DG", 0)
    assert config.effective("QC") == {"QR", "HCT"}
    assert config.effective("QI") == {"QR", "SIT", "DG"}
    with pytest.raises(ValueError, match="unknown task"):
        config.effective("QX")


def test_component_label():
    assert component_label([]) == "baseline"
    assert component_label({"CoT", "QR", "HCT"}) == "QR+HCT+CoT"


# ---------------------------------------------------------------------------- cumulative


def test_cumulative_is_table_4_for_both_tasks():
    configurations = cumulative(PAPER_ORDER)
    assert labels(configurations) == [
        "baseline", "QR", "QR+LT", "QR+LT+HCT", "QR+LT+HCT+SIT", "QR+LT+HCT+SIT+DG",
        "QR+LT+HCT+SIT+DG+ICL", "QR+LT+HCT+SIT+DG+ICL+CoT"]
    tasks = per_task(configurations, ["QC", "QI"])
    assert labels(tasks["QC"]) == [
        "baseline", "QR", "QR+LT", "QR+LT+HCT", "QR+LT+HCT+ICL", "QR+LT+HCT+ICL+CoT"]
    assert labels(tasks["QI"]) == [
        "baseline", "QR", "QR+LT", "QR+LT+SIT", "QR+LT+SIT+DG", "QR+LT+SIT+DG+ICL",
        "QR+LT+SIT+DG+ICL+CoT"]
    # Rows point back at the design: QI skips the HCT row (3).
    assert [c.row for c in tasks["QI"]] == [0, 1, 2, 4, 5, 6, 7]
    assert all(c.coded is None for c in configurations)


def test_cumulative_with_always_on():
    assert labels(cumulative(["HCT", "LT"], always_on=["QR"])) == ["QR", "QR+HCT", "QR+LT+HCT"]


# ------------------------------------------------------------------------- leave-one-out


def test_leave_one_out():
    configurations = leave_one_out(["LT", "HCT", "SIT"], always_on=["QR"])
    assert labels(configurations) == ["all", "all - LT", "all - HCT", "all - SIT"]
    assert configurations[0].components == {"QR", "LT", "HCT", "SIT"}
    assert configurations[2].components == {"QR", "LT", "SIT"}
    tasks = per_task(configurations, ["QC", "QI"])
    # Turning off a component that does not act on the task gives the same trial as "all".
    assert labels(tasks["QC"]) == ["all", "all - LT", "all - HCT"]
    assert labels(tasks["QI"]) == ["all", "all - LT", "all - SIT"]
    assert tasks["QI"][0].components == {"QR", "LT", "SIT"}


# ---------------------------------------------------------------------------- fractional


@pytest.mark.parametrize(("k", "runs"), [(4, 8), (5, 16), (6, 16), (7, 16)])
def test_fractional_resolution_iv(k, runs):
    design = fractional(PAPER_ORDER[:k], resolution=4)
    coded = design.coded
    assert coded.shape == (runs, k)
    assert design.runs == runs
    words = defining_words(coded)
    assert min(len(w) for w in words) >= 4
    assert design.resolution == min(len(w) for w in words)
    assert len(design.defining_relation) == len(words) == 2**k // runs - 1
    assert sorted(len(w) for w in design.defining_relation) == sorted(len(w) for w in words)
    # Balanced columns, orthogonal main effects, distinct runs.
    assert np.all(coded.sum(axis=0) == 0)
    assert np.array_equal(coded.T @ coded, runs * np.eye(k))
    assert len({c.components for c in design.configurations}) == runs


def test_fractional_run_counts_for_other_resolutions():
    res3 = fractional(PAPER_ORDER, resolution=3)
    assert res3.runs == 8 and res3.resolution == 3
    assert min(len(w) for w in defining_words(res3.coded)) == 3
    res5 = fractional(PAPER_ORDER[:5], resolution=5)
    assert res5.runs == 16 and res5.resolution == 5
    assert res5.generators == ["E=ABCD"] and res5.defining_relation == ["ABCDE"]
    assert min(len(w) for w in defining_words(res5.coded)) == 5


def test_fractional_falls_back_to_full_factorial():
    design = fractional(["LT", "HCT"], resolution=3)
    assert design.resolution is None and design.generators == [] and design.runs == 4
    assert labels(design.configurations) == labels(grid(["LT", "HCT"]))
    assert design.aliases["LT:HCT"] == []
    assert "Full factorial 2^2 = 4 runs" in design.describe()
    small = fractional(["LT", "HCT", "ICL"], resolution=3)
    assert small.runs == 4 and small.generators == ["C=AB"]


def test_fractional_minimum_aberration_generators():
    design = fractional(PAPER_ORDER, resolution=4)
    # The 2^(7-3) resolution IV design: seven words, all of length 4.
    assert len(design.generators) == 3
    assert [len(w) for w in design.defining_relation] == [4] * 7
    six = fractional(PAPER_ORDER[:6], resolution=4)
    assert [len(w) for w in six.defining_relation] == [4, 4, 4]


def test_fractional_aliases_resolution_iii():
    design = fractional(PAPER_ORDER[:5], resolution=3)
    assert design.resolution == 3
    main_with_2fi = [m for m in PAPER_ORDER[:5]
                     if any(a.count(":") == 1 for a in design.aliases[m])]
    assert main_with_2fi
    # D=AB: SIT is aliased with QR:LT, and back.
    assert design.generators[0] == "D=AB"
    assert "QR:LT" in design.aliases["SIT"]
    assert "SIT" in design.aliases["QR:LT"]
    text = design.describe()
    assert "Resolution III: main effects are aliased with two-factor interactions" in text
    assert "SIT = QR:LT" in text
    assert "(SIT = QR*LT)" in text


def test_fractional_aliases_resolution_iv():
    design = fractional(PAPER_ORDER, resolution=4)
    for main in PAPER_ORDER:
        assert all(a.count(":") == 2 for a in design.aliases[main])
    # Each 2FI is aliased with exactly two other 2FIs in the 2^(7-3) design.
    for effect, aliased in design.aliases.items():
        if effect.count(":") == 1:
            assert sum(a.count(":") == 1 for a in aliased) == 2
    # E=ABC: DG = QR*LT*HCT, so LT:HCT = QR:DG.
    assert design.generators[0] == "E=ABC"
    assert "QR:DG" in design.aliases["LT:HCT"]
    text = design.describe()
    assert "Resolution IV: main effects are clear of two-factor interactions" in text
    assert "QR:DG = LT:HCT" in text
    assert "Defining relation: I = ABCE" in text


def test_fractional_rejects_bad_resolution():
    with pytest.raises(ValueError, match="resolution must be 3, 4 or 5"):
        fractional(PAPER_ORDER, resolution=2)


# ------------------------------------------------------------------------------ effects


def synthetic(coded):
    a, b = coded[:, 0], coded[:, 1]
    return 3 + 2 * a - 1 * b + 0.5 * a * b


def test_factorial_effects_full_factorial_exact():
    coded = np.array([c.coded for c in grid(["LT", "HCT", "ICL"])])
    effects = factorial_effects(coded, synthetic(coded), names=["LT", "HCT", "ICL"])
    assert set(effects) == {"LT", "HCT", "ICL", "LT:HCT", "LT:ICL", "HCT:ICL"}
    assert effects["LT"] == pytest.approx(4.0)
    assert effects["HCT"] == pytest.approx(-2.0)
    assert effects["LT:HCT"] == pytest.approx(1.0)
    for name in ("ICL", "LT:ICL", "HCT:ICL"):
        assert effects[name] == pytest.approx(0.0, abs=1e-12)


def test_factorial_effects_resolution_iv_fraction():
    design = fractional(PAPER_ORDER, resolution=4)
    effects = factorial_effects(design.coded, synthetic(design.coded), names=PAPER_ORDER)
    assert effects["QR"] == pytest.approx(4.0)
    assert effects["LT"] == pytest.approx(-2.0)
    for name in PAPER_ORDER[2:]:
        assert effects[name] == pytest.approx(0.0, abs=1e-12)
    # The interaction's contrast is shared by its aliases.
    for alias in design.aliases["QR:LT"]:
        if alias.count(":") == 1:
            assert effects[alias] == pytest.approx(1.0)


def test_factorial_effects_default_names_constant_columns_and_errors():
    coded = np.array([[-1, 1], [1, 1]])
    assert factorial_effects(coded, np.array([1.0, 3.0])) == {"A": 2.0}
    with pytest.raises(ValueError, match="-1/\\+1"):
        factorial_effects(np.array([[0, 1], [1, 1]]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        factorial_effects(coded, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="1 names for 2 columns"):
        factorial_effects(coded, np.array([1.0, 2.0]), names=["LT"])
    with pytest.raises(ValueError, match="missing"):
        factorial_effects(coded, np.array([1.0, np.nan]))


# ------------------------------------------------------------------------------ planning


def test_plan_configurations_dispatch():
    assert len(plan_configurations(DesignConfig(kind="grid", switches=["LT", "HCT"]))) == 4
    assert labels(plan_configurations(DesignConfig(kind="cumulative", switches=["QR", "LT"]))) == [
        "baseline", "QR", "QR+LT"]
    assert labels(plan_configurations(DesignConfig(kind="leave-one-out", switches=["LT", "HCT"]))) == [
        "all", "all - LT", "all - HCT"]
    assert len(plan_configurations(DesignConfig(kind="fractional", switches=PAPER_ORDER))) == 16
    optuna = plan_configurations(DesignConfig(kind="optuna", switches=["LT"], always_on=["QR"]))
    assert [(c.label, c.components) for c in optuna] == [("QR+LT", {"QR", "LT"})]


def test_per_task_deduplicates_grid_for_qi():
    tasks = per_task(grid(["LT", "HCT"]), ["QC", "QI"])
    assert labels(tasks["QC"]) == ["baseline", "LT", "HCT", "LT+HCT"]
    assert labels(tasks["QI"]) == ["baseline", "LT"]
    assert [c.row for c in tasks["QI"]] == [0, 1]
    assert tasks["QI"][1].coded == (1, -1)
    # The inapplicable switch is constant in QI's runs, so only LT's effect is estimated.
    coded = np.array([c.coded for c in tasks["QI"]])
    assert factorial_effects(coded, np.array([0.5, 0.75]), names=["LT", "HCT"]) == {"LT": 0.25}


def test_per_task_fraction_keeps_distinct_runs():
    design = fractional(PAPER_ORDER, resolution=4)
    tasks = per_task(design.configurations, ["QC", "QI"])
    # Dropping the inapplicable columns of a 16-run resolution IV design leaves 16 distinct runs.
    assert len(tasks["QC"]) == len(tasks["QI"]) == 16
    assert all("HCT" not in c.components for c in tasks["QI"])
    assert all(not {"SIT", "DG"} & c.components for c in tasks["QC"])
