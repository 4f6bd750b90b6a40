"""`storage.location`: what a user typed for a shard folder becomes a Path or a URL string, or one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from zss.errors import ZssError
from zss.formats.storage import location


@pytest.mark.parametrize("text, expected", [
    ("runs/shards", Path("runs/shards")), ("C:/data/shards", Path("C:/data/shards")),
    ("file:///tmp/shards", Path("/tmp/shards")), ("weird:name", Path("weird:name")),
    ("memory://zss/shards", "memory://zss/shards"), (Path("s3:/kept/as/typed"), Path("s3:/kept/as/typed"))])
def test_paths_stay_paths_and_urls_stay_strings(text, expected):
    got = location(text)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("text, message", [
    ("s3:/zss/shards", "malformed URL 's3:/zss/shards': write s3://BUCKET/PATH (two slashes after 's3:')"),
    ("gs:bucket/x", "malformed URL 'gs:bucket/x': write gs://BUCKET/PATH"),
    ("s3:///shards", "malformed URL 's3:///shards': no bucket name"),
    ("nosuch://b/x", "unknown URL scheme 'nosuch' in 'nosuch://b/x'")])
def test_bad_urls_are_one_line(text, message):
    with pytest.raises(ZssError) as err:
        location(text)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
