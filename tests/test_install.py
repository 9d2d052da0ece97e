"""Issue 8, flashing a kiosk: the systemd units, the example kiosk config and firmware-config/install.sh.

* the units pass `systemd-analyze verify` (on a copy whose only change is the venv path prefix, rewritten to
  this test venv so that the ExecStart binaries exist) and keep their supervision/sandbox contract;
* every shell script in the repository passes shellcheck;
* install.sh into a throwaway DESTDIR: a second run leaves a byte-identical tree, an edited config survives,
  a changed shipped config arrives as config.yaml.new, --uninstall keeps config and state, and nothing in
  DESTDIR mode calls systemctl or udevadm.

The install tests use --skip-pip --skip-assets (no network, little CPU): the venv is a real `python -m venv
--without-pip`, everything else install.sh writes is the real thing. The bundle is a small stand-in, because
install.sh copies bundles verbatim and reads only their model_id (the sha256 check of an installed bundle
needs the package inside the venv, which --skip-pip leaves out).

`unit_exec_and_env(path)` parses a unit's ExecStart= and Environment= the way systemd does (for the
constructs the units use), so that a test can start the daemon exactly as the unit starts it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from conftest import BIN, ROOT, run_cli

INSTALL = ROOT / "firmware-config" / "install.sh"
EXAMPLE = ROOT / "firmware-config" / "kiosk.example.yaml"
UDEV_RULES = ROOT / "firmware-config" / "udev" / "99-coral-edgetpu.rules"
UNIT_DIR = ROOT / "systemd"
MAIN_UNIT = UNIT_DIR / "maskwatch.service"
ENGINE_UNIT = UNIT_DIR / "maskwatch-build-engine.service"
UNITS = (MAIN_UNIT, ENGINE_UNIT)
UNIT_PREFIX = "/opt/maskwatch"
VENV_ROOT = BIN.parent  # the venv running these tests: its bin/edge-maskd is real
MODEL_ID = "kiosk-test-model-1"


# -- unit file parsing (reusable) ------------------------------------------------------------------------
def unit_entries(path) -> List[Tuple[str, str, str]]:
    """(section, key, value) for every assignment of a unit file, in order.

    Comment and empty lines are dropped; lines ending in a backslash are joined with the next (systemd
    replaces the backslash-newline by a space).
    """
    entries: List[Tuple[str, str, str]] = []
    section, pending = "", ""
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep:
            entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(path, key: str, section: str = "Service") -> List[str]:
    """Every value assigned to `key` in `section`, after systemd's rule that an empty assignment resets it."""
    values: List[str] = []
    for sec, k, v in unit_entries(path):
        if sec == section and k == key:
            values = [] if v == "" else values + [v]
    return values


def unit_value(path, key: str, section: str = "Service") -> Optional[str]:
    values = unit_values(path, key, section)
    return values[-1] if values else None


def _specifiers(text: str) -> str:
    """Resolve the only specifier these units may use, %%; refuse the others rather than guess them."""
    found = re.findall(r"%(.)", text.replace("%%", ""))
    if found:
        raise ValueError(
            "unit uses specifier(s) %s, which unit_exec_and_env does not resolve: %r"
            % (", ".join("%" + c for c in found), text)
        )
    return text.replace("%%", "%")


