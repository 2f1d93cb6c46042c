"""Every dependency and endpoint of the app is a coroutine function: FastAPI runs a plain
`def` one in its thread pool, and that hand-off per request cost a third of a worker's CPU in
the browse storm (one sync dependency on the availability route; docs/BENCHMARKS.md)."""
from __future__ import annotations

import inspect

from fastapi.routing import APIRoute


def _calls(dependant):
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _api_routes(routes):
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI keeps an included router as one route
            yield from _api_routes(route.original_router.routes)


def test_no_route_of_the_app_runs_in_the_thread_pool(app):
    sync, routes = set(), list(_api_routes(app.routes))
    assert len(routes) > 100  # the walk reached the included routers' routes
    for route in routes:
        for call in (route.endpoint, *_calls(route.dependant)):
            target = call if inspect.isfunction(call) or inspect.ismethod(call) else type(call).__call__
            if not inspect.iscoroutinefunction(target):
                sync.add(f"{route.path}: {getattr(call, '__qualname__', call)}")
    assert not sync, sorted(sync)
