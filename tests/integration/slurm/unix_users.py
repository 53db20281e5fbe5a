"""Real Unix users standing in for people's own logins at a site, and their mapping.

Munge authenticates any local uid, so a user created here is a real, separate Slurm user
(see shared/slurm/README.md §6b). Creation is idempotent: sessions and helpers share them.
"""

from __future__ import annotations

import pwd
import subprocess

from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.services import site_accounts
from aifactory.services.permissions import Principal

#: A federation admin acting for the test (the audit log names it).
TEST_ADMIN = Principal(
    user_id=0, username="test-setup", roles=frozenset({(Role.FEDERATION_ADMIN, None)})
)


def ensure_unix_user(name: str) -> str:
    """Create ``name`` (no home directory, bash) unless it exists; return it."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        proc = subprocess.run(
            ["useradd", "-M", "-s", "/bin/bash", name], capture_output=True, text=True, check=False
        )
        # rc 9: another process created it meanwhile.
        if proc.returncode not in (0, 9):
            raise RuntimeError(f"useradd {name} failed: {proc.stderr.strip()}") from None
    return name


def map_login(db: Database, username: str, factory: str, login: str) -> None:
    """Give platform user ``username`` the Unix user ``login`` as their site account."""
    ensure_unix_user(login)
    with db.session() as s:
        site_accounts.set_login(s, TEST_ADMIN, username, factory, login)
