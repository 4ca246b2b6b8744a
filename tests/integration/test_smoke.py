from tests.support.flows import connect, expire_soon, load


def test_connect_and_refresh_on_postgres(pg, google):
    iid = connect(pg)
    expire_soon(pg, iid)
    before = load(pg, iid).token_expires_at
    token = pg.tokens.ensure_fresh_token(iid, 300)
    assert token.startswith("ya29.")
    assert load(pg, iid).token_expires_at > before
    assert google.fake.total_refresh_calls == 1
