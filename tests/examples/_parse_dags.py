"""Parse DAG folders the way Airflow's dag processor does; print what it found as JSON.

Run as ``python -m tests.examples._parse_dags BUNDLE_PATH DAG_FOLDER [DAG_FOLDER ...]`` in a fresh
``AIRFLOW_HOME``. For each folder: Airflow's ``BundleDagBag`` imports every file (with the
bundle on ``sys.path``, as the processor does), each DAG is serialized with
``DagSerialization.to_dict``, and every asset watcher's trigger makes the trip the triggerer
relies on: encoded like the processor does, stored in a ``Trigger`` row, read back, rebuilt
from its classpath, and serialized again.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def parse(bundle: Path, folder: Path) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.serialization.serialized_objects import DagSerialization, LazyDeserializedDAG

    bag = BundleDagBag(dag_folder=folder, bundle_path=bundle, bundle_name="examples", load_op_links=False)
    report: dict[str, Any] = {
        "import_errors": dict(bag.import_errors),
        "serialization_errors": {},
        "dags": {},
        "watchers": [],
    }
    for dag in bag.dags.values():
        report["dags"][dag.dag_id] = {
            "file": Path(dag.fileloc).name,
            "task_types": sorted(task.task_type for task in dag.tasks),
        }
        try:
            serialized = LazyDeserializedDAG(data=DagSerialization.to_dict(dag))
        except Exception:
            report["serialization_errors"][dag.dag_id] = traceback.format_exc()
            continue
        declared = dict(_declared_watchers(dag.timetable.asset_condition))
        for _, asset in serialized.timetable.asset_condition.iter_assets():
            for watcher in asset.watchers:
                report["watchers"].append(
                    {"dag_id": dag.dag_id, "watcher": watcher.name, **_round_trip(watcher.trigger, declared)}
                    if watcher.name in declared
                    else {"dag_id": dag.dag_id, "watcher": watcher.name, "round_trip": False}
                )
    return report


def _declared_watchers(condition: Any) -> Iterator[tuple[str, Any]]:
    """(name, trigger) of every watcher in a DAG's schedule, as its file declared them."""
    for watcher in getattr(condition, "watchers", ()):
        yield watcher.name, watcher.trigger
    for part in getattr(condition, "objects", ()):
        yield from _declared_watchers(part)


def _round_trip(stored: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    """Store a serialized watcher's trigger in a Trigger row, rebuild it as the triggerer does."""
    from airflow.models.trigger import Trigger
    from airflow.serialization.encoders import encode_trigger

    encoded = encode_trigger(stored)
    row = Trigger(classpath=encoded["classpath"], kwargs=encoded["kwargs"])
    module, _, name = row.classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**row.kwargs)
    original = next(t for t in declared.values() if t.serialize()[0] == row.classpath)
    return {"classpath": row.classpath, "round_trip": rebuilt.serialize() == original.serialize()}


if __name__ == "__main__":
    bundle = Path(sys.argv[1])
    print(json.dumps({folder: parse(bundle, Path(folder)) for folder in sys.argv[2:]}))
