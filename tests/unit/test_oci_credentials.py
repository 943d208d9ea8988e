"""Registry credentials files: one `user:password` line, readable by its owner only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantry.artifacts import oci


def _file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "registry-login"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_file_gives_the_user_and_password_and_never_shows_the_password(
    tmp_path: Path,
) -> None:
    found = oci.credentials_from_file(_file(tmp_path, "ci-pusher:pa:ss:word\n"))
    assert found == oci.Credentials("ci-pusher", "pa:ss:word")  # split at the first colon
    assert "pa:ss:word" not in repr(found)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_file_others_can_read_is_refused_with_the_chmod_fix(tmp_path: Path, mode: int) -> None:
    path = _file(tmp_path, "u:p\n", mode)
    with pytest.raises(oci.RegistryError, match="can be read by others") as refused:
        oci.credentials_from_file(path)
    assert str(path) in str(refused.value) and refused.value.fix == f"chmod 600 {path}"


@pytest.mark.parametrize("text", ["", "just-a-user\n", ":password\n", "user:\n", "a:b\nc:d\n"])
def test_anything_but_one_user_password_line_is_refused_without_echoing_it(
    tmp_path: Path, text: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(oci.RegistryError, match="does not hold one `user:password` line") as e:
        oci.credentials_from_file(path)
    assert str(path) in str(e.value)
    assert "password\n" not in str(e.value) and "c:d" not in str(e.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(oci.RegistryError, match="cannot read the registry credentials file"):
        oci.credentials_from_file(tmp_path / "absent")


def test_registry_local_without_the_local_platform_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenantry.spec import models

    spec = models.OciArtifacts(kind="oci", registry="local")
    # As the local platform registers it, but finding no registry running; restored after.
    monkeypatch.setitem(oci._resolvers, oci.LOCAL, lambda: None)
    with pytest.raises(oci.RegistryError, match="the local registry is not running") as e:
        oci.connect(spec, root=tmp_path)
    assert "tenantry up" in (e.value.fix or "")
