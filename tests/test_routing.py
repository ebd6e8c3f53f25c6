"""The router: API Gateway's resource matching, segment by segment."""

from __future__ import annotations

import pytest

from portway.routing import BadPath, DuplicateRoute, Match, Router, decode_segment, split_path


def route(router: Router[str], method: str, path: str) -> tuple[str, str, dict[str, str]] | None:
    match = router.match(method, path)
    if match is None:
        return None
    return match.target, match.resource, match.path_parameters


@pytest.fixture
def router() -> Router[str]:
    return Router(
        [
            ("GET", "/", "root"),
            ("GET", "/items", "list"),
            ("POST", "/items", "create"),
            ("GET", "/items/special", "special"),
            ("GET", "/items/{id}", "get-item"),
            ("ANY", "/items/{id}", "any-item"),
            ("GET", "/items/{id}/parts/{part}", "part"),
            ("GET", "/items/special/parts/{part}", "special-part"),
            ("GET", "/items/{id}/deep", "deep"),
            ("ANY", "/files/{proxy+}", "files"),
            ("ANY", "/{proxy+}", "catch-all"),
        ]
    )


# --- split / decode --------------------------------------------------------------------------------


def test_split_path() -> None:
    assert split_path("") == []
    assert split_path("/") == []
    assert split_path("/a") == ["a"]
    assert split_path("/a/") == ["a"]
    assert split_path("/a/b%2Fc") == ["a", "b%2Fc"]
    assert split_path("/a//b") == ["a", "", "b"]


def test_decode_segment() -> None:
    assert decode_segment("plain") == "plain"
    assert decode_segment("a%20b") == "a b"
    assert decode_segment("caf%C3%A9") == "café"
    assert decode_segment("%2F") == "/"
    assert decode_segment("a+b") == "a+b"  # '+' is not a space in a path


@pytest.mark.parametrize("segment", ["%", "%2", "%zz", "a%2", "%%", "ok%2Gx", "%C3", "%FF", "%C3%28"])
def test_decode_segment_refuses_malformed_encoding(segment: str) -> None:
    with pytest.raises(BadPath):
        decode_segment(segment)


# --- priorities ------------------------------------------------------------------------------------


def test_doc_example() -> None:
    r = Router([("GET", "/items/{id}", "a"), ("ANY", "/{proxy+}", "b")])
    assert r.match("GET", "/items/42") == Match("a", "/items/{id}", {"id": "42"})


def test_static_beats_param_beats_greedy(router: Router[str]) -> None:
    assert route(router, "GET", "/items/special") == ("special", "/items/special", {})
    assert route(router, "GET", "/items/42") == ("get-item", "/items/{id}", {"id": "42"})
    assert route(router, "GET", "/other") == ("catch-all", "/{proxy+}", {"proxy": "other"})
    assert route(router, "GET", "/items/42/nothing/here") == (
        "catch-all",
        "/{proxy+}",
        {"proxy": "items/42/nothing/here"},
    )


def test_static_beats_param_whatever_the_order_of_definition() -> None:
    for routes in (
        [("GET", "/a/{x}", "param"), ("GET", "/a/b", "static"), ("GET", "/a/{p+}", "greedy")],
        [("GET", "/a/{p+}", "greedy"), ("GET", "/a/b", "static"), ("GET", "/a/{x}", "param")],
    ):
        r = Router(routes)
        assert route(r, "GET", "/a/b") == ("static", "/a/b", {})
        assert route(r, "GET", "/a/c") == ("param", "/a/{x}", {"x": "c"})
        assert route(r, "GET", "/a/b/c") == ("greedy", "/a/{p+}", {"p": "b/c"})


def test_backtracks_from_static_to_param(router: Router[str]) -> None:
    # /items/special has no /deep child: /items/{id}/deep matches with id=special
    assert route(router, "GET", "/items/special/deep") == ("deep", "/items/{id}/deep", {"id": "special"})
    assert route(router, "GET", "/items/special/parts/p1") == (
        "special-part",
        "/items/special/parts/{part}",
        {"part": "p1"},
    )
    assert route(router, "GET", "/items/7/parts/p1") == (
        "part",
        "/items/{id}/parts/{part}",
        {"id": "7", "part": "p1"},
    )