def unit_exec_and_env(path) -> Tuple[List[str], Dict[str, str]]:
    """The argv of a unit's ExecStart= and the variables its Environment= lines set.

    Follows systemd for what the maskwatch units use: continuation lines, systemd's quoting (the same as
    shell words for these lines), several assignments per Environment= line, later assignments overriding
    earlier ones, an empty assignment resetting the list, and the ExecStart= prefixes "-", ":", "+", "!"
    and "!!", which change how systemd runs the command but not the command. Raises ValueError for what it
    does not implement: the "@" prefix, $VARIABLE expansion in ExecStart=, specifiers other than %%, and a
    unit with no or several ExecStart= commands.

    EnvironmentFile= is not read (the unit's is optional and absent on a test machine). systemd itself
    adds variables the daemon depends on: NOTIFY_SOCKET, WATCHDOG_USEC/WATCHDOG_PID (from WatchdogSec=),
    STATE_DIRECTORY (StateDirectory=), CONFIGURATION_DIRECTORY and CREDENTIALS_DIRECTORY; a test that starts
    the daemon "as the unit does" has to provide those it needs.
    """
    commands = unit_values(path, "ExecStart")
    if len(commands) != 1:
        raise ValueError("%s: expected one ExecStart= command, found %d" % (path, len(commands)))
    cmd = _specifiers(commands[0])
    m = re.match(r"^([-@:+!]*)(.*)$", cmd)
    prefixes, cmd = m.group(1), m.group(2)
    if "@" in prefixes:
        raise ValueError("%s: the ExecStart= prefix '@' (custom argv[0]) is not supported" % path)
    if "$" in cmd:
        raise ValueError("%s: $VARIABLE expansion in ExecStart= is not supported: %r" % (path, cmd))
    argv = shlex.split(cmd)
    env: Dict[str, str] = {}
    for line in unit_values(path, "Environment"):
        for word in shlex.split(_specifiers(line)):
            name, sep, value = word.partition("=")
            if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError("%s: bad Environment= assignment %r" % (path, word))
            env[name] = value
    return argv, env


def rewrite_prefix(text: str, new_venv: Path) -> str:
    """The unit with only the venv path prefix changed (so `systemd-analyze verify` finds the binaries)."""
    return text.replace(UNIT_PREFIX + "/venv", str(new_venv))


# -- helpers: the installer in a DESTDIR -------------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> Dict[str, tuple]:
    """Every entry under root: directories and files with their mode (files with their sha256), symlinks
    with their target. mtimes are left out on purpose."""
    out: Dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(stat.S_IMODE(st.st_mode)))
            else:
                out[rel] = ("file", oct(stat.S_IMODE(st.st_mode)), sha256(p))
    return out


