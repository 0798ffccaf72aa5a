"""The pytest fixtures plugin authors use: settings, users with roles, auth headers, a logged-in client."""

import textwrap

import pytest

from core.plugin import ADMIN, EDITOR
from core.signing import ACCESS, REFRESH, TokenInvalid

# Every test here runs with these settings, unless a closer marker or a parameter says otherwise.
pytestmark = pytest.mark.settings(refresh_reuse_grace=7, password_min_length=9)


@pytest.mark.gen_test
async def test_make_user_sets_roles_in_the_store(app, make_user):
    await make_user("ed", roles=["Editor", ADMIN])
    record = await app.services.store.collection("auth.users").get("ed")
    assert record["roles"] == [EDITOR, ADMIN]


@pytest.mark.gen_test
async def test_make_user_refuses_unknown_roles(make_user):
    with pytest.raises(ValueError, match="unknown role"):
        await make_user("ed", roles=["Emperor"])


@pytest.mark.gen_test
async def test_auth_headers_open_a_protected_route(api, make_user, auth_headers):
    await make_user("alice")
    assert (await api.get("/employees", headers=await auth_headers("alice"))).code == 200


@pytest.mark.gen_test
async def test_tokens_mints_and_reads_the_apps_tokens(api, app, make_user, tokens):
    """``tokens`` is the app's own signer: what it issues opens a route, what the app issues it reads."""
    assert tokens is app.services.tokens
    await make_user("ed", roles=[EDITOR])
    assert (await api.get("/employees", headers={"Authorization": f"Bearer {tokens.issue(ACCESS, 'ed')}"})).code == 200
    access = await api.login("ed")
    assert tokens.verify(ACCESS, access)["username"] == "ed"
    assert tokens.verify(REFRESH, api.cookies["jwt"])["username"] == "ed"
    with pytest.raises(TokenInvalid):
        tokens.verify(REFRESH, access)


@pytest.mark.gen_test
async def test_logged_in_client_sends_its_token_and_keeps_the_refresh_cookie(logged_in):
    client = await logged_in("alice")
    assert (await client.get("/employees")).code == 200
    assert "jwt" in client.cookies
    first = client.token
    assert (await client.refresh()).code == 200
    assert client.token and (await client.get("/employees")).code == 200
    assert (await client.get("/logout")).code == 204
    assert "jwt" not in client.cookies
    assert (await client.refresh()).code == 401
    assert first


@pytest.mark.gen_test
async def test_logged_in_reuses_an_existing_user_and_updates_roles(app, logged_in, make_user):
    await make_user("alice")
    await logged_in("alice", roles=[ADMIN])
    assert (await app.services.store.collection("auth.users").get("alice"))["roles"] == [ADMIN]


def test_a_settings_marker_changes_settings_and_the_closest_one_wins(turnstile_settings):
    assert turnstile_settings.refresh_reuse_grace == 7 and turnstile_settings.password_min_length == 9


@pytest.mark.settings(refresh_reuse_grace=0)
def test_a_test_marker_overrides_the_module_marker(turnstile_settings):
    assert turnstile_settings.refresh_reuse_grace == 0 and turnstile_settings.password_min_length == 9


@pytest.mark.parametrize("turnstile_settings", [{"token_leeway": 30}, {"refresh_reuse_grace": 1}], indirect=True)
def test_indirect_parametrization_overrides_the_markers(turnstile_settings):
    assert turnstile_settings.token_leeway == 30 or turnstile_settings.refresh_reuse_grace == 1
    assert turnstile_settings.password_min_length == 9


@pytest.mark.settings(refresh_reuse_grace=0)
@pytest.mark.gen_test
async def test_the_app_runs_on_the_marked_settings(app):
    assert app.services.settings.refresh_reuse_grace == 0


def test_the_app_fixture_closes_its_services(pytester):
    """Run a plugin author's test session and look at the app after its test ended."""
    pytester.makepyfile(
        textwrap.dedent(
            """
            import pytest

            APPS = []

            @pytest.mark.gen_test
            async def test_uses_the_app(app):
                APPS.append(app)
                assert not app.services.closed

            def test_the_app_was_closed_after_its_test():
                assert APPS and APPS[0].services.closed
            """
        )
    )
    # One backend, whatever this run selected: the inner session's test order is what is checked.
    result = pytester.runpytest("-p", "no:cacheprovider", "--turnstile-backend=json")
    result.assert_outcomes(passed=2)


def test_a_test_folder_outside_the_project_gets_the_fixtures_without_a_conftest(pytester):
    """The installed project registers the fixtures with pytest (a pytest11 entry point): no conftest.py line.

    A fresh interpreter in a folder of its own, so only the installation can provide them.
    """
    pytester.makepyfile(
        test_my_plugin=textwrap.dedent(
            """
            import pytest

            @pytest.mark.gen_test
            async def test_the_api_answers(api):
                assert (await api.get("/healthz")).code == 200
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--turnstile-backend=json", "--rootdir", str(pytester.path))
    result.assert_outcomes(passed=1)


@pytest.mark.gen_test
async def test_the_app_runs_on_the_selected_backend(app, turnstile_backend):
    """With --turnstile-backend=both this runs twice: once on a DATA_DIR, once on PostgreSQL."""
    assert app.services.store.backend == turnstile_backend
    assert (await app.services.store.check()).writable


def test_a_test_using_only_the_api_runs_on_every_backend(pytester):
    """pytest-tornado asks for ``app`` at run time, so ``api`` names ``app``: a test naming only ``api`` runs on each backend.

    A test naming only pytest-tornado's ``http_client`` stays on the default backend (it should name
    ``app`` or ``api``), and a module with an ``app`` of its own that needs no store is not multiplied.
    """
    pytester.makepyfile(
        test_through_api=textwrap.dedent(
            """
            import pytest

            @pytest.mark.gen_test
            async def test_api_only(api):
                pass

            @pytest.mark.gen_test
            async def test_http_client_only(http_client):
                pass

            def test_no_app():
                pass
            """
        ),
        test_own_app=textwrap.dedent(
            """
            import pytest
            import tornado.web

            @pytest.fixture
            def app():
                return tornado.web.Application([])

            @pytest.mark.gen_test
            async def test_plain_tornado(http_client):
                pass
            """
        ),
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", "--turnstile-backend=both")
    collected = {line.strip() for line in result.outlines if "::" in line}
    assert collected == {
        "test_through_api.py::test_api_only[json]",
        "test_through_api.py::test_api_only[postgres]",
        "test_through_api.py::test_http_client_only",
        "test_through_api.py::test_no_app",
        "test_own_app.py::test_plain_tornado",
    }
