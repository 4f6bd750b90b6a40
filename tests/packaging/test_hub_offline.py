"""A hub name that cannot be fetched fails in seconds with the `NAME:/path/to/checkpoint` advice,
instead of huggingface_hub's ~48 s of retries."""

from __future__ import annotations

import socket
import time

import pytest

from zss.errors import ZssError
from zss.utils import hub


def test_reachable_probe_sees_a_listening_port_and_a_closed_one():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert hub.reachable("127.0.0.1", port, 2.0)
    with socket.socket() as s:          # a port nobody listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    start = time.perf_counter()
    assert not hub.reachable("127.0.0.1", closed, 2.0)
    assert time.perf_counter() - start < 3


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("0", False), ("", False)])
def test_hf_hub_offline_is_respected(monkeypatch, value, offline):
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub.offline_env() is offline


@pytest.fixture()
def unreachable_hub(monkeypatch, tmp_path):
    """The hub endpoint is a closed local port and the caches are empty: no network, no weights."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hub, "hub_host", lambda: "127.0.0.1")
    monkeypatch.setattr(hub, "reachable", lambda host, port=443, timeout=3.0: False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


def test_timm_hub_name_without_network_fails_fast_with_the_checkpoint_hint(unreachable_hub):
    from zss.models.backbone import create_timm_vit, load_backbone

    start = time.perf_counter()          # building the network itself (no weights) on this machine
    create_timm_vit("vit_small_patch14_dinov2", 112, None, pretrained=False)
    build = time.perf_counter() - start
    start = time.perf_counter()
    with pytest.raises(ZssError) as err:
        load_backbone("vit_small_patch14_dinov2", img_size=112)
    took = time.perf_counter() - start - build
    message = str(err.value)
    assert "\n" not in message
    assert "pass vit_small_patch14_dinov2:/path/to/checkpoint" in message
    assert "no network" in message
    assert took < 8, f"the failure took {took:.1f} s beyond building the network ({build:.1f} s)"


def test_openclip_tag_with_hf_hub_offline_fails_fast(monkeypatch, tmp_path):
    import open_clip
    from huggingface_hub import constants

    from zss.models.clip_dense import create_openclip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    start = time.perf_counter()          # building the network itself (no weights) on this machine
    open_clip.create_model("ViT-B-32", pretrained=None)
    build = time.perf_counter() - start
    start = time.perf_counter()
    with pytest.raises(ZssError, match=r"HF_HUB_OFFLINE is set\): pass openclip:ViT-B-32:/path/to/checkpoint"):
        create_openclip("ViT-B-32", None)
    assert time.perf_counter() - start - build < 8
