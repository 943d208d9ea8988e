"""An OCI image layout as bytes: what `ctr images import` reads, written without a registry.

The real local nodes reach no image registry, so Tenantry packs the few images it
needs itself: one uncompressed layer (a tar of the image's files), the image config,
the manifest, ``index.json`` naming the image (``io.containerd.image.name``) and
``oci-layout``, all in one tar archive. Pure: bytes in, bytes out; the build and the
import are `tenantry.images.build`'s.

Every archive is reproducible: fixed timestamps, owners and order, so the same files
give the same digests and a cached image is recognised by its content.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
# containerd names an imported image after this annotation of the index's manifest.
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

# A user that exists in no image: the platform's policy runs containers as non-root.
NONROOT = "65532:65532"


@dataclass(frozen=True)
class File:
    """One regular file of an image's root filesystem."""

    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class ImageSpec:
    """What an image holds and how its container starts."""

    name: str  # a full reference, e.g. ``tenantry.local/app:3f2a…``
    files: Mapping[str, File]  # absolute paths in the image
    entrypoint: Sequence[str]
    env: Sequence[str] = ()
    user: str = NONROOT
    architecture: str = "amd64"
    exposed_ports: Sequence[int] = field(default_factory=tuple)


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob of the layout."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _tar(entries: Sequence[tuple[str, bytes | None, int]]) -> bytes:
    """A reproducible tar of (path, content or None for a directory, mode) entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content, mode in entries:
            info = tarfile.TarInfo(path)
            info.mode, info.mtime, info.uid, info.gid = mode, 0, 0, 0
            info.uname = info.gname = ""
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def layer(files: Mapping[str, File]) -> Blob:
    """The image's one layer: its files and every parent directory, sorted."""
    directories: set[str] = {"tmp"}  # writable scratch space for programs that want one
    entries: list[tuple[str, bytes | None, int]] = []
    for path in files:
        if not path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"image file paths must be absolute and plain: {path!r}")
        parts = path.strip("/").split("/")
        directories.update("/".join(parts[:i]) for i in range(1, len(parts)))
    entries.extend((d, None, 0o1777 if d == "tmp" else 0o755) for d in sorted(directories))
    entries.extend((p.lstrip("/"), files[p].content, files[p].mode) for p in sorted(files))
    return Blob(LAYER_MEDIA_TYPE, _tar(entries))


def config(spec: ImageSpec, layer_blob: Blob) -> Blob:
    """The image config: how to run it, and the digest of its (uncompressed) layer."""
    container: dict[str, Any] = {
        "Entrypoint": list(spec.entrypoint),
        "Env": ["PATH=/", *spec.env],
        "User": spec.user,
        "WorkingDir": "/",
    }
    if spec.exposed_ports:
        container["ExposedPorts"] = {f"{p}/tcp": {} for p in spec.exposed_ports}
    document = {
        "architecture": spec.architecture,
        "os": "linux",
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": [layer_blob.digest]},
        "history": [{"created_by": "tenantry.images", "comment": spec.name}],
    }
    return Blob(CONFIG_MEDIA_TYPE, _canonical(document))


def manifest(config_blob: Blob, layer_blob: Blob) -> Blob:
    """The image manifest: its config and layer."""
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_blob.descriptor(),
        "layers": [layer_blob.descriptor()],
    }
    return Blob(MANIFEST_MEDIA_TYPE, _canonical(document))


def index(spec: ImageSpec, manifest_blob: Blob) -> bytes:
    """``index.json``: the one manifest, named so containerd imports it under ``spec.name``."""
    tag = spec.name.rsplit(":", 1)[1] if ":" in spec.name.rsplit("/", 1)[-1] else "latest"
    descriptor = manifest_blob.descriptor(
        platform={"architecture": spec.architecture, "os": "linux"},
        annotations={NAME_ANNOTATION: spec.name, REF_ANNOTATION: tag},
    )
    return _canonical(
        {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [descriptor]}
    )


def archive(spec: ImageSpec) -> bytes:
    """The whole OCI image layout of ``spec`` as one tar, ready for `ctr images import`."""
    layer_blob = layer(spec.files)
    config_blob = config(spec, layer_blob)
    manifest_blob = manifest(config_blob, layer_blob)
    blobs = sorted({b.digest: b for b in (layer_blob, config_blob, manifest_blob)}.values(),
                   key=lambda b: b.digest)  # fmt: skip
    entries: list[tuple[str, bytes | None, int]] = [
        ("blobs", None, 0o755),
        ("blobs/sha256", None, 0o755),
        *((f"blobs/sha256/{b.digest.split(':')[1]}", b.data, 0o644) for b in blobs),
        ("index.json", index(spec, manifest_blob), 0o644),
        ("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}), 0o644),
    ]
    return _tar(entries)


def content_tag(files: Mapping[str, File], entrypoint: Sequence[str]) -> str:
    """A tag that changes whenever the image's files or entrypoint do (12 hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + oct(files[path].mode).encode() + b"\0")
        digest.update(hashlib.sha256(files[path].content).digest())
    digest.update(_canonical({"entrypoint": list(entrypoint)}))
    return digest.hexdigest()[:12]


def read_file(archive_bytes: bytes, path: str) -> bytes:
    """The content of ``path`` in the (single-layer) image of an archive `archive` wrote."""
    with tarfile.open(fileobj=io.BytesIO(archive_bytes)) as outer:
        index_doc = json.loads(_member(outer, "index.json"))
        manifest_digest = index_doc["manifests"][0]["digest"]
        manifest_doc = json.loads(_member(outer, _blob_path(manifest_digest)))
        layer_bytes = _member(outer, _blob_path(manifest_doc["layers"][0]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as layer_tar:
        return _member(layer_tar, path.lstrip("/"))


def manifest_digest(archive_path: Path) -> str:
    """The digest of the one manifest in an archive `archive` wrote (what containerd
    lists for the image once imported)."""
    with tarfile.open(archive_path) as outer:
        return str(json.loads(_member(outer, "index.json"))["manifests"][0]["digest"])


def _blob_path(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    return f"blobs/{algorithm}/{hex_digest}"


def _member(archive_tar: tarfile.TarFile, name: str) -> bytes:
    extracted = archive_tar.extractfile(name)
    if extracted is None:
        raise KeyError(name)
    return extracted.read()
