"""Accepted -> sbatch on a real slurmctld: p50/p95 latency and jobs/s handed over.

Needs the project's Slurm harness (`bash scripts/slurm/harness.sh up`, root). The control plane
runs in this process on SQLite: jobs are accepted through the service layer (budget check,
placement, durable write) at a steady rate while the site agent for LUMI AIF, backed by the
harness's cluster factory1 through the local transport, hands them to slurmctld. Latency is the
time from the job's acceptance to its `submitted` transition, i.e. after `sbatch` returned.

    .venv/bin/python bench/bench_slurm.py [--jobs 200] [--rate 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import select

from aifactory.agents.runner import AgentRunner
from aifactory.db.models import Job, JobTransition, User
from aifactory.domain.enums import OrganisationType, Role
from aifactory.domain.jobspec import parse_spec
from aifactory.services import identity, jobs, proposals, registry
from aifactory.services.decisions import assess
from aifactory.services.permissions import Principal
from aifactory.services.proposals import ProposalInput
from aifactory.services.setup import prepare
from aifactory.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ["bash", str(ROOT / "scripts" / "slurm" / "harness.sh")]


def harness_facts() -> dict[str, str]:
    subprocess.run([*HARNESS, "up"], check=True, capture_output=True, timeout=600)
    out = subprocess.run([*HARNESS, "info"], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def setup(tmp: Path, h: dict[str, str]) -> tuple[Settings, object, Principal, str]:
    sites = tmp / "sites.yaml"
    sites.write_text(yaml.safe_dump({"sites": [{"factory": "LUMI AIF", "executor": "slurm",
        "options": {"cluster": "factory1", "slurm_conf": h["FACTORY1_CONF"],
                    "job_root": h["JOB_ROOT"], "accounting": False,
                    "require_site_account": False,
                    "partitions": {"gpu": "debug"}}}]}))  # fmt: skip
    settings = Settings(data_dir=tmp / "data", sites_file=sites, agent_interval_s=0.05)
    db = prepare(settings)
    now = datetime.now(UTC)
    with db.session() as s:
        registry.update_partition(s, "LUMI AIF", "LUMI-AI", "gpu", {"nodes": 4, "gpus_per_node": 4})
        identity.create_organisation(s, "Bench Oy", OrganisationType.STARTUP, "FI", 5, 1, 1)
        identity.create_user(s, "bench", "b@x.eu", roles=[(Role.APPLICANT, None)])
        identity.add_membership(s, "bench", "Bench Oy")
        identity.create_user(s, "ops", "o@x.eu", roles=[(Role.FACTORY_OPERATOR, "LUMI AIF")])
        who = identity.principal_of(s.scalars(select(User).where(User.username == "bench")).one())
        ops = identity.principal_of(s.scalars(select(User).where(User.username == "ops")).one())
        draft = proposals.create(
            s,
            who,
            ProposalInput(
                call_id="lumi-aif-pg",
                title="bench",
                organisation="Bench Oy",
                research_kind="open_rd",
                gpu_hours=5000,
                duration_months=1,  # type: ignore[arg-type]
                partition="LUMI-AI/gpu",
            ),
            now,
        )
        proposals.submit(s, who, draft.id, now)
        code = assess(s, ops, draft.id, True, now).project_code or ""
    return settings, db, who, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="accepted jobs per second")
    args = parser.parse_args()
    facts = harness_facts()
    with tempfile.TemporaryDirectory() as tmp:
        settings, db, who, code = setup(Path(tmp), facts)
        runner = AgentRunner(settings, db)  # type: ignore[arg-type]
        capacity = runner.capacity
        spec = parse_spec(
            {
                "name": "bench",
                "project": code,
                "command": ["true"],
                "resources": {"gpus_per_node": 0, "time_limit": 60},
            }
        )
        runner.start()
        t0 = time.time()
        for i in range(args.jobs):
            while time.time() < t0 + i / args.rate:
                time.sleep(0.001)
            with db.session() as s:  # type: ignore[attr-defined]
                jobs.submit(s, who, spec, datetime.now(UTC), capacity)
        deadline = time.time() + 300
        while time.time() < deadline:
            with db.session() as s:  # type: ignore[attr-defined]
                left = s.scalar(select(Job.id).where(Job.state.in_(["pending", "placed"])).limit(1))
            if left is None:
                break
            time.sleep(0.2)
        runner.stop()
        with db.session() as s:  # type: ignore[attr-defined]
            created = dict(s.execute(select(Job.id, Job.created_at)).all())
            handed = dict(
                s.execute(
                    select(JobTransition.job_id, JobTransition.at).where(
                        JobTransition.to_state == "submitted"
                    )
                ).all()
            )
        subprocess.run(
            ["scancel", "--name", "bench"],
            env={**os.environ, "SLURM_CONF": facts["FACTORY1_CONF"]},
            check=False,
            capture_output=True,
        )
    lat = sorted((handed[j] - created[j]).total_seconds() for j in handed)
    span = (max(handed.values()) - min(created.values())).total_seconds()
    q = statistics.quantiles(lat, n=100)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    machine["platform"] = platform.platform()
    result = {
        "benchmark": "accepted_to_sbatch",
        "jobs": args.jobs,
        "handed": len(lat),
        "offered_rate_per_s": args.rate,
        "p50_s": round(q[49], 4),
        "p95_s": round(q[94], 4),
        "max_s": round(lat[-1], 4),
        "jobs_per_s": round(len(lat) / span, 2),
        "target_p95_s": 1.0,
        "machine": machine,
        "date": datetime.now(UTC).isoformat(),
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "slurm-accepted-to-sbatch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
