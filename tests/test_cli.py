"""The command line as a user meets it: one-line errors with exit status 2, stage commands."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.cli import main
from harness.components.tagging import hierarchical_category_tag, language_tag
from harness.data.loader import read_split
from harness.data.synth import generate

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate(out, seed=0, scale="tiny")
    return out


def test_bad_config_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("design:\n  switches: [LT, XX]\n")
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "design.switches: unknown component 'XX'" in err


def test_malformed_data_is_one_line_exit_2(tmp_path):
    (tmp_path / "train_QC.txt").write_text('{"id": 1, "task": "QC", "language": "en", '
                                           '"origin_query": "a", "category_path": "b", "label": "1"}\n'
                                           '{"id": 2, "task": "QC", oops}\n')
    result = run_cli("data", "check", str(tmp_path), "--tasks", "QC")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train_QC.txt" in result.stderr and "line 2" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_sweep_validates_data_before_any_trial(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_QC.txt").write_text('{"id": 1, "task": "QC", "language": "en", '
                                       '"origin_query": "a", "category_path": "b", "label": "2"}\n')
    config = tmp_path / "s.yaml"
    config.write_text(f"tasks: [QC]\ncache_dir: {tmp_path / 'c'}\n"
                      f"tracking: {{uri: 'sqlite:///{tmp_path / 'm.db'}'}}\n")
    result = run_cli("sweep", str(config), "--data", str(data), cwd=tmp_path)
    assert result.returncode == 2 and "label" in result.stderr and "line 1" in result.stderr
    assert not (tmp_path / "reports").exists()


def copy_with_labels(synth_dir: Path, out: Path, name: str, label: str | None) -> int:
    """Copy a file of the built-in benchmark, every row's label set to `label` (None: the file as
    it is); returns the number of rows."""
    lines = (synth_dir / name).read_text(encoding="utf-8").splitlines()
    rows = [{**json.loads(line), "label": label} if label is not None else json.loads(line)
            for line in lines]
    (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                            encoding="utf-8")
    return len(rows)


def test_data_check_refuses_a_one_class_train_file(synth_dir, tmp_path):
    rows = copy_with_labels(synth_dir, tmp_path, "train_QC.txt", "1")
    copy_with_labels(synth_dir, tmp_path, "dev_QC.txt", None)
    result = run_cli("data", "check", str(tmp_path))
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: {tmp_path / 'train_QC.txt'}: every labelled row has "
                                     f"label 1 ({rows} rows): a classifier cannot be trained on one class")


def test_data_check_refuses_dev_and_test_without_train(synth_dir, tmp_path, capsys):
    for name in ("train_QC.txt", "dev_QI.txt", "test_QI.txt"):
        copy_with_labels(synth_dir, tmp_path, name, None)
    assert main(["data", "check", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        f"error: {tmp_path}: QI: dev_QI.txt/test_QI.txt present but train_QI.txt is missing\n")
    assert main(["data", "check", str(tmp_path), "--tasks", "QC"]) == 0  # QC alone is fine


@pytest.mark.parametrize(("tasks", "files", "message"), [
    ("[QC]", {"train_QC.txt": "0", "dev_QC.txt": None},
     "train_QC.txt: every labelled row has label 0 ({rows} rows): a classifier cannot be trained "
     "on one class"),
    ("[QC, QI]", {"train_QC.txt": None, "dev_QI.txt": None, "test_QI.txt": None},
     "QI: dev_QI.txt/test_QI.txt present but train_QI.txt is missing"),
    ("[QC, QI]", {"train_QC.txt": None}, "no train_QI.txt"),
], ids=["one-class-train", "dev-test-without-train", "no-train"])
def test_sweep_refuses_untrainable_data_before_any_trial(synth_dir, tmp_path, tasks, files, message):
    data = tmp_path / "data"
    data.mkdir()
    rows = {name: copy_with_labels(synth_dir, data, name, label) for name, label in files.items()}
    config = tmp_path / "s.yaml"
    config.write_text(f"tasks: {tasks}\ncache_dir: {tmp_path / 'c'}\n"
                      f"tracking: {{uri: 'sqlite:///{tmp_path / 'm.db'}'}}\n")
    result = run_cli("sweep", str(config), "--data", str(data), "--no-progress", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert message.format(rows=rows.get("train_QC.txt")) in result.stderr
    # nothing ran: no study, no MLflow store, no report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "s.yaml"]


def test_data_check_summarises(synth_dir, capsys):
    assert main(["data", "check", str(synth_dir)]) == 0
    out = capsys.readouterr().out
    assert "QC" in out and "QI" in out and "unseen" in out and "OK" in out


def test_tag_reference_strings_byte_for_byte(synth_dir, tmp_path):
    out = tmp_path / "tagged.txt"
    assert main(["tag", "--task", "QC", "--lt", "--hct", "--set", "components.HCT.split=reference",
                 "--input", str(synth_dir / "train_QC.txt"), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    source = [json.loads(line) for line in (synth_dir / "train_QC.txt").read_text().splitlines()]
    assert len(rows) == len(source)
    for row, original in zip(rows, source, strict=True):
        assert {k: row[k] for k in original} == original  # original fields kept
        assert row["tagged_query"] == "[LANG=" + original["language"] + "] " + original["origin_query"]
        parts = [p.strip() for p in original["category_path"].split(",")]
        assert row["tagged_category_path"] == " ".join(
            f"[D{i}] {p} [/D{i}]" for i, p in enumerate(parts, 1))


def test_tag_rejects_components_that_do_not_apply(synth_dir, tmp_path, capsys):
    code = main(["tag", "--task", "QI", "--hct", "--input", str(synth_dir / "train_QI.txt"),
                 "--output", str(tmp_path / "o.txt")])
    assert code == 2 and "--hct applies to QC only" in capsys.readouterr().err
    assert not (tmp_path / "o.txt").exists()


def test_tag_sit_dg_on_qi(synth_dir, tmp_path):
    out = tmp_path / "qi.txt"
    assert main(["tag", "--task", "QI", "--sit", "--dg", "--input", str(synth_dir / "train_QI.txt"),
                 "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum("[ATTR]" in r["tagged_item_title"] for r in rows) > len(rows) / 2
    assert all("[GEN_TAGS]" in r["tagged_item_title"] for r in rows)


def test_qr_command_reference_mode_with_predictions(synth_dir, tmp_path):
    train = read_split(synth_dir / "train_QC.txt", task="QC", split="train").frame
    preds = tmp_path / "pred.txt"
    preds.write_text("".join(json.dumps({"id": int(i), "p_yes": 0.95 if n % 7 == 0 else 0.5}) + "\n"
                             for n, i in enumerate(train["id"])))
    out, audit = tmp_path / "kept.txt", tmp_path / "audit.csv"
    assert main(["qr", "--task", "QC", "--input", str(synth_dir / "train_QC.txt"), "--output", str(out),
                 "--pred", str(preds), "--mode", "reference", "--audit", str(audit)]) == 0
    kept = read_split(out, task="QC", split="train").frame
    import pandas as pd
    table = pd.read_csv(audit, dtype={"id": str})
    assert len(kept) == (~table["flagged"]).sum() and len(table) == len(train)
    flagged_zeros = table[(table["label"] == 0) & (table["p_yes"] >= 0.9)]
    assert flagged_zeros["flagged"].all()  # p(yes) >= 0.9 on a label-0 row is always suspect


@pytest.mark.parametrize(("content", "message"), [
    ("", "no rows"),
    ('{"id": 1, "task": "QI", "language": "en", "origin_query": "a", "item_title": "b", "label": "1"}\n', "QI"),
    ('{"id": 1, "task": "QC", "language": "en", "category_path": "b", "label": "1"}\n', "origin_query"),
])
def test_stage_commands_bad_input(tmp_path, capsys, content, message):
    source = tmp_path / "in.txt"
    source.write_text(content)
    for command in (["qr"], ["tag", "--lt"]):
        code = main([*command, "--task", "QC", "--input", str(source), "--output", str(tmp_path / "o.txt")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.strip().count("\n") == 0


def test_helpers_agree_with_reference_semantics():
    import pandas as pd
    assert language_tag(pd.Series(["red shoes"]), pd.Series(["en"]))[0] == "[LANG=en] red shoes"
    assert hierarchical_category_tag(pd.Series(["a,b, c"]), mode="reference")[0] == \
        "[D1] a [/D1] [D2] b [/D2] [D3] c [/D3]"
    assert hierarchical_category_tag(pd.Series(["a,b, c"]), mode="smart")[0] == \
        "[D1] a [/D1] [D2] b, c [/D2]"


def test_dry_run_prints_plan_without_running(tmp_path):
    result = run_cli("sweep", str(ROOT / "experiments" / "paper_qwen2.5_14b.yaml"), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Qwen/Qwen2.5-14B-Instruct" in result.stdout and "trials" in result.stdout
    assert not (tmp_path / ".harness" / "cache" / "data").exists()  # nothing generated or downloaded


def test_dry_run_of_a_fractional_design_shows_aliases(tmp_path):
    config = tmp_path / "frac.yaml"
    config.write_text("design:\n  kind: fractional\n  switches: [QR, LT, HCT, SIT, DG, ICL, CoT]\n"
                      "  resolution: 4\n")
    result = run_cli("sweep", str(config), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "16 configurations" in result.stdout and "Resolution IV" in result.stdout
    # a dry run writes nothing: no MLflow store, no study, no cache, no data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frac.yaml"]


def test_data_check_only_checks_the_tasks_present(synth_dir, tmp_path, capsys):
    for name in ("train_QC.txt", "dev_QC.txt"):
        (tmp_path / name).write_bytes((synth_dir / name).read_bytes())
    assert main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "QC" in out and "train_QI" not in out
    assert main(["data", "check", str(tmp_path / "nothing")]) == 2


TINY_SWEEP = """
name: cli-e2e
data: {{source: synth, synth: {{scale: tiny, seed: 0}}}}
tasks: [QC]
model: {{name: tiny, tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1,
        intermediate_size: 64, vocab_size: 600}}}}
