"""Build the pinned tools into the per-machine tool cache, and find them again.

The cache (`tenantry.paths.tools_dir`) holds one directory per tool and version,
``<name>-<version>/``, stamped with a fingerprint of the go.mod, go.sum, linker
flags and Go version that produced it, plus ``bin/`` with a link per binary. A
second install with nothing changed only re-checks versions; a changed pin builds
into a fresh directory and switches the links, so a failed build never leaves a
half-written tool in use. Go's own build cache (outside the repository too) makes
a rebuild after a small bump fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from tenantry import errors, paths
from tenantry.tools import catalog

FINGERPRINT_FILE = ".fingerprint"
DATA_DIR = "data"

Status = Literal["installed", "missing", "outdated"]


@dataclass(frozen=True)
class ToolState:
    """What the cache holds for one binary."""

    name: str
    tool: str
    version: str
    path: Path
    status: Status


@dataclass(frozen=True)
class BuildProgress:
    """A line of progress from a running build, for the CLI to show."""

    tool: str
    packages: int
    elapsed_s: float
    current: str


@dataclass(frozen=True)
class InstallResult:
    """How one tool ended up: built now, or already in the cache."""

    tool: str
    version: str
    action: Literal["built", "cached"]
    seconds: float
    binaries: tuple[Path, ...]


def bin_dir() -> Path:
    """The directory with a link to every installed binary (put it first on PATH)."""
    return paths.tools_dir() / "bin"


def binary(name: str) -> Path:
    """Return the installed binary ``name``, or raise `ToolMissingError` saying how to get it."""
    path = bin_dir() / name
    if not path.exists():
        tool = catalog.tool_for_binary(name)
        raise errors.ToolMissingError(
            f"{name} {tool.version} is not installed in {paths.tools_dir()}",
            fix="run `tenantry tools install` (the first build takes many minutes)",
        )
    return path


def data_file(tool: catalog.GoTool, path: str) -> Path:
    """An installed data file of ``tool`` (one of its ``data_files``)."""
    installed = _tool_dir(tool) / DATA_DIR / Path(path).name
    if not installed.exists():
        raise errors.ToolMissingError(
            f"{tool.name} {tool.version} data file {Path(path).name} is not installed",
            fix="run `tenantry tools install`",
        )
    return installed


# Generous bounds, so a stuck download or build fails `tools install` instead of hanging
# it: a cold build of Kubernetes fetches and compiles thousands of packages on 2 cores.
GO_BUILD_TIMEOUT_S = 3600.0
GO_DOWNLOAD_TIMEOUT_S = 1800.0
GO_QUERY_TIMEOUT_S = 120.0  # go env, go list: local answers
OCB_TIMEOUT_S = 600.0  # writes a few source files


def _timed_out(what: str, timeout_s: float) -> errors.ToolError:
    return errors.ToolError(
        f"`{what}` did not finish within {timeout_s:g} s",
        fix="check network access to the Go module proxy and free disk space, then run "
        "`tenantry tools install` again",
    )


def _run(
    argv: list[str],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a Go toolchain command to completion; a `ToolError` naming it if it cannot
    start or outlives ``timeout_s``. The exit code is the caller's to judge."""
    what = " ".join(argv)
    try:
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise _timed_out(what, timeout_s) from e
    except OSError as e:
        raise errors.ToolError(f"could not run `{what}`: {e}") from e


def _stream_stderr(
    argv: list[str],
    *,
    what: str,
    timeout_s: float,
    cwd: Path,
    env: dict[str, str],
    on_line: Callable[[str], None],
) -> int:
    """Run ``argv``, handing each stderr line to ``on_line`` as it comes; its exit code.

    A `ToolError` naming the command if it outlives ``timeout_s``: a timer kills it,
    since reading its stderr line by line blocks where subprocess's timeout cannot reach.
    It runs in a process group of its own, killed as one, because go's compilers and
    git inherit the pipe and would keep the read blocked after go itself is gone; so
    an interrupt here (Ctrl-C reaches only our group) kills the group too.
    """
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            process_group=0,
        )
    except OSError as e:
        raise errors.ToolError(f"could not start `{what}`: {e}") from e
    expired = threading.Event()

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def expire() -> None:
        expired.set()
        kill()

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            on_line(line.rstrip())
        code = proc.wait()
    except BaseException:
        kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
    if expired.is_set():
        raise _timed_out(what, timeout_s)
    return code


