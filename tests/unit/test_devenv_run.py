"""`./dev run` (tools/devenv.py) talks to a newcomer: each install step says what it installs and how long it took,
and "open http://..." comes only once ComfyUI answers (issue 32, point 6). ComfyUI is a stand-in script here."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
from pathlib import Path

import pytest
from harness.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]

# Answers /system_stats with 503 until the file `ready` exists in its folder, then 200 once, and exits.
FAKE_MAIN = '''
import http.server, sys, threading
from pathlib import Path
port = int(sys.argv[sys.argv.index("--port") + 1])
here = Path(__file__).parent
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        (here / "polled").touch()
        ok = self.path == "/system_stats" and (here / "ready").exists()
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"{}")
        if ok:
            threading.Thread(target=server.shutdown).start()
server = http.server.HTTPServer(("127.0.0.1", port), H)
print("fake ComfyUI listening", flush=True)
server.serve_forever()
'''


@pytest.fixture
def devenv(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("devenv_under_test", ROOT / "tools" / "devenv.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "DEV", tmp_path / ".dev")
    monkeypatch.setattr(mod, "POLL_S", 0.02)
    return mod


def stand_in(devenv, monkeypatch, tmp_path: Path, script: str) -> Path:
    """ComfyUI's folder with `script` run in ComfyUI's place, with ComfyUI's arguments."""
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "stand_in.py").write_text(script)
    monkeypatch.setattr(devenv, "ensure_comfyui", lambda: comfy)
    monkeypatch.setattr(devenv, "ensure_venv", lambda _comfy: None)
    real = devenv.comfyui_command
    monkeypatch.setattr(devenv, "comfyui_command", lambda *a: [sys.executable, comfy / "stand_in.py", *real(*a)[2:]])
    return comfy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_says_open_only_once_comfyui_answers(devenv, monkeypatch, tmp_path, capsys):
    comfy = stand_in(devenv, monkeypatch, tmp_path, FAKE_MAIN)
    port = free_port()
    monkeypatch.setenv("PORT", str(port))
    out: list[str] = []

    def said() -> str:
        out.append(capsys.readouterr().out)
        return "".join(out)

    runner = threading.Thread(target=devenv.cmd_run, args=([],), daemon=True)
    runner.start()
    try:
        wait_for(lambda: (comfy / "polled").exists(), what="the server asked whether it answers")
        assert "[dev] open http" not in said()  # it listens, but does not answer yet
        (comfy / "ready").touch()
        wait_for(lambda: f"[dev] open http://127.0.0.1:{port}" in said(), what="the open line")
    finally:  # the stand-in exits once it answered
        (comfy / "ready").touch()
        runner.join(timeout=60)
    assert not runner.is_alive()
    text = said()
    assert "IMPORT FAILED" in text and "torchaudio" in text  # the audio nodes' failure is announced as expected
    assert text.index("starting ComfyUI") < text.index("[dev] open http")


def test_run_does_not_say_open_when_comfyui_exits_first(devenv, monkeypatch, tmp_path, capsys):
    stand_in(devenv, monkeypatch, tmp_path, "import sys; sys.exit(3)\n")
    monkeypatch.setenv("PORT", str(free_port()))
    with pytest.raises(SystemExit) as exit_:
        devenv.cmd_run([])
    assert exit_.value.code == 3
    assert "[dev] open http" not in capsys.readouterr().out


def test_an_install_step_says_what_it_installs_while_it_runs_and_how_long_it_took(devenv, capsys):
    out: list[str] = []

    def said() -> str:
        out.append(capsys.readouterr().out)
        return "".join(out)

    with devenv.step("installing torch", tick_s=0.01):
        assert "[dev] installing torch ..." in said()
        wait_for(lambda: "still installing torch:" in said(), what="a progress line while the step runs")
    text = said()
    assert "done in" in text and text.rstrip().endswith("installing torch")