training: {{epochs: 1, learning_rate: 3.0e-3, batch_size: 16, max_length: 256}}
design: {{kind: grid, switches: [LT]}}
tracking: {{uri: "sqlite:///{root}/mlflow.db"}}
study: {{storage: "sqlite:///{root}/study.db"}}
cache_dir: {root}/cache
reports_dir: {root}/reports
"""


def test_a_bad_storage_url_is_one_line_and_leaves_nothing_running(tmp_path, capsys):
    config = tmp_path / "s.yaml"
    config.write_text(TINY_SWEEP.format(root=tmp_path), encoding="utf-8")
    assert main(["sweep", str(config), "--storage", "notaurl", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notaurl" in err
    if (tmp_path / "mlflow.db").exists():
        import mlflow
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
        runs = mlflow.search_runs(search_all_experiments=True)
        assert runs.empty or not (runs["status"] == "RUNNING").any()


def test_report_from_mlflow_alone_rebuilds_the_sweeps_files_and_submissions(synth_dir, tmp_path,
                                                                             capsys):
    config = tmp_path / "s.yaml"
    config.write_text(TINY_SWEEP.format(root=tmp_path), encoding="utf-8")
    data = tmp_path / "competition"
    data.mkdir()
    for name in ("train_QC.txt", "test_QC.txt"):
        (data / name).write_bytes((synth_dir / name).read_bytes())
    dev = [json.loads(line) for line in (synth_dir / "dev_QC.txt").read_text().splitlines()]
    (data / "dev_QC.txt").write_text("".join(  # dev unlabelled, as in the competition
        json.dumps({k: v for k, v in row.items() if k != "label"}) + "\n" for row in dev))
    assert main(["sweep", str(config), "--data", str(data), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| configuration | QC | Δ QC vs baseline | seconds per trial |" in out  # the main table, in the terminal
    folder = tmp_path / "reports" / "cli-e2e"
    swept = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert {"ablation.md", "ablation.csv", "plots/QC-languages.png", "plots/loss.png",
            "dev/submit_QC.txt", "submit_dev.zip"} <= {str(p) for p in swept}
    assert all(oct((folder / p).stat().st_mode & 0o777) == "0o644" for p in swept)

    submitted = [json.loads(line) for line in (folder / "dev" / "submit_QC.txt").read_text().splitlines()]
    assert [r["id"] for r in submitted] == [r["id"] for r in dev]  # every id once, input order
    assert all(set(r) == {"id", "prediction"} and r["prediction"] in (0, 1) for r in submitted)
    with zipfile.ZipFile(folder / "submit_dev.zip") as bundle:
        assert bundle.namelist() == ["submit_QC.txt"]
        assert bundle.read("submit_QC.txt") == (folder / "dev" / "submit_QC.txt").read_bytes()

    for path in swept:
        (folder / path).unlink()
    # without --data the YAML's own data is another plan: an error that says what to pass
    assert main(["report", str(config)]) == 2
    assert f"--data {data}" in capsys.readouterr().err
    assert main(["report", str(config), "--data", str(data)]) == 0
    rebuilt = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    def body(text: bytes) -> bytes:
        return text.rsplit(b"generated", 1)[0]  # the footer's time stamp differs

    assert rebuilt.keys() == swept.keys()
    for path, content in swept.items():
        if path.suffix == ".zip":  # zip entries carry file times: compare what they hold
            continue
        same = body(rebuilt[path]) == body(content) if path.suffix == ".md" else rebuilt[path] == content
        assert same, f"{path} differs when rebuilt from MLflow"
    text = swept[Path("ablation.md")].decode()
    assert "| LT " in text and "–" not in body(text.encode()).decode()
    assert "![QC F1 per language](plots/QC-languages.png)" in text

    capsys.readouterr()
    assert main(["report", str(config), "--data", str(data), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("model,configuration,QC,QC_low,QC_high")
    assert main(["report", str(config), "--data", str(data), "--submit", "nosuchkey"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--submit nosuchkey" in err


def test_compare_pairs_sweeps_on_the_same_rows_and_says_when_rows_differ(synth_dir, tmp_path,
                                                                         capsys):
    sweeps = {}
    for name, changes in (("a", ""), ("b", "scoring: {threshold: 0.6}\n"),
                          ("c", "")):
        root = tmp_path / name
        root.mkdir()
        text = TINY_SWEEP.format(root=root).replace("name: cli-e2e", f"name: cmp-{name}") + changes
        if name == "c":  # another benchmark seed: other evaluation rows
            text = text.replace("seed: 0}}", "seed: 1}}")
        (root / "s.yaml").write_text(text, encoding="utf-8")
        assert main(["sweep", str(root / "s.yaml"), "--no-progress"]) == 0
        sweeps[name] = root / "s.yaml"
    capsys.readouterr()
    assert main(["compare", str(sweeps["a"]), str(sweeps["b"])]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("| tiny | QC | baseline |"))
    assert "[" in line.split("|")[7] and "1 seed: rows-only" in line  # paired: an interval
    assert main(["compare", str(sweeps["a"]), str(sweeps["c"])]) == 0
    out = capsys.readouterr().out
    assert "evaluation rows differ (" in out and "unpaired, no interval" in out


def test_a_sweep_that_cannot_submit_still_reports_and_says_why(synth_dir, tmp_path, capsys):
    config = tmp_path / "s.yaml"
    config.write_text(TINY_SWEEP.format(root=tmp_path).replace("design: {kind: grid, switches: [LT]}",
                                                               "design: {kind: grid, switches: []}")
                      + "scoring: {predict_unlabelled: false}\n", encoding="utf-8")
    data = tmp_path / "competition"
    data.mkdir()
    for name in ("train_QC.txt", "test_QC.txt"):
        (data / name).write_bytes((synth_dir / name).read_bytes())
    rows = [json.loads(line) for line in (synth_dir / "dev_QC.txt").read_text().splitlines()]
    (data / "dev_QC.txt").write_text("".join(
        json.dumps({k: v for k, v in row.items() if k != "label"}) + "\n" for row in rows))
    assert main(["sweep", str(config), "--data", str(data), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: no submission files: trial QC baseline seed0 has no predictions for dev_QC.txt" in out
    assert (tmp_path / "reports" / "cli-e2e" / "ablation.md").exists()
    assert main(["report", str(config), "--data", str(data)]) == 2  # asked for: an error
    assert "no predictions for dev_QC.txt" in capsys.readouterr().err
