"""`zss.cli.main` hands typer's exit code to the shell (130 on Ctrl-C), and -q / -v are global."""

from __future__ import annotations

import logging

import zss.commands.train as train_cmd
from zss.cli import main


def test_ctrl_c_exit_code_reaches_the_caller(monkeypatch, tmp_path):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cmd, "run_training", interrupted)
    assert main(["train", "simzss", str(tmp_path), str(tmp_path / "run"), "--steps", "1"]) == 130


def test_global_log_options(monkeypatch, tmp_path):
    monkeypatch.setattr(train_cmd, "run_training", lambda **kwargs: "ok")
    try:
        assert main(["-q", "train", "simzss", str(tmp_path), str(tmp_path / "r")]) == 0
        assert logging.getLogger("zss").level == logging.WARNING
        assert main(["-v", "train", "simzss", str(tmp_path), str(tmp_path / "r")]) == 0
        assert logging.getLogger("zss").level == logging.DEBUG
        assert main(["train", "simzss", str(tmp_path), str(tmp_path / "r")]) == 0
        assert logging.getLogger("zss").level == logging.INFO
    finally:
        logging.getLogger("zss").setLevel(logging.NOTSET)