def test_backtracking_leaves_no_stale_parameters() -> None:
    r = Router([("GET", "/{a}/x", "ax"), ("GET", "/{b+}", "greedy")])
    # {a} is tried first for "q/y", fails at "y", then the greedy route takes all of it
    assert route(r, "GET", "/q/y") == ("greedy", "/{b+}", {"b": "q/y"})


def test_exact_method_beats_any(router: Router[str]) -> None:
    assert route(router, "GET", "/items/42") == ("get-item", "/items/{id}", {"id": "42"})
    assert route(router, "DELETE", "/items/42") == ("any-item", "/items/{id}", {"id": "42"})
    assert route(router, "PATCH", "/files/a") == ("files", "/files/{proxy+}", {"proxy": "a"})


def test_method_missing_on_the_matched_resource_is_no_route(router: Router[str]) -> None:
    # /items has GET and POST: a DELETE is not passed on to /{proxy+} (API Gateway answers 403)
    assert route(router, "DELETE", "/items") is None
    # /items/special has only GET: a PUT does not fall back to /items/{id}'s ANY either
    assert route(router, "PUT", "/items/special") is None
    assert route(router, "POST", "/") is None
    assert route(router, "GET", "/") == ("root", "/", {})


def test_unknown_path_without_a_catch_all_is_no_route() -> None:
    r = Router([("GET", "/a/{id}", "x")])
    assert r.match("GET", "/b") is None
    assert r.match("GET", "/a") is None
    assert r.match("GET", "/a/1/2") is None
    assert r.match("GET", "/") is None


def test_trailing_slash(router: Router[str]) -> None:
    assert route(router, "GET", "/items/") == ("list", "/items", {})
    assert route(router, "GET", "/items/42/") == ("get-item", "/items/{id}", {"id": "42"})
    assert route(router, "GET", "/") == ("root", "/", {})
    assert route(router, "GET", "") == ("root", "/", {})


def test_greedy_needs_at_least_one_segment() -> None:
    r = Router([("ANY", "/files/{proxy+}", "files"), ("GET", "/{all+}", "all")])
    assert route(r, "GET", "/files/a") == ("files", "/files/{proxy+}", {"proxy": "a"})
    assert route(r, "GET", "/files/a/b/") == ("files", "/files/{proxy+}", {"proxy": "a/b"})
    assert r.match("GET", "/") is None

    only = Router([("ANY", "/files/{proxy+}", "files")])
    assert only.match("GET", "/files") is None
    assert only.match("GET", "/files/") is None


def test_root_greedy_does_not_match_root() -> None:
    r = Router([("ANY", "/{proxy+}", "all")])
    assert r.match("GET", "/") is None
    assert route(r, "GET", "/x") == ("all", "/{proxy+}", {"proxy": "x"})


def test_param_does_not_match_an_empty_segment() -> None:
    r = Router([("GET", "/a/{id}/b", "x")])
    assert r.match("GET", "/a//b") is None


# --- decoding --------------------------------------------------------------------------------------


def test_path_parameters_are_percent_decoded(router: Router[str]) -> None:
    assert route(router, "GET", "/items/a%20b") == ("get-item", "/items/{id}", {"id": "a b"})
    assert route(router, "GET", "/items/caf%C3%A9") == ("get-item", "/items/{id}", {"id": "café"})
    assert route(router, "GET", "/items/a%2Fb") == ("get-item", "/items/{id}", {"id": "a/b"})
    assert route(router, "GET", "/files/dir%20one/f%3Fx.txt") == (
        "files",
        "/files/{proxy+}",
        {"proxy": "dir one/f?x.txt"},
    )


def test_static_segments_match_after_decoding(router: Router[str]) -> None:
    assert route(router, "GET", "/items/%73pecial") == ("special", "/items/special", {})


