"""The Airflow plugin: registered by the package's ``airflow.plugins`` entry point.

Airflow's API server mounts :func:`~stateful.plugin._app.create_app` at ``/stateful``, and its UI
shows the page in the navigation ("Browse" > "Watermarks") as an external view, in the UI's frame
(Airflow >= 3.1: external views, and the session cookie the page's requests carry).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from stateful.plugin._app import create_app

__all__ = ["URL_PREFIX", "StatefulPlugin"]

#: Where the API server mounts the plugin's application.
URL_PREFIX = "/stateful"


class StatefulPlugin(AirflowPlugin):
    """The "Watermarks" page and its API in Airflow's UI."""

    name = "stateful"
    fastapi_apps: list[Any] = [  # noqa: RUF012 (AirflowPlugin's own attribute)
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "airflow-stateful watermarks"}
    ]
    external_views: list[Any] = [  # noqa: RUF012
        {
            "name": "Watermarks",
            "href": f"{URL_PREFIX}/",
            "url_route": "watermarks",
            "destination": "nav",
            "category": "browse",
        }
    ]
