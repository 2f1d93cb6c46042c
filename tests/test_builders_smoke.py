from tests.builders import make_account, make_hospital


async def test_bearer_token_from_builder_is_accepted_by_current_account(app, db, clock):
    # the smoke test of the harness: a builder-made token authenticates through the real dependency
    from starlette.requests import Request

    from guahao.core.deps import current_account

    _, token = await make_account(db, clock.now())
    scope = {"type": "http", "app": app, "headers": [(b"authorization", f"Bearer {token}".encode())]}
    principal = await current_account(Request(scope), db, clock)
    assert principal.account_id > 0
    await make_hospital(db, clock.now())