@pytest.mark.parametrize("path", ["/items/%zz", "/items/%", "/items/%C3", "/files/ok/%E2%82", "/%GG"])
def test_malformed_percent_encoding_raises_bad_path(router: Router[str], path: str) -> None:
    with pytest.raises(BadPath):
        router.match("GET", path)


# --- building ----------------------------------------------------------------------------------------


def test_duplicate_route_raises() -> None:
    with pytest.raises(DuplicateRoute, match=r"GET /a/\{id\} is defined twice"):
        Router([("GET", "/a/{id}", "1"), ("GET", "/a/{id}", "2")])
    with pytest.raises(DuplicateRoute):
        Router([("ANY", "/a", "1"), ("any", "/a", "2")])
    with pytest.raises(DuplicateRoute):
        Router([("GET", "/a", "1"), ("GET", "/a/", "2")])


def test_same_resource_different_methods_is_fine() -> None:
    r = Router([("GET", "/a", "get"), ("POST", "/a", "post"), ("ANY", "/a", "any")])
    assert len(r.routes) == 3
    assert route(r, "POST", "/a") == ("post", "/a", {})
    assert route(r, "PUT", "/a") == ("any", "/a", {})


def test_methods_are_normalised_to_upper_case_when_building() -> None:
    r = Router([("get", "/a", "x")])
    assert route(r, "GET", "/a") == ("x", "/a", {})


@pytest.mark.parametrize(
    ("first", "second", "name"),
    [
        ("/items/{id}", "/items/{itemId}", "id"),
        ("/items/{id}", "/items/{itemId}/parts", "id"),
        ("/files/{proxy+}", "/files/{path+}", "proxy"),
        ("/{a}/x", "/{b}/y", "a"),
    ],
)
def test_clashing_sibling_variable_names_raise(first: str, second: str, name: str) -> None:
    with pytest.raises(DuplicateRoute, match=rf"\{{{name}\}}"):
        Router([("GET", first, "1"), ("POST", second, "2")])


def test_param_and_greedy_siblings_do_not_clash() -> None:
    r = Router([("GET", "/a/{id}", "param"), ("GET", "/a/{rest+}", "greedy")])
    assert route(r, "GET", "/a/1") == ("param", "/a/{id}", {"id": "1"})
    assert route(r, "GET", "/a/1/2") == ("greedy", "/a/{rest+}", {"rest": "1/2"})


def test_on_conflict_reports_and_leaves_the_route_out() -> None:
    seen: list[tuple[str, str, str]] = []

    def on_conflict(method: str, resource: str, exc: DuplicateRoute) -> None:
        seen.append((method, resource, str(exc)))

    r = Router(
        [
            ("GET", "/a/{id}", "first"),
            ("GET", "/a/{id}", "again"),
            ("PUT", "/a/{other}", "clash"),
            ("POST", "/b", "fine"),
        ],
        on_conflict=on_conflict,
    )
    assert [(m, res) for m, res, _ in seen] == [("GET", "/a/{id}"), ("PUT", "/a/{other}")]
    assert "defined twice" in seen[0][2]
    assert "{id}" in seen[1][2]
    assert r.routes == (("GET", "/a/{id}", "first"), ("POST", "/b", "fine"))
    assert route(r, "GET", "/a/1") == ("first", "/a/{id}", {"id": "1"})
    assert r.match("PUT", "/a/1") is None


def test_a_left_out_route_does_not_change_the_kept_one() -> None:
    """``on_conflict``: the clashing route "is then left out"; the kept route must still report its own
    resource template."""
    r = Router([("GET", "/x", "kept"), ("GET", "/x/", "dropped")], on_conflict=lambda *_: None)
    assert r.routes == (("GET", "/x", "kept"),)
    assert route(r, "GET", "/x") == ("kept", "/x", {})


def test_match_does_not_share_parameter_dicts(router: Router[str]) -> None:
    first = router.match("GET", "/items/1")
    second = router.match("GET", "/items/2")
    assert first is not None
    assert second is not None
    assert first.path_parameters == {"id": "1"}
    assert second.path_parameters == {"id": "2"}
