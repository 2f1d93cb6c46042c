async def test_healthz_answers(client):
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_readyz_reports_database_at_head(client):
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text


async def test_metrics_expose_request_counts(client):
    await client.get("/healthz")
    r = await client.get("/metrics")
    assert "guahao_http_requests_total" in r.text


async def test_unknown_route_is_problem_json_in_callers_language(client):
    r = await client.get("/nope", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "not_found" and "does not exist" in body["detail"]
    r = await client.get("/nope")
    assert "找不到" in r.json()["detail"]
