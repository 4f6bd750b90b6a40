"""`zss inspect [--verify] URL` reads a shard folder through the storage layer (here fsspec's
in-process memory:// file system), damaged objects named as for a local folder."""

from __future__ import annotations

from zss.cli import main


def test_inspect_and_verify_a_url(feature_world, capsys):
    import fsspec

    fs = fsspec.filesystem("memory")
    url = "memory://zss-inspect/shards"
    for p in sorted(feature_world.shards.iterdir()):
        fs.pipe(f"{url}/{p.name}", p.read_bytes())
    try:
        assert main(["inspect", url]) == 0
        out = capsys.readouterr().out
        assert f"shards: {url}" in out and "2 of ? done" in out and "status: ok=64" in out
        assert main(["inspect", "--verify", url]) == 0
        assert "verified 2 shard(s)" in capsys.readouterr().out
        fs.pipe(f"{url}/00001.tar", b"not the tar that was ingested")
        assert main(["inspect", "--verify", url]) == 3
        err = capsys.readouterr().err
        assert "00001.tar sha256 differs from the one recorded at ingest" in err
        assert f"delete the objects {url}/00001_stats.json" in err
    finally:
        fs.rm("/zss-inspect", recursive=True)
