"""`aif factories set-status | create | add-system | add-partition | add-member` and
`aif federation add-country` as a subprocess against `aif serve`; a factory added by another
process gets its access calls in the server without a restart."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.services import registry
from aifactory.settings import FactorySpec, Settings
from aifactory.testing.people import Person, make_person
from aifactory.testing.serving import AIF, CEILING_S, Federation, served_federation

FACTORY_YAML = """\
name: Danube AIF
hosting_entity: Vienna Scientific Cluster
city: Vienna
country: AT
members: [SK]
capacity_split: {eu: 0.5, national: 0.5, commercial: 0.0}
systems:
  - name: Danube-1
    kind: new
    partitions:
      - {name: gpu, gpu_model: H100, nodes: 4, gpus_per_node: 4, gpu_memory_gb: 80}
"""


def _aif(fed: Federation, token: str, *args: str, code: int = 0) -> str:
    done = subprocess.run(
        [AIF, *args],
        cwd=fed.work,
        env={**fed.env, "AIF_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=CEILING_S,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == code, f"aif {' '.join(args)} exited {done.returncode}:\n{out}"
    return out


def _calls_of(fed: Federation, token: str, factory: str) -> list[str]:
    out = _aif(fed, token, "calls", "list", "--factory", factory, "--json")
    return sorted(c["id"] for c in json.loads(out))


def test_a_drained_site_and_a_new_factorys_calls_through_aif_serve(tmp_path: Path) -> None:
    with served_federation() as fed:
        db = Database(Settings(data_dir=Path(fed.env["AIF_DATA_DIR"])).effective_database_url)
        admin = make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)]).token
        ops = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")]).token
        spec = tmp_path / "danube.yaml"
        spec.write_text(FACTORY_YAML)

        created = _aif(fed, admin, "factories", "create", str(spec))
        assert "created factory Danube AIF (selected)" in created
        drained = _aif(fed, ops, "factories", "set-status", "LUMI AIF", "draining")
        assert "LUMI AIF is draining" in drained
        illegal = _aif(fed, admin, "factories", "set-status", "Danube AIF", "draining", code=1)
        assert "illegal factory transition from selected to draining" in illegal

        # Another process (this test) adds a factory straight to the database: the server
        # lists its calls without a restart once it next looks (about a second).
        with db.session() as s:
            tatra = FactorySpec(
                name="Tatra AIF", hosting_entity="CVTI", city="Bratislava", country="SK"
            )
            registry.create_factory(s, tatra)
        db.dispose()
        deadline = time.monotonic() + CEILING_S
        while not (found := _calls_of(fed, admin, "Tatra AIF")):
            assert time.monotonic() < deadline, "Tatra AIF's calls never appeared"
            time.sleep(0.5)
        assert found == [f"tatra-aif-{m}" for m in ("as", "fl", "ls", "pg")]
        assert _calls_of(fed, admin, "Danube AIF") == [
            f"danube-aif-{m}" for m in ("as", "fl", "ls", "pg")
        ]


def test_operators_add_systems_partitions_and_members_from_the_cli(
    db: Database, settings: Settings, admin: Person, operator: Person, tmp_path: Path
) -> None:
    with BackgroundServer(settings, db) as server:
        env = {"AIF_URL": server.url, "AIF_TOKEN": admin.token, "AIF_CONFIG_DIR": str(tmp_path)}
        as_ops = {**env, "AIF_TOKEN": operator.token}
        _run(as_ops, "factories", "add-system", "LUMI AIF", "LUMI-Next", "--kind", "upgrade")
        added = _run(
            as_ops, "factories", "add-partition", "LUMI AIF", "LUMI-Next", "big",
            "--gpu-model", "B200", "--nodes", "8", "--gpus-per-node", "8",
            "--gpu-memory-gb", "192", "--charge-factor", "2",
        )  # fmt: skip
        refused = _run(as_ops, "federation", "add-country", "MD", "Moldova", "other", code=1)
        country = _run(env, "federation", "add-country", "MD", "Moldova", "participating_state")
        joined = _run(as_ops, "factories", "add-member", "LUMI AIF", "MD")
        shown = json.loads(_run(env, "factories", "show", "LUMI AIF", "--json"))
        summary = json.loads(_run(env, "federation", "summary", "--json"))
    assert "added partition LUMI-Next/big: 64 GPUs" in added
    assert "manage_federation needs one of" in refused
    assert "added Moldova (MD, participating_state)" in country
    assert "LUMI AIF consortium: FI, CZ, DK, EE, MD, NO, PL" in joined
    big = next(p for s in shown["systems"] if s["name"] == "LUMI-Next" for p in s["partitions"])
    assert (big["gpu_model"], big["nodes"], big["charge_factor"]) == ("B200", 8, 2.0)
    assert "MD" in summary["countries_by_status"]["participating_state"]


runner = CliRunner()


def _run(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output
