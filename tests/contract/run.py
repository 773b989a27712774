"""The API contract run: schemathesis, with every check and in every phase (examples,
coverage, fuzzing, stateful), against a real `chronicle serve` on a fresh data directory,
as an ADMIN of a freshly signed-up enterprise tenant. It reads the routes from the server's
own /openapi.json, so a route added later is covered without touching this file.

Usage (scripts/api-contract runs it with the project's .venv):
    python tests/contract/run.py [extra schemathesis options]
Environment: CHRONICLE_BIN (default target/debug/chronicle), CONTRACT_SEED (default fixed,
so a run can be replayed), CONTRACT_MAX_EXAMPLES (default 100 per operation).
Exits with schemathesis' status: non-zero on any failure.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"chronicle serve exited with {server.returncode}:\n{log.read_text()}")
        try:
            if request(f"{base}/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"chronicle serve did not answer /health within 60 s:\n{log.read_text()}")


def summarize(junit: Path) -> None:
    """One closing line, `contract: N passed, M failed`, counting operations."""
    if not junit.exists():
        return
    import xml.etree.ElementTree as ET

    cases = list(ET.parse(junit).getroot().iter("testcase"))
    failed = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
    print(f"contract: {len(cases) - failed} passed, {failed} failed", flush=True)


def main() -> int:
    binary = os.environ.get("CHRONICLE_BIN", str(ROOT / "target" / "debug" / "chronicle"))
    venv_bin = Path(sys.executable).parent
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="chronicle-contract-") as data:
        log = Path(data) / "server.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [binary, "serve", "--addr", f"127.0.0.1:{port}", "--data-dir", f"{data}/store"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
                    # An AI provider is configured, so that submissions are accepted (202);
                    # it is a closed loopback port, so the worker's calls fail (FAILED)
                    # without leaving the machine.
                    "OPENAI_API_KEY": "sk-contract-run",
                    "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
                    "CHRONICLE_AI_MAX_ATTEMPTS": "1",
                    # A mail server likewise: messages are accepted (202) and their
                    # delivery fails at a closed loopback port.
                    "CHRONICLE_SMTP_URL": f"smtp://127.0.0.1:{closed_port()}",
                    "CHRONICLE_SMTP_FROM": "contract@chronicle.test",
                    "CHRONICLE_SMTP_MAX_ATTEMPTS": "1",
                },
            )
        try:
            wait_up(base, server, log)
            status, body = request(
                f"{base}/tenants",
                {
                    "company_name": "Contract Test",
                    "admin_email": "admin@contract.test",
                    "admin_password": "a long contract passphrase",
                    "tier": "enterprise",
                },
            )
            if status != 201:
                sys.exit(f"sign-up answered {status}: {body!r}")
            signed_up = json.loads(body)
            token = signed_up["access_token"]
            drops = Path(data) / "dropped.txt"
            command = [
                str(venv_bin / "schemathesis"),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"{base}/openapi.json",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--header",
                f"Authorization: Bearer {token}",
                "--seed",
                os.environ.get("CONTRACT_SEED", "20261201"),
                "--max-examples",
                os.environ.get("CONTRACT_MAX_EXAMPLES", "100"),
                # One worker: Hypothesis' lambda descriptions are not thread-safe on Python 3.11.
                "--workers",
                "1",
                "--report",
                "junit",
                "--report-junit-path",
                str(Path(data) / "junit.xml"),
                *sys.argv[1:],
            ]
            env = {
                **os.environ,
                "SCHEMATHESIS_HOOKS": "hooks",
                "CONTRACT_TENANT_ID": signed_up["tenant_id"],
                "CONTRACT_CLOSED_URL": f"http://127.0.0.1:{closed_port()}",
                "CONTRACT_DROPPED": str(drops),
                "PYTHONPATH": str(HERE),
                "NO_COLOR": "1",
            }
            print("api contract:", " ".join(c if not c.startswith("Authorization") else "Authorization: Bearer …" for c in command), flush=True)
            code = subprocess.call(command, env=env, cwd=data)
            if drops.exists():
                reasons = drops.read_text().split()
                print("dropped by hooks.py:", ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons))))
            summarize(Path(data) / "junit.xml")
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        crashed = server.returncode not in (0, -15)
        if code != 0 or crashed:
            tail = log.read_text(errors="replace").splitlines()[-40:]
            print("--- last lines of the server's log ---", *tail, sep="\n")
        if crashed:
            print(f"chronicle serve exited with {server.returncode}")
            return 1
        return code


if __name__ == "__main__":
    sys.exit(main())