def diff_snapshots(a: Dict[str, tuple], b: Dict[str, tuple]) -> List[str]:
    return ["%s: %s -> %s" % (k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A stand-in model bundle: a manifest with a model_id and a model file (see the module docstring)."""
    d = tmp_path / "bundle"
    d.mkdir()
    model = os.urandom(4096)
    (d / "model_int8.tflite").write_bytes(model)
    (d / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "model_id": MODEL_ID,
                "labels": ["with_mask", "without_mask"],
                "files": {"model_int8.tflite": {"sha256": hashlib.sha256(model).hexdigest(), "size": len(model)}},
            },
            indent=1,
        )
    )
    return d


class Installer:
    """Runs install.sh into one DESTDIR with systemctl/udevadm stubs first on PATH that log any call."""

    def __init__(self, tmp_path: Path, bundle: Path) -> None:
        self.destdir = tmp_path / "root"
        self.bundle = bundle
        stubs = tmp_path / "stubs"
        stubs.mkdir()
        self.calls = tmp_path / "stub-calls.log"
        for tool in ("systemctl", "udevadm"):
            stub = stubs / tool
            stub.write_text('#!/bin/sh\necho "%s $*" >> "%s"\n' % (tool, self.calls))
            stub.chmod(0o755)
        self.env = dict(os.environ, PATH="%s:%s" % (stubs, os.environ.get("PATH", "/usr/bin:/bin")))

    def __call__(self, *args: str, check: bool = True, light: bool = True) -> subprocess.CompletedProcess:
        cmd = ["bash", str(INSTALL), "--destdir", str(self.destdir), "--python", sys.executable]
        if light:
            cmd += ["--skip-pip", "--skip-assets", "--models", str(self.bundle)]
        proc = subprocess.run(
            cmd + list(args), capture_output=True, text=True, env=self.env, timeout=120, cwd=str(ROOT)
        )
        if check:
            assert proc.returncode == 0, "install.sh %s failed (%d):\n%s%s" % (
                " ".join(args),
                proc.returncode,
                proc.stdout,
                proc.stderr,
            )
        return proc

    def path(self, rel: str) -> Path:
        return self.destdir / rel.lstrip("/")

    def stub_calls(self) -> str:
        return self.calls.read_text() if self.calls.exists() else ""


@pytest.fixture
def installer(tmp_path, bundle) -> Installer:
    return Installer(tmp_path, bundle)


def require(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(
            "%s is not installed (apt-get install %s); .ci/run installs it"
            % (tool, {"systemd-analyze": "systemd"}.get(tool, tool))
        )
    return exe


# -- the units -----------------------------------------------------------------------------------------------
def test_unit_exec_and_env_reads_the_daemon_command():
    argv, env = unit_exec_and_env(MAIN_UNIT)
    assert argv == [UNIT_PREFIX + "/venv/bin/edge-maskd", "run", "--config", "/etc/maskwatch/config.yaml"]
    assert env["MASKWATCH_BUNDLE"] == UNIT_PREFIX + "/models/default"
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONFAULTHANDLER"] == "1"
    argv, env = unit_exec_and_env(ENGINE_UNIT)
    assert argv[1:] == ["build-engine", "--config", "/etc/maskwatch/config.yaml", "--precision", "fp16"]
    assert env["MASKWATCH_BUNDLE"] == UNIT_PREFIX + "/models/default"


def test_unit_exec_and_env_follows_systemd_syntax(tmp_path):
    unit = tmp_path / "x.service"
    unit.write_text(
        "[Unit]\nDescription=x\n[Service]\n"
        'Environment=A=1 "B=two words"\n'
        "Environment=A=3\n"
        "# Environment=C=commented\n"
        "ExecStart=\n"
        "ExecStart=-/usr/bin/prog --flag \\\n"
        "    'quoted arg' 100%%\n"
    )
    argv, env = unit_exec_and_env(unit)
    assert argv == ["/usr/bin/prog", "--flag", "quoted arg", "100%"]
    assert env == {"A": "3", "B": "two words"}
    unit.write_text("[Service]\nEnvironment=\nExecStart=/bin/x %n\n")
    with pytest.raises(ValueError, match="%n"):
        unit_exec_and_env(unit)


def test_main_unit_keeps_the_supervision_and_sandbox_contract():
    u = MAIN_UNIT
    expect = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "DynamicUser": "yes",
        "ConfigurationDirectory": "maskwatch",
        "StateDirectory": "maskwatch",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "DevicePolicy": "closed",
        "LockPersonality": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "LoadCredential": "mqtt-password:/etc/maskwatch/mqtt-password",
    }
    got = {k: unit_value(u, k) for k in expect}
    assert got == expect
    assert "78" in unit_value(u, "RestartPreventExitStatus").split()
    assert "video" in unit_value(u, "SupplementaryGroups").split()
    assert unit_values(u, "ExecStartPre") == [
        UNIT_PREFIX + "/venv/bin/edge-maskd check-config /etc/maskwatch/config.yaml"
    ]
    allowed = unit_values(u, "DeviceAllow")
    for dev in (
        "char-video4linux rw",
        "char-usb_device rw",
        "/dev/apex_0 rw",
        "/dev/nvmap rw",
        "/dev/nvhost-ctrl-gpu rw",
        "char-nvidia* rw",
    ):
        assert dev in allowed
    assert unit_value(u, "MemoryDenyWriteExecute") is None  # CUDA/TensorRT JIT: see the unit's comment
    assert unit_value(u, "PrivateDevices") is None  # would hide the cameras and accelerators
    assert unit_value(u, "WantedBy", "Install") == "multi-user.target"


def test_engine_unit_runs_once_before_the_daemon_as_the_same_user():
    u = ENGINE_UNIT
    assert unit_value(u, "Type") == "oneshot"
    assert unit_value(u, "Before", "Unit") == "maskwatch.service"
    assert unit_value(u, "ConditionPathExists", "Unit") == "!/var/lib/maskwatch/engines/@MODEL_ID@-fp16.engine"
    for key in ("User", "DynamicUser", "StateDirectory", "ConfigurationDirectory", "SupplementaryGroups"):
        assert unit_value(u, key) == unit_value(MAIN_UNIT, key), key


def test_engine_condition_names_the_file_build_engine_writes():
    """The condition must track edge.pipeline.engine_path(), which `build-engine --precision fp16` writes."""
    from edge.config import build
    from edge.pipeline import engine_path

    cond = unit_value(ENGINE_UNIT, "ConditionPathExists", "Unit").lstrip("!")
    assert cond == str(
        engine_path(build({"state_dir": "/var/lib/maskwatch", "source": {"url": "x"}}), "@MODEL_ID@", "fp16")
    )


def test_units_pass_systemd_analyze_verify(tmp_path):
    exe = require("systemd-analyze")
    copies = []
    for unit in UNITS:
        text = unit.read_text()
        copy = tmp_path / unit.name  # same file name: systemd derives the unit name from it
        copy.write_text(rewrite_prefix(text, VENV_ROOT))
        changed = [(a, b) for a, b in zip(text.splitlines(), copy.read_text().splitlines()) if a != b]
        assert changed and all(UNIT_PREFIX + "/venv" in a for a, _ in changed)  # only the prefix moved
        copies.append(str(copy))
    assert (VENV_ROOT / "bin" / "edge-maskd").exists()
    proc = subprocess.run([exe, "verify", "--man=no"] + copies, capture_output=True, text=True, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    ours = [line for line in output.splitlines() if "maskwatch" in line]
    assert not ours, "systemd-analyze verify warns:\n" + "\n".join(ours)


def test_main_unit_exposure_stays_low(tmp_path):
    """`systemd-analyze security` scores the sandbox (0 safe .. 10 exposed); the unit scores about 1.6."""
    exe = require("systemd-analyze")
    copy = tmp_path / MAIN_UNIT.name
    copy.write_text(rewrite_prefix(MAIN_UNIT.read_text(), VENV_ROOT))
    proc = subprocess.run(
        [exe, "security", "--offline=yes", "--threshold=25", str(copy)], capture_output=True, text=True, timeout=60
    )
    if "--offline" in proc.stderr and "unrecognized" in proc.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    assert proc.returncode == 0, "exposure above 2.5:\n" + proc.stdout[-3000:] + proc.stderr


def test_shellcheck_passes_on_every_script():
    exe = require("shellcheck")
    skip = {".git", ".venv", "venv", "node_modules", "work", "build", "dist", "__pycache__"}
    scripts = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        scripts += [str(Path(dirpath) / f) for f in sorted(filenames) if f.endswith(".sh")]
    assert str(INSTALL) in scripts
    # -x -P SCRIPTDIR: follow `source`d helpers relative to each script, as they are found at run time.
    proc = subprocess.run([exe, "-x", "-P", "SCRIPTDIR"] + scripts, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the example kiosk config --------------------------------------------------------------------------------
def test_example_config_passes_check_config():
    proc = run_cli(["edge-maskd", "check-config", EXAMPLE], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def _leaves(schema: Dict, path: Tuple[str, ...] = ()):
    for key, spec in schema.items():
        if isinstance(spec, dict):
            yield from _leaves(spec, path + (key,))
        else:
            yield path + (key,)


def test_example_config_documents_every_schema_key():
    """Every section is present, and every key is either set or shown commented out (`# key:`)."""
    import yaml

    from edge.config import SCHEMA

    text = EXAMPLE.read_text()
    cfg = yaml.safe_load(text)
    sections = [k for k, v in SCHEMA.items() if isinstance(v, dict)]
    assert all(isinstance(cfg.get(s), dict) for s in sections), sections
    assert isinstance(cfg["mqtt"].get("tls"), dict)
    missing = []
    for path in _leaves(SCHEMA):
        node = cfg
        for part in path[:-1]:
            node = node.get(part) or {}
        if path[-1] not in node and not re.search(r"^\s*#\s*%s:" % re.escape(path[-1]), text, re.M):
            missing.append(".".join(path))
    assert not missing, "kiosk.example.yaml does not mention: %s" % ", ".join(missing)


def test_example_watchdog_stall_is_shorter_than_the_unit_watchdog():
    from edge.config import load_config

    stall = load_config(EXAMPLE).watchdog.stall_s
    assert stall < float(unit_value(MAIN_UNIT, "WatchdogSec"))


# -- install.sh ----------------------------------------------------------------------------------------------
def test_install_twice_gives_the_same_tree_and_keeps_an_edited_config(installer, bundle, tmp_path):
    first = installer()
    tree1 = snapshot(installer.destdir)
    installer()
    tree2 = snapshot(installer.destdir)
    assert tree1 == tree2, "second run changed:\n" + "\n".join(diff_snapshots(tree1, tree2))

    # what the first run wrote
    config = installer.path("/etc/maskwatch/config.yaml")
    assert config.read_bytes() == EXAMPLE.read_bytes()
    assert "installed /etc/maskwatch/config.yaml" in first.stdout
    password = installer.path("/etc/maskwatch/mqtt-password")
    assert password.stat().st_size == 0 and stat.S_IMODE(password.stat().st_mode) == 0o600
    assert installer.path("/opt/maskwatch/venv/pyvenv.cfg").exists()
    assert os.access(installer.path("/opt/maskwatch/venv/bin/python"), os.X_OK)
    for f in bundle.iterdir():
        assert sha256(installer.path("/opt/maskwatch/models/default") / f.name) == sha256(f)
    main = installer.path("/etc/systemd/system/maskwatch.service")
    assert main.read_text() == MAIN_UNIT.read_text()
    engine = installer.path("/etc/systemd/system/maskwatch-build-engine.service")
    assert engine.read_text() == ENGINE_UNIT.read_text().replace("@MODEL_ID@", MODEL_ID)
    assert unit_value(engine, "ConditionPathExists", "Unit") == "!/var/lib/maskwatch/engines/%s-fp16.engine" % MODEL_ID
    assert installer.path("/opt/maskwatch/share/doc/flashing-a-kiosk.md").exists()
    assert installer.path("/opt/maskwatch/share/doc/platforms/jetson.md").exists()
    # nothing installed refers to the staging directory (venv scripts and pyvenv.cfg are rewritten)
    leaks = [
        rel
        for rel, entry in tree1.items()
        if entry[0] == "file" and str(installer.destdir).encode() in installer.path(rel).read_bytes()
    ]
    assert not leaks, leaks
    assert not installer.path("/etc/udev/rules.d/99-coral-edgetpu.rules").exists()  # only with --coral
    assert installer.stub_calls() == "", "DESTDIR mode must not call systemctl/udevadm"

    # the kiosk's config is edited on site: a rerun keeps it and, the example being unchanged, adds nothing
    edited = config.read_text().replace("site: hq ", "site: lobby-east ", 1)
    assert edited != config.read_text()
    config.write_text(edited)
    again = installer()
    assert config.read_text() == edited
    assert not installer.path("/etc/maskwatch/config.yaml.new").exists()
    assert "kept your /etc/maskwatch/config.yaml" in again.stdout

    # a newer release ships a changed example: the edit still survives, the new example waits beside it
    changed = tmp_path / "kiosk.example.yaml"
    changed.write_text(EXAMPLE.read_text() + "# a newer release's example\n")
    assert changed.read_text() != EXAMPLE.read_text()
    upgrade = installer("--config", str(changed))
    assert config.read_text() == edited
    new = installer.path("/etc/maskwatch/config.yaml.new")
    assert new.read_bytes() == changed.read_bytes()
    assert "config.yaml.new" in upgrade.stdout
    tree3 = snapshot(installer.destdir)
    installer("--config", str(changed))
    tree4 = snapshot(installer.destdir)
    assert tree3 == tree4, "rerun changed:\n" + "\n".join(diff_snapshots(tree3, tree4))
    assert installer.stub_calls() == ""


def test_installed_units_verify_and_follow_the_prefix(installer, tmp_path):
    installer("--prefix", "/srv/kiosk/maskwatch", "--coral")
    unit = installer.path("/etc/systemd/system/maskwatch.service")
    argv, env = unit_exec_and_env(unit)
    assert argv[0] == "/srv/kiosk/maskwatch/venv/bin/edge-maskd"
    assert env["MASKWATCH_BUNDLE"] == "/srv/kiosk/maskwatch/models/default"
    assert UNIT_PREFIX not in unit.read_text()
    assert installer.path("/srv/kiosk/maskwatch/venv/pyvenv.cfg").exists()
    rules = installer.path("/etc/udev/rules.d/99-coral-edgetpu.rules")
    assert rules.read_bytes() == UDEV_RULES.read_bytes()
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); .ci/run installs it")
    copies = []
    for name in ("maskwatch.service", "maskwatch-build-engine.service"):
        copy = tmp_path / "verify" / name
        copy.parent.mkdir(exist_ok=True)
        text = installer.path("/etc/systemd/system/" + name).read_text()
        copy.write_text(text.replace("/srv/kiosk/maskwatch/venv", str(VENV_ROOT)))
        copies.append(str(copy))
    proc = subprocess.run([exe, "verify", "--man=no"] + copies, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "maskwatch" not in proc.stderr, proc.stdout + proc.stderr


def test_uninstall_removes_units_and_venv_but_keeps_config_and_state(installer):
    installer("--coral")
    config = installer.path("/etc/maskwatch/config.yaml")
    config.write_text(config.read_text() + "# edited on site\n")
    password = installer.path("/etc/maskwatch/mqtt-password")
    password.write_text("s3cret\n")
    state = installer.path("/var/lib/maskwatch")
    (state / "assets").mkdir(parents=True)
    (state / "spool.db").write_bytes(b"events not yet delivered")
    dropin = installer.path("/etc/systemd/system/maskwatch.service.d/override.conf")
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nDeviceAllow=/dev/nvhost-isp rw\n")

    out = installer("--uninstall", light=False).stdout
    for unit in ("maskwatch.service", "maskwatch-build-engine.service"):
        assert not installer.path("/etc/systemd/system/" + unit).exists()
    assert not installer.path("/opt/maskwatch/venv").exists()
    assert not installer.path("/opt/maskwatch").exists()
    assert not installer.path("/etc/udev/rules.d/99-coral-edgetpu.rules").exists()
    assert config.read_text().endswith("# edited on site\n")
    assert password.read_text() == "s3cret\n"
    assert (state / "spool.db").read_bytes() == b"events not yet delivered"
    assert dropin.exists()  # local configuration, like /etc/maskwatch
    assert "kept" in out
    installer("--uninstall", light=False)  # nothing left to remove: still fine

    installer("--uninstall", "--purge", light=False)
    assert not installer.path("/etc/maskwatch").exists()
    assert not state.exists()
    assert not dropin.parent.exists()
    assert installer.stub_calls() == ""


def test_uninstall_leaves_files_it_did_not_install(installer):
    installer()
    foreign = installer.path("/opt/maskwatch/notes.txt")
    foreign.write_text("not maskwatch's\n")
    proc = installer("--uninstall", light=False)
    assert foreign.read_text() == "not maskwatch's\n"
    assert not installer.path("/opt/maskwatch/venv").exists()
    assert "did not install" in proc.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--prefix", "/usr"], "would mix maskwatch with the system"),
        (["--prefix", "relative/dir"], "absolute path"),
        (["--prefix", "/opt/mask watch"], "may only use"),
        (["--config", "/nonexistent/kiosk.yaml"], "no such file"),
        (["--purge"], "--purge goes with --uninstall"),
        (["--bogus"], "unknown option"),
    ],
)
def test_install_refuses_bad_options(installer, args, needle):
    proc = installer(*args, check=False)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert not installer.path("/etc/systemd/system/maskwatch.service").exists()


def test_install_needs_a_bundle_and_the_package_for_assets(installer, tmp_path):
    empty = tmp_path / "no-bundle"
    empty.mkdir()
    proc = installer("--skip-pip", "--skip-assets", "--models", str(empty), light=False, check=False)
    assert proc.returncode != 0 and "no model bundle" in proc.stderr
    proc = installer("--skip-pip", "--models", str(installer.bundle), light=False, check=False)
    assert proc.returncode != 0 and "--skip-assets" in proc.stderr