def go_version() -> str:
    """Return the version of the Go toolchain on PATH, e.g. ``go1.26.8``."""
    go = shutil.which("go")
    if go is None:
        raise errors.ToolMissingError(
            "the Go toolchain is not on PATH; Tenantry builds Kubernetes, etcd, kwok and helm "
            "from their pinned Go modules",
            fix="install Go 1.26 or newer (`apt-get install golang` or https://go.dev/dl) "
            "and run `tenantry tools install` again",
        )
    out = _run([go, "env", "GOVERSION"], timeout_s=GO_QUERY_TIMEOUT_S)
    if out.returncode != 0:
        raise errors.ToolError(f"`go env GOVERSION` failed: {out.stderr.strip()}")
    return out.stdout.strip()


def list_tools() -> list[ToolState]:
    """Report every pinned binary and whether the cache has it at the pinned version."""
    states: list[ToolState] = []
    for tool in catalog.GO_TOOLS:
        tool_dir = _tool_dir(tool)
        for b in tool.binaries:
            link = bin_dir() / b.name
            if (tool_dir / b.name).exists() and link.resolve() == (tool_dir / b.name).resolve():
                status: Status = "installed"
            elif link.exists():
                status = "outdated"
            else:
                status = "missing"
            states.append(
                ToolState(
                    name=b.name,
                    tool=tool.name,
                    version=tool.version,
                    path=tool_dir / b.name,
                    status=status,
                )
            )
    return states


def install(
    tools: tuple[catalog.GoTool, ...] = catalog.GO_TOOLS,
    *,
    on_progress: Callable[[BuildProgress], None] | None = None,
    on_start: Callable[[catalog.GoTool], None] | None = None,
) -> list[InstallResult]:
    """Build every tool that the cache lacks at its pinned version; verify each binary."""
    gover = go_version()
    bin_dir().mkdir(parents=True, exist_ok=True)
    results = []
    for tool in tools:
        started = time.monotonic()
        target = _tool_dir(tool)
        fingerprint = tool.fingerprint(gover)
        if _is_current(target, tool, fingerprint):
            action: Literal["built", "cached"] = "cached"
        else:
            if on_start:
                on_start(tool)
            _build(tool, target, fingerprint, gover, on_progress)
            action = "built"
        for b in tool.binaries:
            _verify(b, target / b.name, tool.version)
            _link(bin_dir() / b.name, target / b.name)
        results.append(
            InstallResult(
                tool=tool.name,
                version=tool.version,
                action=action,
                seconds=time.monotonic() - started,
                binaries=tuple(target / b.name for b in tool.binaries),
            )
        )
    return results


def _tool_dir(tool: catalog.GoTool) -> Path:
    return paths.tools_dir() / f"{tool.name}-{tool.version}"


def _is_current(target: Path, tool: catalog.GoTool, fingerprint: str) -> bool:
    stamp = target / FINGERPRINT_FILE
    if not stamp.exists() or stamp.read_text().strip() != fingerprint:
        return False
    return all((target / b.name).exists() for b in tool.binaries)


def _go_env(gover: str) -> dict[str, str]:
    env = dict(os.environ)
    match = re.match(r"go(\d+)\.(\d+)", gover)
    if match and (int(match.group(1)), int(match.group(2))) < catalog.MIN_GO:
        # An older local Go may fetch the required toolchain through the module proxy.
        env["GOTOOLCHAIN"] = "auto"
    env.setdefault("CGO_ENABLED", "0")
    return env


