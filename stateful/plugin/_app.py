"""The plugin's web application: the page and its JSON API, mounted by Airflow at ``/stateful``.

Every ``/api`` endpoint authenticates the caller as Airflow's own API does (the ``Authorization:
Bearer`` token, else the ``_token`` cookie the Airflow UI's login sets, which a same-origin
``fetch`` sends) and asks Airflow's auth manager: reading needs permission to read assets
(``GET``), changing a watermark needs permission to edit them (``PUT``); on the native store, for
that asset. The endpoints are synchronous: FastAPI runs them in its thread pool, so the stores'
blocking I/O never holds the API server's event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from stateful._address import shown_address
from stateful.errors import StateConflictError, StatefulError
from stateful.plugin._edit import RewindBody, SetBody, rewind, set_fields
from stateful.plugin._listing import DEFAULT_LIMIT, MAX_LIMIT, Order, SortKey, list_watermarks
from stateful.plugin._rows import Located, decode_id, detail, locate

__all__ = ["STATIC", "create_app"]

#: The page's files (index.html, app.js, app.css), shipped in the wheel.
STATIC = Path(__file__).parent / "static"


#: The Airflow user making the request, as Airflow's own API finds it (401 when there is none).
User = Annotated[Any, Depends(get_user)]
#: What the auth manager is asked: read (GET) or edit (PUT).
Method = Literal["GET", "PUT"]


def allowed(user: Any, method: Method, asset_id: int | None = None) -> bool:
    """Whether Airflow's auth manager lets ``user`` read (``GET``) or edit (``PUT``) assets (this one)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AssetDetails

    details = None if asset_id is None else AssetDetails(id=str(asset_id))
    return bool(get_auth_manager().is_authorized_asset(method=method, details=details, user=user))


def _require(user: Any, method: Method, asset_id: int | None = None) -> None:
    if not allowed(user, method, asset_id):
        what = "read" if method == "GET" else "edit"
        where = "assets" if asset_id is None else f"the asset with id {asset_id}"
        raise HTTPException(
            403,
            f"Forbidden: user {_name(user)!r} may not {what} {where}, which the watermarks belong to. "
            f"Ask an Airflow admin for the permission to {what} assets.",
        )


def _name(user: Any) -> str:
    return str(user.get_name())


def me(user: User) -> dict[str, Any]:
    """Who is signed in, and whether they may change watermarks."""
    _require(user, "GET")
    return {"username": _name(user), "can_edit": allowed(user, "PUT")}


def watermarks(
    user: User,
    q: Annotated[str | None, Query(description="Keep the rows that contain this text.")] = None,
    sort: Annotated[SortKey, Query(description="The column to sort by.")] = "namespace",
    order: Annotated[Order, Query(description="asc or desc; missing values stay last.")] = "asc",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="The most rows to return.")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, description="Rows to skip (of those q keeps, sorted).")] = 0,
) -> dict[str, Any]:
    """Every watermark (each partition of a keyed one) of the configured SQL store and of the native
    store of every readable asset: one page of them, with how many are stored and match ``q``."""
    _require(user, "GET")
    return list_watermarks(
        lambda asset_id: allowed(user, "GET", asset_id), q, sort=sort, order=order, limit=limit, offset=offset
    )


def _found(user: User, watermark_id: str, method: Method) -> tuple[Located, Any]:
    """The store and the record of ``watermark_id``; 403 or 404 as it applies."""
    where = decode_id(watermark_id)
    if where is None:
        raise HTTPException(
            404, f"no watermark with id {watermark_id!r}: not an id this API gives. Reload the list."
        )
    _require(user, method, where.asset_id)
    try:
        located = locate(where)
        record = located.store.read(where.namespace, where.name, where.key)
    except StatefulError as exc:
        raise HTTPException(404, f"no watermark with id {watermark_id!r}: {exc}") from None
    if record is None:
        raise HTTPException(
            404,
            f"no watermark {shown_address(where.namespace, where.name, where.key)} in {located.label}: it "
            f"was deleted, or never saved. Reload the list.",
        )
    return located, record


def watermark(user: User, watermark_id: str) -> dict[str, Any]:
    """One watermark: its whole document and its history, each version with what it changed."""
    located, record = _found(user, watermark_id, "GET")
    return detail(located, record)


def rewind_watermark(user: User, watermark_id: str, body: RewindBody) -> dict[str, Any]:
    """Restore version ``to_version`` (as a new version), if the watermark is still ``expected_version``."""
    located, record = _found(user, watermark_id, "PUT")
    return _edited(lambda: rewind(located, record, body, _name(user)))


def set_watermark(user: User, watermark_id: str, body: SetBody) -> dict[str, Any]:
    """Set fields of the watermark (timestamp, cursor, ...), if it is still ``expected_version``."""
    located, record = _found(user, watermark_id, "PUT")
    return _edited(lambda: set_fields(located, record, body, _name(user)))


def _edited(edit: Any) -> dict[str, Any]:
    """Run an edit; its refusals as HTTP errors: 409 for a conflict, 422 for the input."""
    from stateful._edits import EditInputError, VersionNotKeptError

    try:
        result: dict[str, Any] = edit()
    except StateConflictError as exc:
        found = "nothing stored" if exc.actual_version is None else f"version {exc.actual_version}"
        raise HTTPException(
            409,
            f"the watermark changed: you saw version {exc.expected_version}, it is {found} now (a trigger "
            f"or another operator saved it). Nothing was written. Reload it and decide again; stop or "
            f"pause the trigger first if it keeps advancing.",
            headers={"X-Current-Version": str(exc.actual_version)},
        ) from None
    except (EditInputError, VersionNotKeptError) as exc:
        raise HTTPException(422, f"{exc} Nothing was written.") from None
    return result


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable sentence (and FastAPI's list of errors under ``errors``)."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse(
        status_code=422,
        content={
            "detail": f"invalid request: {'; '.join(problems)}. See the API in the plugin's documentation.",
            "errors": [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()],
        },
    )


def index() -> FileResponse:
    """The page (no secret in it: it reads everything through the API)."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def create_app() -> FastAPI:
    """The plugin's application; Airflow's API server mounts it at ``/stateful``.

    Example:
        >>> app = create_app()
        >>> sorted(r.path for r in app.routes if r.path.startswith("/api/"))[:2]
        ['/api/me', '/api/watermarks']
    """
    app = FastAPI(
        title="airflow-stateful",
        description="Watermarks of airflow-stateful: list, inspect, set and rewind.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, _invalid)
    app.get("/", include_in_schema=False)(index)
    app.get("/api/me")(me)
    app.get("/api/watermarks")(watermarks)
    app.get("/api/watermarks/{watermark_id}")(watermark)
    app.post("/api/watermarks/{watermark_id}/rewind")(rewind_watermark)
    app.post("/api/watermarks/{watermark_id}/set")(set_watermark)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
