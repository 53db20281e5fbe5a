# ruff: noqa: S603, S108  (a root-only recording tool: fixed argv, fixed harness paths)
"""Record real Slurm outputs into tests/fixtures/slurm/ for the parser tests.

Needs the harness (``bash scripts/slurm/harness.sh up``). Each fixture is a JSON file
``{"argv", "returncode", "stdout", "stderr"}`` (REST ones: ``{"method", "path", "status",
"body"}``). Run: ``.venv/bin/python scripts/slurm/record_fixtures.py``. It stops and restarts
factory1's slurmctld once to capture the "controller down" errors; with the argument ``start``
it records only ``squeue --start`` (about 30 s, nothing stopped).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "slurm"
HARNESS = ["bash", str(ROOT / "scripts" / "slurm" / "harness.sh")]
CONF = {c: f"/var/tmp/slurm-local/{c}/etc/slurm.conf" for c in ("factory1", "factory2")}
TMP = "/var/tmp/aif-slurm-jobs/fixtures"
REST = "http://127.0.0.1:16902"


def run(cluster: str, argv: list[str], stdin: str | None = None) -> dict[str, Any]:
    env = {"PATH": "/usr/bin:/bin:/usr/sbin", "SLURM_CONF": CONF[cluster], "LANG": "C.UTF-8"}
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, check=False)
    return {"argv": argv, "returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


def save(name: str, record: dict[str, Any]) -> None:
    (OUT / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{name}: rc={record.get('returncode', record.get('status'))}")


def sbatch(cluster: str, *opts: str, body: str = "true") -> str:
    r = run(cluster, ["sbatch", "--parsable", f"--output={TMP}/%j.out", *opts, "--wrap", body])
    return str(r["stdout"]).strip()


def wait_done(cluster: str, job_ids: list[str], timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = run(cluster, ["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)])
        if not str(r["stdout"]).strip():
            return
        time.sleep(0.2)


def record_cluster(cluster: str, gpu: str) -> None:
    sacct = ["env", "SLURM_TIME_FORMAT=%s", "sacct", "--parsable2", "--noheader", "--allocations"]
    sacct.append("--format=JobID,State,ExitCode,Start,End,ElapsedRaw,AllocTRES,NodeList,JobName")
    ok = sbatch(
        cluster, "-J", "aif-fixture-ok-1", f"--gpus-per-node={gpu}2", "-N", "2", body="srun true"
    )
    failed = sbatch(cluster, "-J", "aif-fixture-fail-1", body="exit 3")
    running = sbatch(cluster, "-J", "aif-fixture-cancel-1", "--gpus=1", body="sleep 60")
    pending = sbatch(cluster, "-J", "aif-fixture-pending-1", "--begin=now+1hour", body="true")
    save(
        f"{cluster}_sbatch_ok",
        run(
            cluster, ["sbatch", "--parsable"], f"#!/bin/bash\n#SBATCH --output={TMP}/%j.out\ntrue\n"
        ),
    )
    save(
        f"{cluster}_sbatch_bad_partition",
        run(cluster, ["sbatch", "--parsable", "-p", "nosuch", "--wrap", "true"]),
    )
    save(
        f"{cluster}_sbatch_too_many_gpus",
        run(cluster, ["sbatch", "--parsable", "--gpus-per-node=9", "--wrap", "true"]),
    )
    wait_done(cluster, [ok, failed])
    time.sleep(1.0)  # let the running job start
    save(f"{cluster}_squeue_json", run(cluster, ["squeue", "--json"]))
    save(
        f"{cluster}_scontrol_failed",
        run(cluster, ["env", "SLURM_TIME_FORMAT=%s", "scontrol", "show", "job", "-o", failed]),
    )
    save(f"{cluster}_scontrol_unknown", run(cluster, ["scontrol", "show", "job", "-o", "999999"]))
    save(f"{cluster}_scancel_ok", run(cluster, ["scancel", running]))
    save(f"{cluster}_scancel_unknown", run(cluster, ["scancel", "999999"]))
    run(cluster, ["scancel", pending])
    save(f"{cluster}_sinfo_json", run(cluster, ["sinfo", "--json"]))
    time.sleep(1.5)  # sacct lags the controller
    ids = ",".join([ok, failed, running, pending])
    save(f"{cluster}_sacct", run(cluster, [*sacct, f"--jobs={ids}"]))
    save(
        f"{cluster}_ids",
        {"ok": ok, "failed": failed, "cancelled": running, "pending_cancelled": pending},
    )


def record_down() -> None:
    subprocess.run([*HARNESS, "stop-ctld", "factory1"], check=True)
    try:
        save("factory1_squeue_down", run("factory1", ["squeue", "--json"]))
        save("factory1_sbatch_down", run("factory1", ["sbatch", "--parsable", "--wrap", "true"]))
        save("factory1_scancel_down", run("factory1", ["scancel", "1"]))
    finally:
        subprocess.run([*HARNESS, "start-ctld", "factory1"], check=True)


def record_sacctmgr() -> None:
    add = ["sacctmgr", "-i", "add", "account", "aif-fixture", "GrpTRESMins=gres/gpu=60"]
    run("factory2", add)
    save("factory2_sacctmgr_add_existing", run("factory2", add))
    save(
        "factory2_sacctmgr_modify_missing",
        run(
            "factory2",
            [
                "sacctmgr",
                "-i",
                "modify",
                "account",
                "where",
                "name=aif-nosuch",
                "set",
                "GrpTRESMins=gres/gpu=1",
            ],
        ),
    )
    save(
        "factory2_sacctmgr_show",
        run(
            "factory2",
            [
                "sacctmgr",
                "-n",
                "-P",
                "show",
                "assoc",
                "where",
                "account=aif-default",
                "format=account,user,grptresmins",
            ],
        ),
    )


def record_rest() -> None:
    token = subprocess.run(
        [*HARNESS, "token", "aifjob"], capture_output=True, text=True, check=True
    ).stdout.strip()
    http = httpx.Client(
        base_url=REST, headers={"X-SLURM-USER-NAME": "aifjob", "X-SLURM-USER-TOKEN": token}
    )
    job = {
        "name": "aif-fixture-rest-1",
        "nodes": "1",
        "environment": {"PATH": "/usr/bin:/bin"},
        "current_working_directory": "/tmp",
        "standard_output": "/dev/null",
    }
    calls = {
        "rest_submit_ok": (
            "POST",
            "/slurm/v0.0.38/job/submit",
            {"script": "#!/bin/bash\nexit 3\n", "job": job},
        ),
        "rest_submit_too_many_gpus": (
            "POST",
            "/slurm/v0.0.38/job/submit",
            {"script": "#!/bin/bash\ntrue\n", "job": {**job, "gpus_per_node": "9"}},
        ),
    }
    for name, (method, path, body) in calls.items():
        r = http.request(method, path, json=body)
        save(name, {"method": method, "path": path, "status": r.status_code, "body": r.json()})
    time.sleep(1.5)
    for name, path in {
        "rest_jobs": "/slurm/v0.0.38/jobs",
        "rest_job_unknown": "/slurm/v0.0.38/job/999999",
    }.items():
        r = http.get(path)
        save(name, {"method": "GET", "path": path, "status": r.status_code, "body": r.json()})
    r = httpx.get(f"{REST}/slurm/v0.0.38/jobs")
    save(
        "rest_no_token",
        {"method": "GET", "path": "/slurm/v0.0.38/jobs", "status": r.status_code, "body": r.text},
    )


def record_start(cluster: str = "factory1") -> None:
    """``squeue --start`` with one job waiting behind another on one node (n4; the other nodes
    stay free for whoever else uses the cluster) and one held until later: Slurm's backfill
    cycle (30 s) fills in the first's expected start; the held one reads N/A."""
    node = "n4" if cluster == "factory1" else "f2n2"
    gpus = "4" if cluster == "factory1" else "h100:8"
    one = ["-N", "1", "-w", node, f"--gpus-per-node={gpus}"]
    hold = sbatch(cluster, "-J", "aif-fixture-hold-1", *one, "-t", "3", body="sleep 90")
    wait = sbatch(cluster, "-J", "aif-fixture-behind|1", *one, "-t", "2", body="true")
    later = sbatch(cluster, "-J", "aif-fixture-later-1", "--hold", body="true")
    argv = ["env", "SLURM_TIME_FORMAT=%s", "squeue", "--start", "--noheader",
            "--format=%i|%P|%S|%D|%r|%j"]  # fmt: skip
    deadline = time.time() + 90
    record = run(cluster, argv)
    while f"{wait}|" in record["stdout"] and f"{wait}|debug|N/A" in record["stdout"]:
        if time.time() > deadline:
            break
        time.sleep(1)
        record = run(cluster, argv)
    save(f"{cluster}_squeue_start", record)
    ids = {"hold": hold, "behind": wait, "later": later}
    (OUT / f"{cluster}_start_ids.json").write_text(json.dumps(ids, indent=1) + "\n")
    run(cluster, ["scancel", hold, wait, later])


def main() -> None:
    subprocess.run([*HARNESS, "up"], check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    Path(TMP).mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["start"]:  # only squeue --start (leaves the controllers running)
        record_start()
        return
    record_cluster("factory1", "")
    record_cluster("factory2", "h100:")
    record_sacctmgr()
    record_rest()
    record_down()


if __name__ == "__main__":
    main()
