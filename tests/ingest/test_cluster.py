"""A real two-node Ray cluster on this machine (issue 13 item 5): `ray start --head` and a second
`ray start --address` node with its own CPU and a custom resource, `zss ingest --address` on it,
shards written by the workers of both nodes into the shared output, then the worker node killed
(SIGKILL of its raylet) mid-run and a resume on the surviving node that ends byte-identical to a
single-node run.

To land the kill at a known point, the nodes' Python processes load a `sitecustomize` that holds
`write_shard` while a flag file exists: shard 2 waits *before* it is written, every other shard
waits *after* it is written. So when shards 0 and 1 are on disk (one from each node: the driver
hands shard 0 and 1 to the two actors, which SPREAD puts on different nodes), shard 2 is in
flight and unwritten, whichever node holds it. Teardown kills exactly the processes of the two
`ray start --block` commands this test started (their process trees), never by name: other Ray
instances on the machine (other tests, other users) are left alone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from zss.utils.procs import alive, descendants

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).with_name("ray")

HOOK = '''
import importlib.abc, importlib.util, os, sys, time

FLAG = os.environ.get("ZSS_TEST_HOLD_FLAG")


def _hold():
    deadline = time.monotonic() + 240
    while FLAG and os.path.exists(FLAG) and time.monotonic() < deadline:
        time.sleep(0.1)


def _patch(module):
    write = module.write_shard

    def held(out_dir, shard_id, *args, **kwargs):
        if shard_id == 2:
            _hold()
        stats = write(out_dir, shard_id, *args, **kwargs)
        if shard_id != 2:
            _hold()
        return stats

    module.write_shard = held


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "zss.formats.shards":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if FLAG:
    sys.meta_path.insert(0, _Finder())
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(cond, what: str, timeout: float, procs: list[subprocess.Popen] = (), logs: list[Path] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for p in procs:
            if p.poll() is not None:
                text = "\n".join(log.read_text()[-2000:] for log in logs if log.exists())
                pytest.fail(f"exited {p.returncode} while waiting for {what}:\n{text}")
        if time.monotonic() > deadline:
            text = "\n".join(log.read_text()[-2000:] for log in logs if log.exists())
            pytest.fail(f"timed out waiting for {what}:\n{text}")
        time.sleep(0.1)


def _shard_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".tar", ".parquet")}


def _cli(kw: dict, out: Path, address: str) -> list[str]:
    args = [sys.executable, "-c", "import sys; from zss.cli import main; sys.exit(main(sys.argv[1:]))", "ingest", kw["source"], str(out), "--features", kw["features"],
            "--img-size", str(kw["img_size"]), "--masks", kw["masks"], "--concepts", kw["concepts"],
            "--shard-size", str(kw["shard_size"]), "--workers", str(kw["workers"]), "--address", address]
    for item in kw["overrides"]:
        args += ["--set", item]
    return args


@pytest.fixture()
def cluster(tmp_path):
    """(address, node processes {name: Popen}, env of the drivers, hold flag path, log paths)."""
    if not RAY.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    flag = tmp_path / "hold"
    flag.touch()
    # a short root: Ray's unix socket paths must stay under ~107 characters
    temp = Path(tempfile.mkdtemp(prefix="zr", dir="/tmp"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hook), str(REPO), os.environ.get("PYTHONPATH", "")]),
               ZSS_TEST_HOLD_FLAG=str(flag), RAY_health_check_period_ms="500",
               RAY_health_check_failure_threshold="3", RAY_health_check_timeout_ms="1000",
               RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    common = ["--block", "--num-cpus", "1", "--temp-dir", str(temp), "--disable-usage-stats"]
    nodes: dict[str, subprocess.Popen] = {}
    logs = {"head": tmp_path / "head.log", "node2": tmp_path / "node2.log"}
    tree: set[int] = set()
    try:
        try:
            nodes["head"] = subprocess.Popen(
                [str(RAY), "start", "--head", "--port", str(port), "--include-dashboard=false", *common],
                env=env, stdout=open(logs["head"], "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            pytest.skip(f"`ray start` cannot run here: {exc}")
        started = lambda name: "Ray runtime started" in logs[name].read_text()  # noqa: E731
        deadline = time.monotonic() + 60
        while not started("head"):
            if nodes["head"].poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"`ray start --head` cannot run here:\n{logs['head'].read_text()[-1500:]}")
            time.sleep(0.1)
        nodes["node2"] = subprocess.Popen(
            [str(RAY), "start", "--address", address, "--resources", json.dumps({"node2": 1}), *common],
            env=env, stdout=open(logs["node2"], "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait(lambda: started("node2"), "the second node", 60, [nodes["node2"]], [logs["node2"]])
        yield address, nodes, env, flag, logs
    finally:
        # the equivalent of `ray stop --force`, limited to the two nodes started here
        for p in nodes.values():
            tree |= {p.pid} | descendants(p.pid)
        for pid in sorted(tree):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in nodes.values():
            p.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)
    assert not [pid for pid in tree if alive(pid)], "Ray processes of the test cluster left behind"


def test_two_nodes_write_shards_and_a_resume_after_losing_one_is_byte_identical(
        cluster, ingested_shards, ingest_kwargs, tmp_path):
    address, nodes, env, flag, logs = cluster
    out, log = tmp_path / "out", tmp_path / "ingest.log"
    driver_env = {k: v for k, v in env.items() if k != "ZSS_TEST_HOLD_FLAG"}
    driver_env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])

    proc = subprocess.Popen(_cli(ingest_kwargs, out, address), env=driver_env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(lambda: (out / "00000_stats.json").exists() and (out / "00001_stats.json").exists(),
              "shards 0 and 1", 120, [proc], [log])
        stats = [json.loads((out / f"0000{i}_stats.json").read_text()) for i in (0, 1)]
        assert stats[0]["node"] and stats[1]["node"] and stats[0]["node"] != stats[1]["node"], stats
        assert not (out / "00002_stats.json").exists()  # held before writing, on one of the nodes

        raylets = [pid for pid in descendants(nodes["node2"].pid)
                   if b"raylet" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]]
        assert len(raylets) == 1, raylets
        os.kill(raylets[0], signal.SIGKILL)  # the worker node dies mid-run
        code = proc.wait(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    text = log.read_text()
    errors = [ln for ln in text.splitlines() if ln.startswith("zss: error:")]
    assert code == 2 and len(errors) == 1 and "re-run the same command to resume" in errors[0], text[-3000:]
    assert "Traceback" not in text
    assert not (out / "00002_stats.json").exists()

    flag.unlink()  # the surviving node writes without holding from now on
    resumed = subprocess.run(_cli(ingest_kwargs, out, address), env=driver_env, capture_output=True,
                             text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "1 written, 2 already done" in resumed.stdout, resumed.stdout
    assert "shards written by workers on 1 node(s)" in resumed.stdout, resumed.stdout
    assert _shard_files(out) == _shard_files(ingested_shards)
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
