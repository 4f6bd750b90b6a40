"""Object storage end to end against a real S3-compatible server process (moto's standalone
server on 127.0.0.1, spoken to over HTTP by s3fs, not a mocked client), through the command line
as a user types it: `zss ingest ... s3://...`, `zss inspect s3://...`, `zss train ... s3://...`;
the same bytes as a local run, resume there, the trainer's shard stream reading from s3://, and a
malformed URL or a missing bucket as one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zss.cli import main
from zss.formats import shards as sh
from zss.formats import storage
from zss.formats.npy import load_npy
from zss.trainer.data import ShardStream, shards_from_manifest

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.usefixtures("ray_2cpu")]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def s3_server(monkeypatch, local_server):
    """A moto S3 server process with an empty bucket `zss`; the endpoint and fake credentials
    set for this process (fsspec config), its `zss` subprocesses and the Ray workers (forwarded
    AWS_*/FSSPEC_* env)."""
    pytest.importorskip("s3fs")
    import fsspec

    port = local_server("moto", lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                              "-p", str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
                 "FSSPEC_S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("zss")
    return endpoint


def zss(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`zss ARGS` in a subprocess with this process's environment (the S3 endpoint and keys)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "zss.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _ingest_args(kwargs: dict) -> list[str]:
    """The session's `ingest_kwargs` as `zss ingest` options."""
    return ["--features", kwargs["features"], "--img-size", str(kwargs["img_size"]), "--masks", kwargs["masks"],
            "--concepts", kwargs["concepts"], "--shard-size", str(kwargs["shard_size"]),
            "--workers", str(kwargs["workers"]), *[a for o in kwargs["overrides"] for a in ("--set", o)]]


def _decode(raw, rng):
    return {"key": raw["__key__"], "patch": load_npy(raw["patch.npy"]).astype(np.float32)}


def _collate(samples):
    return {"key": [s["key"] for s in samples], "patch": np.stack([s["patch"] for s in samples])}


def test_cli_ingest_inspect_train_on_s3(s3_server, ingested_shards, ingest_kwargs, tmp_path, tiny_overrides,
                                        capsys):
    url = "s3://zss/run1/shards"
    args = ["ingest", ingest_kwargs["source"], url, *_ingest_args(ingest_kwargs), "--limit", "16"]
    import ray

    done = zss(*args, "--address", ray.get_runtime_context().gcs_address)  # joins the session's Ray
    # two shards keep it quick; --limit is run-time only
    assert done.returncode == 0, done.stderr
    assert "2 written" in done.stdout and "status: ok=16" in done.stdout
    assert not (Path.cwd() / "s3:").exists()  # the URL stayed a URL (no local folder named `s3:`)

    manifest = sh.read_manifest(url)
    local = sh.read_manifest(ingested_shards)
    assert manifest["complete"] and manifest["n_shards"] == 2
    # workers wrote the objects themselves: the same bytes as the local run
    assert [e["sha256"] for e in manifest["shards"]] == [e["sha256"] for e in local["shards"][:2]]
    assert sh.validate_shards(url) == []
    names = set(storage.listdir(url))
    assert {"manifest.json", "concepts.json", "00001.tar", "00001_stats.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]

    shown = zss("inspect", url)
    assert shown.returncode == 0, shown.stderr
    assert f"shards: {url}" in shown.stdout and "2 of 2 done (complete), 16 samples" in shown.stdout
    assert "status: ok=16" in shown.stdout and "sample 000000000" in shown.stdout

    # the same command line parsed in this process (its Ray is the session's): resume, verify
    capsys.readouterr()
    assert main(args) == 0  # incremental resume on object storage
    assert "0 written, 2 already done" in capsys.readouterr().out
    assert main(["inspect", "--verify", url]) == 0
    assert "verified 2 shard(s)" in capsys.readouterr().out

    # the trainer's stream reads the same URLs and yields what it yields from the local folder
    def batches(where):
        refs = shards_from_manifest(where, sh.read_manifest(where))[:2]
        stream = ShardStream(refs, _decode, _collate, batch_size=4, seed=3, members=("patch.npy",))
        return [b for _, b in zip(range(6), (b for b, _ in stream.batches()))]

    remote, here = batches(url), batches(ingested_shards)
    assert [b["key"] for b in remote] == [b["key"] for b in here]
    for a, b in zip(remote, here):
        np.testing.assert_array_equal(a["patch"], b["patch"])
    assert remote[0]["patch"].shape == (4, 8, 8, 384)

    # `zss train RECIPE s3://... RUN`: trains from the bucket, the model records the URL
    run = tmp_path / "run"
    sets = [a for o in tiny_overrides + ["batch_size=8", "num_workers=1"] for a in ("--set", o)]
    trained = zss("train", "simzss", url, str(run), "--steps", "2", *sets)
    assert trained.returncode == 0, trained.stderr
    assert f"trained simzss on {url}" in trained.stdout
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["trained_on"]["shards"] == url
    assert (run / "model" / "concepts.json").read_bytes() == storage.read_bytes(f"{url}/concepts.json")


def test_cli_bad_urls_are_one_line(s3_server, world, tmp_path, capsys):
    """A URL cut short, one without a bucket, an unknown scheme, a missing bucket: one line, exit 2,
    before anything is read or written (no local folder named after the scheme)."""
    done = zss("ingest", str(world), "s3:/zss/shards", timeout=120)  # once as a separate process
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "zss: error: malformed URL 's3:/zss/shards': write s3://BUCKET/PATH (two slashes after 's3:')"]
    cases = {("inspect", "s3:/zss/shards"): "malformed URL 's3:/zss/shards'",
             ("inspect", "s3:///shards"): "no bucket name",
             ("inspect", "nosuch://zss/shards"): "unknown URL scheme 'nosuch'",
             ("inspect", "s3://zss/empty"): "no manifest.json in s3://zss/empty",
             ("train", "simzss", "s3://missing-bucket/shards", str(tmp_path / "run")):
                 "bucket 'missing-bucket' of s3://missing-bucket/shards does not exist",
             ("ingest", str(world), "s3://missing-bucket/shards"):
                 "bucket 'missing-bucket' of s3://missing-bucket/shards does not exist"}
    for args, message in cases.items():
        code = main(list(args))
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, lines)
        assert lines[0].startswith("zss: error: ")
    assert not (Path.cwd() / "s3:").exists() and not (tmp_path / "run").exists()
