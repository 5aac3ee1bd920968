"""The MLflow view a sweep opens on: its trial runs, best first, with the F1 columns showing.

MLflow 3's UI opens an experiment on its GenAI pages (traces) unless told otherwise: it picks the
page set from `workflowType` (kept in the browser, overridable in the URL) and, in other
versions and tools, from the experiment tag `mlflow.experimentKind`; both are set here. The runs
table's filter, order and visible columns come from a shared view: an experiment tag
`mlflow.sharedViewState.<key>` holding the view as JSON, which the link names with
`viewStateShareKey=<key>` (the same mechanism as the UI's own shared views).
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from urllib.parse import urlencode

from harness.secrets import mask

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
METRIC_COLUMNS = ("f1", "f1/seen", "f1/unseen", "precision", "recall", "roc_auc")
DEFAULT_UI = "http://127.0.0.1:5000"


def view_key(sweep: str) -> str:
    """The shared-view key of a sweep (letters, digits, `-`: safe in a tag name and a URL)."""
    safe = "".join(c if c.isalnum() else "-" for c in sweep)
    return f"harness-{safe}"


def runs_view(sweep: str, switches: Sequence[str]) -> dict:
    """The runs-table state: this sweep's trial runs (flat: a filter turns off nesting under
    the parent), best F1 first, the metrics and the component switches as columns."""
    columns = [f"metrics.`{m}`" for m in METRIC_COLUMNS]
    columns += [f"params.`{p}`" for p in ("task", "seed", *switches)]
    return {
        "searchFilter": f"tags.`harness.sweep` = '{sweep}' and tags.`harness.role` = 'trial'",
        "orderByKey": "metrics.`f1`",
        "orderByAsc": False,
        "selectedColumns": ["attributes.`Run Name`", *columns],
        "runListHidden": False,
        "viewMaximized": False,
    }


def experiment_tags(sweep: str, switches: Sequence[str]) -> dict[str, str]:
    """Tags that make the experiment open on its model-training runs with the sweep's view."""
    return {EXPERIMENT_KIND_TAG: "custom_model_development",
            SHARED_VIEW_PREFIX + view_key(sweep): json.dumps(runs_view(sweep, switches))}


def ui_base(tracking_uri: str) -> str:
    """Where the UI is: the tracking server itself, or a local `mlflow ui` on port 5000."""
    if tracking_uri.startswith(("http://", "https://")):
        return mask(tracking_uri).rstrip("/")
    return DEFAULT_UI


def runs_link(tracking_uri: str, experiment_id: str, sweep: str) -> str:
    """The direct link to the sweep's runs table."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": view_key(sweep)})
    return f"{ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs?{query}"


def dashboard_lines(tracking_uri: str, experiment_id: str, sweep: str) -> list[str]:
    """What the end of a sweep prints: the server command where one is needed, then the link."""
    link = runs_link(tracking_uri, experiment_id, sweep)
    if tracking_uri.startswith(("http://", "https://")):
        return [f"Dashboard: {link}"]
    python = shlex.quote(sys.executable)  # works without activating the virtual environment
    return [f"Dashboard: {python} -m mlflow ui --backend-store-uri {shlex.quote(mask(tracking_uri))} "
            "--host 127.0.0.1 --port 5000", f"  then open {link}"]
