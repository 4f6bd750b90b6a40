"""Object storage end to end against a real S3-compatible server process (moto's standalone
server on 127.0.0.1, spoken to over HTTP by s3fs, not a mocked client): ingest into s3://, the
same bytes as a local run, resume there, and the trainer's shard stream reading from s3://."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from zss.formats import shards as sh
from zss.formats import storage
from zss.formats.npy import load_npy
from zss.ingest.runner import run_ingest
from zss.trainer.data import ShardStream, shards_from_manifest

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.usefixtures("ray_2cpu")]


@pytest.fixture()
def s3_server(monkeypatch, local_server):
    """A moto S3 server process with an empty bucket `zss`; the endpoint and fake credentials
    set for this process (fsspec config) and for the Ray workers (forwarded AWS_*/FSSPEC_* env)."""
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


def _decode(raw, rng):
    return {"key": raw["__key__"], "patch": load_npy(raw["patch.npy"]).astype(np.float32)}


def _collate(samples):
    return {"key": [s["key"] for s in samples], "patch": np.stack([s["patch"] for s in samples])}


def test_ingest_to_s3_and_train_from_s3(s3_server, ingested_shards, ingest_kwargs):
    url = "s3://zss/run1/shards"
    kwargs = {**ingest_kwargs, "limit": 16}  # two shards keep it quick; --limit is run-time only
    summary = run_ingest(out=url, **kwargs)
    assert "2 written" in summary and "status: ok=16" in summary

    manifest = sh.read_manifest(url)
    local = sh.read_manifest(ingested_shards)
    assert manifest["complete"] and manifest["n_shards"] == 2
    # workers wrote the objects themselves: the same bytes as the local run
    assert [e["sha256"] for e in manifest["shards"]] == [e["sha256"] for e in local["shards"][:2]]
    assert sh.validate_shards(url) == []
    names = set(storage.listdir(url))
    assert {"manifest.json", "concepts.json", "00001.tar", "00001_stats.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]

    again = run_ingest(out=url, **kwargs)  # incremental resume on object storage
    assert "0 written, 2 already done" in again

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
