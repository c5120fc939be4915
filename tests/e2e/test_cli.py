"""The `ridehail` command as an operator uses it."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

from ridehail.app import create_app
from ridehail.db.migrate import alembic_config
from tests import profiles
from tests.e2e.conftest import RIDEHAIL, server_env

pytestmark = pytest.mark.e2e


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RIDEHAIL, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_create_admin_then_sign_in_as_admin(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path}/ops.db"
    env = server_env({"RIDEHAIL_DATABASE_URL": db_url, "RIDEHAIL_VAR_DIR": str(tmp_path / "var")})
    made = run(
        ["users", "create-admin", "--email", "ops@example.com", "--password", "very-secret-1"],
        env,
        tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "adm_" in made.stdout + made.stderr
    again = run(
        ["users", "create-admin", "--email", "OPS@example.com", "--password", "very-secret-2"],
        env,
        tmp_path,
    )
    assert again.returncode != 0  # the email is taken
    short = run(
        ["users", "create-admin", "--email", "x@example.com", "--password", "short"], env, tmp_path
    )
    assert short.returncode != 0

    settings = profiles.settings_for(database_url=db_url, redis_url=None, key_prefix="x:")
    app = create_app(settings, access_log=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            token = await http.post(
                "/api/v1/auth/token", json={"email": "ops@example.com", "password": "very-secret-1"}
            )
            assert token.status_code == 200
            assert token.json()["role"] == "admin"
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            assert (await http.get("/api/v1/rides", headers=headers)).status_code == 200


async def test_db_upgrade_creates_the_schema_on_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    name = f"ridehail_cli_{uuid.uuid4().hex[:8]}"
    admin_dsn = profiles.asyncpg_dsn(postgres_url)
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
        done = run(["db", "upgrade"], server_env({"RIDEHAIL_DATABASE_URL": url}), tmp_path)
        assert done.returncode == 0, done.stderr
        conn = await asyncpg.connect(profiles.asyncpg_dsn(url))
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        version = await conn.fetchval("SELECT version_num FROM alembic_version")
        await conn.close()
        assert {
            "accounts_users",
            "drivers_drivers",
            "rides_rides",
            "dispatch_offers",
            "dispatch_searches",
            "dispatch_candidates",
            "dispatch_driver_states",
            "outbox_events",
            "messaging_processed_events",
        } <= tables
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert version == head
    finally:
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
