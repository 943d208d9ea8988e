"""Build the images the real local nodes need, cache them, import them with ``ctr``.

No image registry is reachable, so each image is a static Go program from
``images/go`` (standard library only) compiled with the Go toolchain the tool build
already needs, packed as an OCI layout (`tenantry.images.oci`) and kept in
`tenantry.paths.images_dir`. A second build with the same sources and Go finds the
archive there; the image's tag is its content digest, so a changed program is a new
image name and never a stale one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tenantry import errors, paths
from tenantry.images import oci

GO_SOURCES = Path(__file__).parent / "go"
REGISTRY = "tenantry.local"
# Where the app listens in its container (the pod's own network namespace).
APP_PORT = 8080

_GO_BUILD_TIMEOUT_S = 300.0
_CTR_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Image:
    """A built image: its reference and the OCI archive on disk."""

    ref: str
    archive: Path


def _goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _source_digest(program: str) -> str:
    digest = hashlib.sha256()
    for path in sorted([GO_SOURCES / "go.mod", *(GO_SOURCES / program).glob("*.go")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _compile(program: str) -> bytes:
    """The static binary of ``images/go/<program>``."""
    with tempfile.TemporaryDirectory(prefix="tenantry-image-") as tmp:
        out = Path(tmp) / program
        env = dict(os.environ, CGO_ENABLED="0", GOOS="linux", GOARCH=_goarch())
        argv = ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), f"./{program}"]
        try:
            done = subprocess.run(
                argv, cwd=GO_SOURCES, env=env, capture_output=True, text=True,
                timeout=_GO_BUILD_TIMEOUT_S, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            raise errors.ToolError(
                f"could not build the {program} image's program: {e}",
                fix="install Go 1.26 or newer (`apt-get install golang`)",
            ) from e
        if done.returncode != 0:
            raise errors.ToolError(
                f"`go build ./{program}` in {GO_SOURCES} failed:\n{done.stderr.strip()}",
                fix="fix the program's source; it uses the standard library only",
            )
        return out.read_bytes()


def _spec(program: str, binary: bytes) -> oci.ImageSpec:
    files = {f"/{program}": oci.File(binary, mode=0o755)}
    entrypoint = [f"/{program}"]
    tag = oci.content_tag(files, entrypoint)
    if program == "app":
        return oci.ImageSpec(
            name=f"{REGISTRY}/app:{tag}", files=files, entrypoint=entrypoint,
            env=[f"PORT={APP_PORT}"], architecture=_goarch(), exposed_ports=(APP_PORT,),
        )  # fmt: skip
    return oci.ImageSpec(
        name=f"{REGISTRY}/{program}:{tag}", files=files, entrypoint=entrypoint,
        architecture=_goarch(),
    )  # fmt: skip


def build(program: str) -> Image:
    """The image of ``images/go/<program>`` (``pause`` or ``app``), built once and cached."""
    if not (GO_SOURCES / program).is_dir():
        raise errors.UsageError(f"no image program {program!r} in {GO_SOURCES}")
    cache = paths.images_dir()
    key = f"{program}-{_source_digest(program)}-{_goarch()}"
    archive, ref_file = cache / f"{key}.tar", cache / f"{key}.ref"
    if archive.exists() and ref_file.exists():
        return Image(ref=ref_file.read_text().strip(), archive=archive)
    spec = _spec(program, _compile(program))
    _write_atomically(archive, oci.archive(spec))
    _write_atomically(ref_file, spec.name.encode() + b"\n")
    return Image(ref=spec.name, archive=archive)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write then rename: a concurrent or interrupted build never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)


def service(ref: str) -> Image:
    """The app image of one service version, named as its chart names it.

    ``registry.acme.example/payments/api:1.4.0`` holds the app with ``APP_SERVICE=api``
    and ``APP_VERSION=1.4.0`` set, so a pod answers with the version helm deployed
    (its chart may still override them, and set ``APP_ERROR_RATE`` for a bad release).
    Built once per reference and app source; the archive is cached like the others.
    """
    repository, _, version = ref.rpartition(":")
    if not repository or "/" not in repository or not version or "@" in ref:
        raise errors.UsageError(
            f"image {ref!r} is not REGISTRY/PATH:TAG",
            fix="name a tagged image such as registry.acme.example/payments/api:1.4.0",
        )
    base = app()
    name = repository.rsplit("/", 1)[1]
    cache = paths.images_dir()
    key = hashlib.sha256(f"{base.ref}\0{ref}".encode()).hexdigest()[:16]
    archive = cache / f"service-{key}-{_goarch()}.tar"
    if archive.exists():
        return Image(ref=ref, archive=archive)
    binary = oci.read_file(base.archive.read_bytes(), "/app")
    spec = oci.ImageSpec(
        name=ref, files={"/app": oci.File(binary, mode=0o755)}, entrypoint=["/app"],
        env=[f"PORT={APP_PORT}", f"APP_SERVICE={name}", f"APP_VERSION={version}"],
        architecture=_goarch(), exposed_ports=(APP_PORT,),
    )  # fmt: skip
    _write_atomically(archive, oci.archive(spec))
    return Image(ref=ref, archive=archive)


def pause() -> Image:
    """The sandbox image every pod of a real node starts first."""
    return build("pause")


def app() -> Image:
    """The app the example services run (``images/go/app``): HTTP on 8080, see its doc."""
    return build("app")


def import_image(ctr: Path, address: Path, image: Image, *, namespace: str = "k8s.io") -> None:
    """Import ``image`` into the containerd at ``address`` (the CRI's namespace by default),
    unless it already holds that exact manifest under that name (the usual case for a
    warm node: a check takes 15 ms, an import unpacks the image again in 150 ms)."""
    if _holds(ctr, address, image, namespace=namespace):
        return
    argv = [str(ctr), "--address", str(address), "--namespace", namespace,
            "images", "import", str(image.archive)]  # fmt: skip
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_CTR_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise errors.ClusterError(f"could not import {image.ref}: {e}") from e
    if done.returncode != 0:
        raise errors.ClusterError(
            f"`ctr images import` of {image.ref} failed: {(done.stderr or done.stdout).strip()}",
            fix=f"check containerd's log; remove {image.archive} to rebuild the image",
        )


def _holds(ctr: Path, address: Path, image: Image, *, namespace: str) -> bool:
    """Whether containerd lists ``image.ref`` with the archive's manifest digest; any
    doubt (ctr failing, an unreadable archive) answers no, and the image is imported."""
    argv = [str(ctr), "--address", str(address), "--namespace", namespace,
            "images", "ls", f"name=={image.ref}"]  # fmt: skip
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_CTR_TIMEOUT_S, check=False
        )
        digest = oci.manifest_digest(image.archive)
    except (OSError, subprocess.TimeoutExpired, KeyError, ValueError, tarfile.TarError):
        return False
    return done.returncode == 0 and listed_digest(done.stdout, image.ref) == digest


def listed_digest(ctr_ls_output: str, ref: str) -> str | None:
    """The DIGEST column of ``ref``'s row in `ctr images ls` output, if it is listed."""
    for line in ctr_ls_output.splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 3 and columns[0] == ref:
            return columns[2]
    return None
