"""Run the sensor DAG of ``examples/dags/s3_sensor.py`` once with ``dag.test()``.

``python -m tests.examples.s3._run_sensor_dag DAG_FILE``, with a migrated metadata database in
``AIRFLOW_HOME``, the DAG file copied into ``AIRFLOW__CORE__DAGS_FOLDER`` (``dag.test()`` syncs
that folder's bundle) and the ``S3_WATCH_*`` variables set, prints one JSON object: the run's
state and each task's state and XCom value.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session


def main(dag_file: str) -> None:
    bag = DagBag(dag_folder=dag_file)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["s3_sensor_new_objects"]
    run = dag.test()
    tasks: dict[str, Any] = {}
    with create_session() as session:
        for ti in run.get_task_instances(session=session):
            rows = session.scalars(
                XComModel.get_many(
                    run_id=run.run_id, dag_ids=dag.dag_id, task_ids=ti.task_id, key="return_value"
                )
            ).all()
            value = XComModel.deserialize_value(rows[0]) if rows else None
            tasks[ti.task_id] = {"state": str(ti.state), "xcom": value}
    print(json.dumps({"state": str(run.state), "tasks": tasks}))


if __name__ == "__main__":
    main(sys.argv[1])
