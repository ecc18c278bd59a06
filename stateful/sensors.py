"""What sensor authors call: :func:`commit`, the save point of a ``@stateful`` sensor.

Airflow calls it once the task succeeded; call it yourself when you drive a sensor outside
Airflow's task runner (a unit test calling ``sensor.execute(context)``). How a sensor's watermark
is loaded, staged and saved: :mod:`stateful._sensor_driver` and https://airflow-stateful.github.io/airflow-stateful/sensors/.
"""

from stateful._sensor_driver import commit

__all__ = ["commit"]
