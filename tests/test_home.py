"""The home directory keeps one identity per home: created once, private, never overwritten."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from darwin.home import IDENTITY_FILE, load_identity, load_or_create_identity, save_identity
from darwin.protocol import Identity, IdentityFileError

SEED = bytes(range(32))


def test_save_then_load_gives_the_same_identity_in_a_file_of_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    identity = Identity.from_seed(SEED)
    save_identity(identity, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path) == identity


def test_save_never_overwrites_an_identity(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    with pytest.raises(FileExistsError):
        save_identity(Identity.generate(), path)
    assert load_identity(path).seed == SEED


def test_load_refuses_a_malformed_file_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"darwin/identity/1 ed25519 " + SEED.hex().encode() + b"\n" + b"x" * 300)
    path.chmod(0o600)
    with pytest.raises(IdentityFileError, match=f"identity file {path} is malformed"):
        load_identity(path)


def test_load_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    save_identity(Identity.from_seed(SEED), path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityFileError, match="chmod 600"):
        load_identity(path)


def test_load_of_a_missing_file_is_an_identity_file_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityFileError, match="cannot read"):
        load_identity(tmp_path / "absent.key")


def test_a_home_creates_its_identity_once_in_a_private_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = load_or_create_identity(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert load_or_create_identity(home) == first == load_identity(home / IDENTITY_FILE)
