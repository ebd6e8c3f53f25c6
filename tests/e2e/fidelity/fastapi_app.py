"""A FastAPI app: served directly by the fidelity tests, and as a Lambda (fastapi_lambda.py)."""

import hashlib
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

# A PNG signature and bytes that are not UTF-8: the body must survive base64 both ways untouched.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

ITEMS: dict[str, dict[str, Any]] = {"1": {"id": "1", "name": "kettle", "price": 25.5}}

app = FastAPI()


class NewItem(BaseModel):
    name: str
    price: float
    tags: list[str] = Field(default_factory=list)


@app.get("/")
def root() -> dict[str, str]:
    return {"service": "fastapi"}


@app.get("/items")
def list_tags(response: Response, tag: Annotated[list[str] | None, Query()] = None) -> list[str]:
    """Echoes every ``tag`` query parameter, in order; a header counts them."""
    tags = tag or []
    response.headers["X-Tag-Count"] = str(len(tags))
    return tags


@app.post("/items", status_code=201)
def create_item(item: NewItem) -> dict[str, Any]:
    return {"created": item.model_dump(), "id": "2"}


@app.get("/items/{item_id}")
def get_item(item_id: str) -> dict[str, Any]:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail=f"item {item_id!r} not found")
    return ITEMS[item_id]


@app.get("/image")
def image() -> Response:
    return Response(content=PNG, media_type="image/png", headers={"Cache-Control": "max-age=60"})


@app.get("/cookies")
def cookies(request: Request, response: Response) -> dict[str, str]:
    """Echoes the request's cookies and sets two of its own."""
    response.set_cookie("session", "abc", httponly=True)
    response.set_cookie("theme", "dark")
    return dict(request.cookies)


@app.get("/headers")
def headers(request: Request) -> list[str]:
    """Every value of the X-Multi header, as the app receives them."""
    return request.headers.getlist("x-multi")


@app.post("/upload")
async def upload(request: Request) -> dict[str, Any]:
    body = await request.body()
    return {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
