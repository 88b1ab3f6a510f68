"""app.routing: GET routes answer HEAD, through everything the GET goes through."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from app.routing import GetAnswersHead


def app_with(checked: list[str]) -> FastAPI:
    def guard(x_key: str = Header("")) -> None:
        checked.append(x_key)
        if x_key != "ok":
            raise HTTPException(403)

    router = APIRouter(prefix="/inner", route_class=GetAnswersHead)

    @router.get("/thing")
    def thing() -> dict[str, str]:
        return {"thing": "here"}

    @router.post("/made")
    def made() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router, dependencies=[Depends(guard)])  # as the include adds them, too
    return app


def test_head_runs_the_dependencies_the_router_is_included_with_as_get_does() -> None:
    checked: list[str] = []
    client = TestClient(app_with(checked))
    got = client.get("/inner/thing", headers={"X-Key": "ok"})
    head = client.head("/inner/thing", headers={"X-Key": "ok"})
    assert head.status_code == got.status_code == 200
    assert head.headers["content-length"] == got.headers["content-length"]
    assert client.head("/inner/thing", headers={"X-Key": "no"}).status_code == 403
    assert checked == ["ok", "ok", "no"]  # the inclusion's guard ran for each HEAD too


def test_head_is_not_added_where_there_is_no_get_nor_to_the_schema() -> None:
    client = TestClient(app_with([]))
    r = client.head("/inner/made")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = client.put("/inner/thing")  # the route's own 405 (no mount in front): HEAD is allowed too
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert [sorted(item) for item in client.get("/openapi.json").json()["paths"].values()] == [
        ["get"],
        ["post"],
    ]
