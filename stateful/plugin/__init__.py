"""The Airflow plugin: a "Watermarks" page in Airflow's UI and its JSON API (https://airflow-stateful.github.io/airflow-stateful/ui/).

Airflow loads it through the package's ``airflow.plugins`` entry point; importing
``stateful`` does not import it (it needs FastAPI and Airflow's API server).
"""

from stateful.plugin._app import create_app
from stateful.plugin._plugin import URL_PREFIX, StatefulPlugin

__all__ = ["URL_PREFIX", "StatefulPlugin", "create_app"]