def _build(
    tool: catalog.GoTool,
    target: Path,
    fingerprint: str,
    gover: str,
    on_progress: Callable[[BuildProgress], None] | None,
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.name}-", dir=target.parent))
    try:
        if tool.binaries:
            _compile(tool, staging, gover, on_progress)
        if tool.data_files:
            _copy_data_files(tool, staging / DATA_DIR, _go_env(gover))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # never a half-written tool
        raise
    (staging / FINGERPRINT_FILE).write_text(fingerprint + "\n")
    staging.chmod(0o755)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def _compile(
    tool: catalog.GoTool,
    staging: Path,
    gover: str,
    on_progress: Callable[[BuildProgress], None] | None,
) -> None:
    cwd = tool.module_dir
    if tool.collector_manifest:
        cwd = _generate_collector(tool, staging / "src", gover)
    argv = [
        "go",
        "build",
        "-v",
        "-trimpath",
        "-mod=readonly",
        *(["-tags", ",".join(tool.tags)] if tool.tags else []),
        "-ldflags",
        tool.rendered_ldflags(),
        "-o",
        f"{staging}/{tool.binaries[0].name}" if tool.collector_manifest else f"{staging}/",
        *(b.package for b in tool.binaries),
    ]
    started = time.monotonic()
    tail: list[str] = []
    packages = 0

    def on_line(line: str) -> None:
        nonlocal tail, packages
        tail = [*tail[-19:], line]
        # `go build -v` names each package as it compiles it; anything else is an error.
        if line and " " not in line:
            packages += 1
            if on_progress:
                on_progress(BuildProgress(tool.name, packages, time.monotonic() - started, line))

    code = _stream_stderr(
        argv,
        what=f"go build of {tool.name} {tool.version} in {cwd}",
        timeout_s=GO_BUILD_TIMEOUT_S,
        cwd=cwd,
        env=_go_env(gover),
        on_line=on_line,
    )
    if code != 0:
        detail = "\n".join(tail)
        raise errors.ToolError(
            f"building {tool.name} {tool.version} failed "
            f"(go build in {tool.module_dir}):\n{detail}",
            fix="check network access to the Go module proxy and free disk space, then retry",
        )
    for b in tool.binaries:
        built = staging / catalog.go_output_name(b.package)
        if built.name != b.name and not tool.collector_manifest:
            built.rename(staging / b.name)
    shutil.rmtree(staging / "src", ignore_errors=True)


def _generate_collector(tool: catalog.GoTool, src: Path, gover: str) -> Path:
    """Have ocb write the collector's sources into ``src``, then pin them with the tool's
    own go.mod/go.sum (ocb's `go mod tidy` would re-resolve versions, and fetches test
    dependencies the build never needs)."""
    assert tool.collector_manifest
    manifest = yaml.safe_load((tool.module_dir / tool.collector_manifest).read_text())
    manifest["dist"]["output_path"] = str(src)
    src.mkdir(parents=True)
    (src / "ocb-manifest.yaml").write_text(yaml.safe_dump(manifest))
    done = _run(
        [str(binary("ocb")), "--config", str(src / "ocb-manifest.yaml"),
         "--skip-compilation", "--skip-get-modules"],
        env=_go_env(gover), timeout_s=OCB_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0:
        raise errors.ToolError(f"ocb could not generate {tool.name}: {done.stderr.strip()}")
    for name in ("go.mod", "go.sum"):
        shutil.copyfile(tool.module_dir / name, src / name)
    return src


def _copy_data_files(tool: catalog.GoTool, target: Path, env: dict[str, str]) -> None:
    # A data-only tool has not been downloaded by a build.
    _run(
        ["go", "mod", "download", tool.module], cwd=tool.module_dir, env=env,
        timeout_s=GO_DOWNLOAD_TIMEOUT_S,
    )  # fmt: skip
    done = _run(
        ["go", "list", "-m", "-f", "{{.Dir}}", tool.module],
        cwd=tool.module_dir,
        env=env,
        timeout_s=GO_QUERY_TIMEOUT_S,
    )
    source = Path(done.stdout.strip())
    if done.returncode != 0 or not source.is_dir():
        raise errors.ToolError(f"cannot find the source of {tool.module}: {done.stderr.strip()}")
    target.mkdir(parents=True)
    for path in tool.data_files:
        shutil.copyfile(source / path, target / Path(path).name)


def _verify(b: catalog.Binary, path: Path, pinned: str) -> None:
    try:
        out = subprocess.run(
            [str(path), *b.version_args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise errors.ToolError(
            f"{path} does not run: {e}", fix="run `tenantry tools install` to rebuild it"
        ) from e
    reported = catalog.parse_reported_version(b, out.stdout + out.stderr)
    if reported is None or catalog.comparable_version(reported) != catalog.comparable_version(
        pinned
    ):
        raise errors.ToolError(
            f"{b.name} at {path} reports version {reported or '(none)'}, expected {pinned}",
            fix=f"delete {path.parent} and run `tenantry tools install`",
        )


def _link(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)
