"""breastai.weights without a network: registry, resolution order, sha256 stamps, bundles, CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastai import weights
from breastai.errors import (
    ChecksumMismatchError,
    OutputError,
    OutputExistsError,
    WeightsError,
    WeightsNotFoundError,
)

REPO = Path(__file__).resolve().parents[1]
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private BREASTAI_HOME; no BREASTAI_WEIGHTS_FILE from the caller's environment."""
    h = tmp_path / "home"
    monkeypatch.setenv("BREASTAI_HOME", str(h))
    monkeypatch.delenv("BREASTAI_WEIGHTS_FILE", raising=False)
    return h


def _onnx_bytes(seed: int, size: int = 50_000) -> bytes:
    """Stand-in model bytes (the registry never parses ONNX)."""
    return hashlib.sha256(str(seed).encode()).digest() * (size // 32)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Point the package registry at a temporary weights.toml with real bundled demo files."""
    pkg = tmp_path / "pkg"
    (pkg / "models").mkdir(parents=True)
    files = {"demo-breast": _onnx_bytes(1), "demo-tumor": _onnx_bytes(2)}
    for name, data in files.items():
        (pkg / "models" / f"{name}.onnx").write_bytes(data)
    shipped = tomllib.loads((REPO / "weights.toml").read_text())["models"]
    text = "schema_version = 1\n" + "".join(
        weights.render_table(name, shipped[name]) for name in files
    )  # only the demo entries, so that no test can reach for a downloadable one
    (pkg / "weights.toml").write_text(text)
    monkeypatch.setattr(weights.paths, "package_weights_file", lambda: pkg / "weights.toml")
    monkeypatch.setattr(weights.paths, "bundled_models_dir", lambda: pkg / "models")
    for name, data in files.items():
        weights.update_bundled_entry(name, weights_toml=pkg / "weights.toml", sha256=_sha(data))
    return files


def _user_file(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("schema_version = 1\n" + body)
    return path


# --- the shipped weights.toml --------------------------------------------------------------------


def test_package_weights_toml_is_the_repository_file() -> None:
    pkg = REPO / "breastai" / "weights.toml"
    assert pkg.is_symlink() and os.readlink(pkg) == "../weights.toml"
    assert weights.package_weights_file().read_text() == (REPO / "weights.toml").read_text()


def test_demo_entries_match_the_agreed_cards() -> None:
    reg = weights.load_registry()
    b, t = reg["demo-breast"], reg["demo-tumor"]
    assert (b.task, b.filename, b.bundled, b.demo) == ("breast", "demo-breast.onnx", True, True)
    assert (b.architecture, b.normalisation, b.blending) == ("unet3d", "p1p99-minmax", "gaussian")
    assert (t.task, t.filename, t.bundled, t.demo) == ("tumor", "demo-tumor.onnx", True, True)
    assert (t.architecture, t.normalisation, t.blending) == ("seed-tumor", "seed", "gaussian")
    assert (t.phase_slots, t.phases_min, t.phases_max) == (6, 2, 6)
    assert t.input_names == ("phases", "time_mask") and b.input_names == ("image",)
    for c in (b, t):
        assert c.licence == "MIT" and "not for clinical use" in c.training_data
        assert "not a medical device" in c.intended_use
        assert weights.model_file(c) == weights.bundled_models_dir() / c.filename


def test_commented_examples_parse_once_uncommented() -> None:
    """The template and the seed example in weights.toml are valid entries once filled in."""
    text = (REPO / "weights.toml").read_text()
    block: list[str] = []
    for line in text.splitlines():
        if line.startswith("# [defaults]"):
            break
        if line.startswith("# [models.") or (block and line.startswith("# ") and "=" in line):
            block.append(line[2:].split("  #")[0])
    fake = "\n".join(block).replace("<64 hex digits of the ONNX file>", "a" * 64)
    fake = fake.replace("<sha256 of the exported ONNX file>", "b" * 64)
    fake = fake.replace("<40-hex commit hash>", REV)
    data = tomllib.loads(fake)
    assert set(data["models"]) == {"breast-v1", "seed-tumor"}
    for name, table in data["models"].items():
        card = weights._card_from_table(name, table, REPO / "x.toml", allow_bundled=False)
        assert card.sha256 in ("a" * 64, "b" * 64)
    assert data["models"]["seed-tumor"]["blending"] == "vote"


# --- locations -----------------------------------------------------------------------------------


def test_user_weights_file_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    assert weights.user_weights_file() == home / "weights.toml"
    monkeypatch.setenv("BREASTAI_WEIGHTS_FILE", str(tmp_path / "env.toml"))
    assert weights.user_weights_file() == tmp_path / "env.toml"
    assert weights.user_weights_file(tmp_path / "cli.toml") == tmp_path / "cli.toml"


def test_breastai_home_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BREASTAI_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert weights.breastai_home() == tmp_path / "xdg" / "breastai"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "h"))
        assert weights.breastai_home() == tmp_path / "h" / ".cache" / "breastai"


def test_user_entries_are_read_from_the_precedence_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    entry = '[models.{n}]\ntask = "tumor"\nfilename = "x.onnx"\nsha256 = "{s}"\npath = "x.onnx"\n'
    _user_file(home / "weights.toml", entry.format(n="from-home", s="1" * 64))
    _user_file(tmp_path / "env.toml", entry.format(n="from-env", s="2" * 64))
    _user_file(tmp_path / "cli.toml", entry.format(n="from-cli", s="3" * 64))
    assert "from-home" in weights.load_registry()
    monkeypatch.setenv("BREASTAI_WEIGHTS_FILE", str(tmp_path / "env.toml"))
    reg = weights.load_registry()
    assert "from-env" in reg and "from-home" not in reg
    reg = weights.load_registry(tmp_path / "cli.toml")
    assert "from-cli" in reg and "from-env" not in reg
    assert reg["from-cli"].path == str(tmp_path / "x.onnx")  # relative to the weights file
    assert set(weights.load_registry(tmp_path / "absent.toml")) == {"demo-breast", "demo-tumor"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('task = "lung"', "task must be one of breast, tumor"),
        ('revision = "main"\nrepo_id = "a/b"', "40-hex commit"),
        ("patch_size = [1, 2, 3]", "unknown key(s) patch_size"),
        ("patch_zyx = [32, 96]", "patch_zyx must be three positive integers"),
        ('sha256 = "abc"', "sha256 must be 64 hex digits"),
        ("bundled = true", "only valid in the package weights.toml"),
        ('blending = "max"', "blending must be one of vote, mean, gaussian"),
    ],
)
def test_invalid_entries_name_the_file_table_and_key(
    tmp_path: Path, body: str, fragment: str
) -> None:
    base = {
        "task": '"tumor"',
        "filename": '"m.onnx"',
        "sha256": f'"{"a" * 64}"',
        "path": '"m.onnx"',
    }
    lines = dict(base)
    for line in body.splitlines():
        k, v = line.split(" = ")
        lines[k] = v
    wf = _user_file(
        tmp_path / "u.toml", "[models.bad]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())
    )
    with pytest.raises(WeightsError) as err:
        weights.load_registry(wf)
    assert (
        fragment in str(err.value)
        and "[models.bad]" in str(err.value)
        and "u.toml" in str(err.value)
    )


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    wf = tmp_path / "u.toml"
    wf.write_text("schema_version = 2\n")
    with pytest.raises(WeightsError, match="schema_version 2"):
        weights.load_registry(wf)


# --- resolution order and verification -----------------------------------------------------------


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(WeightsNotFoundError) as err:
        weights.resolve_model("no-such-model", "tumor")
    assert "no-such-model" in str(err.value)
    assert "demo-breast" in str(err.value) and "demo-tumor" in str(err.value)


def test_missing_downloadable_file_names_the_download_command(tmp_path: Path) -> None:
    wf = _user_file(
        tmp_path / "u.toml",
        f'[models.rel]\ntask = "tumor"\nfilename = "t.onnx"\nsha256 = "{"a" * 64}"\n'
        f'repo_id = "org/models"\nrevision = "{REV}"\n',
    )
    with pytest.raises(WeightsNotFoundError, match=r"`breastai download-weights rel`"):
        weights.resolve_model("rel", "tumor", weights_file=wf)


def test_bundled_demo_is_the_fallback(fake_package: dict[str, bytes]) -> None:
    rm = weights.resolve_model(None, "tumor")
    assert rm.card.name == "demo-tumor" and rm.card.demo and rm.card.bundled
    assert rm.path.read_bytes() == fake_package["demo-tumor"]
    assert rm.to_dict()["demo"] is True and rm.to_dict()["sha256"] == _sha(
        fake_package["demo-tumor"]
    )
    with pytest.raises(WeightsError, match="breast model"):
        weights.resolve_model("demo-breast", "tumor")


def test_resolution_order_explicit_then_user_then_bundled(
    fake_package: dict[str, bytes], tmp_path: Path, home: Path
) -> None:
    mine = tmp_path / "trained" / "mine.onnx"
    mine.parent.mkdir()
    mine.write_bytes(_onnx_bytes(7))
    card = weights.ModelCard(name="mine", task="tumor", filename="mine.onnx", sha256="")
    wf = weights.register_model(card, mine)
    assert wf == home / "weights.toml"
    # user weights beat the bundled demo
    assert weights.resolve_model(None, "tumor").card.name == "mine"
    assert weights.resolve_model(None, "breast").card.name == "demo-breast"
    # [defaults] picks among user models
    other = tmp_path / "trained" / "other.onnx"
    other.write_bytes(_onnx_bytes(8))
    weights.register_model(
        weights.ModelCard(name="other", task="tumor", filename="other.onnx", sha256=""), other
    )
    assert weights.resolve_model(None, "tumor").card.name == "mine"  # file order
    wf.write_text(wf.read_text() + '\n[defaults]\ntumor = "other"\n')
    assert weights.resolve_model(None, "tumor").card.name == "other"
    # an explicit path beats everything; its card comes from a sidecar STEM.toml
    explicit = tmp_path / "elsewhere" / "exp.onnx"
    explicit.parent.mkdir()
    explicit.write_bytes(_onnx_bytes(9))
    with pytest.raises(WeightsNotFoundError, match="no model card"):
        weights.resolve_model(str(explicit), "tumor")
    explicit.with_suffix(".toml").write_text(
        f'name = "exp"\ntask = "tumor"\nfilename = "exp.onnx"\nsha256 = "{_sha(_onnx_bytes(9))}"\n'
        'phase_slots = 4\nphases_max = 4\nblending = "vote"\n'
    )
    rm = weights.resolve_model(str(explicit), "tumor")
    assert (rm.card.name, rm.path, rm.card.phase_slots) == ("exp", explicit, 4)
    # ... or from a registry entry with that file name
    copy = tmp_path / "elsewhere" / "mine.onnx"
    copy.write_bytes(_onnx_bytes(7))
    assert weights.resolve_model(str(copy), "tumor").card.name == "mine"


def test_stamp_skips_rehash_and_detects_modification(
    fake_package: dict[str, bytes], tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "m.onnx"
    src.write_bytes(_onnx_bytes(3))
    weights.register_model(
        weights.ModelCard(name="m", task="tumor", filename="m.onnx", sha256=""), src
    )
    installed = home / "models" / "m" / "m.onnx"
    calls: list[Path] = []
    real = weights.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(weights.integrity, "sha256_file", counting)
    weights.resolve_model("m", "tumor")
    weights.resolve_model("m", "tumor")
    assert calls == []  # register_model stamped it: size + stamp only
    stamps = list((home / "stamps").glob("*.json"))
    assert len(stamps) >= 1
    # the stamp records size, mtime_ns and sha256
    assert any(f'"sha256": "{_sha(_onnx_bytes(3))}"' in s.read_text() for s in stamps)
    with open(installed, "r+b") as f:  # same size, different content and mtime
        f.seek(100)
        f.write(b"\x00" * 8)
    os.utime(installed, ns=(1, 1))
    with pytest.raises(ChecksumMismatchError) as err:
        weights.resolve_model("m", "tumor")
    msg = str(err.value)
    assert str(installed) in msg and _sha(_onnx_bytes(3)) in msg
    assert "removed" in msg and not installed.exists()
    assert calls == [installed]


def test_mismatch_of_unmanaged_file_keeps_it(tmp_path: Path) -> None:
    f = tmp_path / "x.onnx"
    f.write_bytes(b"abc")
    with pytest.raises(ChecksumMismatchError) as err:
        weights.verify_file(f, "f" * 64, name="x")
    assert _sha(b"abc") in str(err.value) and "f" * 64 in str(err.value)
    assert "left in place" in str(err.value) and f.exists()


def test_placeholder_sha_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "models").mkdir(parents=True)
    (pkg / "weights.toml").write_text((REPO / "weights.toml").read_text())
    (pkg / "models" / "demo-tumor.onnx").write_bytes(b"x")
    for name in ("demo-breast", "demo-tumor"):  # as shipped before the demo weights are trained
        weights.update_bundled_entry(
            name, weights_toml=pkg / "weights.toml", sha256=weights.PLACEHOLDER_SHA256
        )
    monkeypatch.setattr(weights.paths, "package_weights_file", lambda: pkg / "weights.toml")
    monkeypatch.setattr(weights.paths, "bundled_models_dir", lambda: pkg / "models")
    with pytest.raises(WeightsError, match="placeholder"):
        weights.resolve_model(None, "tumor")
    assert (pkg / "models" / "demo-tumor.onnx").exists()
    states = {s.card.name: s.state for s in weights.model_status()}
    assert states == {"demo-breast": "missing", "demo-tumor": "placeholder"}


# --- editing weights.toml ------------------------------------------------------------------------


def test_update_bundled_entry_keeps_comments(tmp_path: Path) -> None:
    wt = tmp_path / "weights.toml"
    original = (REPO / "weights.toml").read_text()
    wt.write_text(original)
    card = weights.update_bundled_entry(
        "demo-tumor",
        weights_toml=wt,
        sha256="c" * 64,
        patch_zyx=(16, 48, 48),
        stride_zyx=(8, 24, 24),
        spacing_zyx=(1.5, 1.5, 1.5),
    )
    assert card.sha256 == "c" * 64 and card.patch_zyx == (16, 48, 48)
    assert card.spacing_zyx == (1.5, 1.5, 1.5)
    text = wt.read_text()
    old_comments = [ln for ln in original.splitlines() if ln.lstrip().startswith("#")]
    assert [ln for ln in text.splitlines() if ln.lstrip().startswith("#")] == old_comments
    data = tomllib.loads(text)
    assert data["models"]["demo-breast"] == tomllib.loads(original)["models"]["demo-breast"]
    assert data["models"]["demo-tumor"]["stride_zyx"] == [8, 24, 24]
    assert len(text.splitlines()) == len(original.splitlines())
    # a key that was absent is inserted inside its own table
    weights.update_bundled_entry("demo-breast", weights_toml=wt, phases_max=3)
    assert tomllib.loads(wt.read_text())["models"]["demo-breast"]["phases_max"] == 3
    assert tomllib.loads(wt.read_text())["models"]["demo-tumor"]["phases_max"] == 6
    with pytest.raises(Exception, match="unknown card key"):
        weights.update_bundled_entry("demo-breast", weights_toml=wt, patch=(1, 2, 3))
    with pytest.raises(WeightsError):
        weights.update_bundled_entry("demo-breast", weights_toml=wt, blending="max")
    assert tomllib.loads(wt.read_text())["models"]["demo-breast"]["blending"] == "gaussian"


def test_update_bundled_entry_follows_the_symlink(tmp_path: Path) -> None:
    real = tmp_path / "weights.toml"
    real.write_text((REPO / "weights.toml").read_text())
    (tmp_path / "pkg").mkdir()
    link = tmp_path / "pkg" / "weights.toml"
    link.symlink_to("../weights.toml")
    weights.update_bundled_entry("demo-breast", weights_toml=link, sha256="d" * 64)
    assert link.is_symlink()
    assert tomllib.loads(real.read_text())["models"]["demo-breast"]["sha256"] == "d" * 64


def test_register_model_preserves_the_user_file(tmp_path: Path, home: Path) -> None:
    wf = _user_file(home / "weights.toml", '# my notes\n\n[defaults]  # keep me\ntumor = "a"\n')
    f = tmp_path / "a.onnx"
    f.write_bytes(_onnx_bytes(4))
    card = weights.ModelCard(name="a", task="tumor", filename="a.onnx", sha256="", demo=False)
    weights.register_model(card, f)
    text = wf.read_text()
    assert "# my notes" in text and "[defaults]  # keep me" in text
    assert weights.resolve_model(None, "tumor").path == home / "models" / "a" / "a.onnx"
    with pytest.raises(OutputExistsError, match="already registered"):
        weights.register_model(card, f)
    f.write_bytes(_onnx_bytes(5))
    weights.register_model(dataclasses_replace(card, blending="mean"), f, force=True)
    reg = weights.load_registry()
    assert reg["a"].blending == "mean" and reg["a"].sha256 == _sha(_onnx_bytes(5))
    assert wf.read_text().count("[models.a]") == 1
    with pytest.raises(ChecksumMismatchError, match="nothing was registered"):
        weights.register_model(dataclasses_replace(card, name="b", sha256="e" * 64), f)
    with pytest.raises(OutputExistsError, match="packaged model"):
        weights.register_model(dataclasses_replace(card, name="demo-tumor"), f)


def test_register_model_in_place_under_the_models_folder(home: Path) -> None:
    f = home / "models" / "seed.onnx"  # where import-weights writes its export by default
    f.parent.mkdir(parents=True)
    f.write_bytes(_onnx_bytes(6))
    card = weights.ModelCard(name="seed", task="tumor", filename="seed.onnx", sha256="")
    weights.register_model(card, f)
    assert weights.load_registry()["seed"].path == str(f)
    assert [p.name for p in (home / "models").rglob("*.onnx")] == ["seed.onnx"]
    assert weights.resolve_model("seed", "tumor").path == f


def dataclasses_replace(card: weights.ModelCard, **kw: object) -> weights.ModelCard:
    import dataclasses

    return dataclasses.replace(card, **kw)  # type: ignore[arg-type]


# --- bundles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tar", ".zip", ".tar.gz"])
def test_bundle_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    # machine A: a downloadable entry already downloaded + a user-registered model
    wf_a = _user_file(
        tmp_path / "a" / "weights.toml",
        f'[models.rel]\ntask = "breast"\nfilename = "sub/rel.onnx"\n'
        f'sha256 = "{_sha(_onnx_bytes(11))}"\n'
        f'repo_id = "org/models"\nrevision = "{REV}"\nnormalisation = "p1p99-minmax"\n',
    )
    monkeypatch.setenv("BREASTAI_HOME", str(tmp_path / "a"))
    store = tmp_path / "a" / "models" / "rel" / "rel.onnx"
    store.parent.mkdir(parents=True)
    store.write_bytes(_onnx_bytes(11))
    src = tmp_path / "u.onnx"
    src.write_bytes(_onnx_bytes(12))
    weights.register_model(
        weights.ModelCard(
            name="usr",
            task="tumor",
            filename="u.onnx",
            sha256="",
            phase_slots=4,
            phases_max=4,
            description="trained here",
        ),
        src,
        weights_file=wf_a,
    )
    out = tmp_path / f"bundle{suffix}"
    weights.export_bundle(out, weights_file=wf_a)
    assert not list(tmp_path.glob(".bundle*"))  # no temporary left
    with pytest.raises(OutputExistsError):
        weights.export_bundle(out, weights_file=wf_a)
    if suffix == ".zip":
        names = set(zipfile.ZipFile(out).namelist())
    else:
        with tarfile.open(out) as tf:
            names = set(tf.getnames())
    assert names == {"weights.toml", "models/rel/rel.onnx", "models/usr/u.onnx"}
    # machine B (air-gapped): knows "rel" from its registry, not "usr"
    home_b = tmp_path / "b"
    monkeypatch.setenv("BREASTAI_HOME", str(home_b))
    home_b.mkdir()
    wf_b = home_b / "weights.toml"
    wf_b.write_text(wf_a.read_text().split("[models.usr]")[0])
    done = weights.install_from(out)
    assert sorted(r.card.name for r in done) == ["rel", "usr"]
    reg = weights.load_registry()
    assert reg["usr"].phase_slots == 4 and reg["usr"].description == "trained here"
    assert weights.resolve_model("rel", "breast").path.read_bytes() == _onnx_bytes(11)
    assert weights.resolve_model("usr", "tumor").path.read_bytes() == _onnx_bytes(12)
    assert weights.resolve_model("rel", "breast").path == home_b / "models" / "rel" / "rel.onnx"
    assert "[models.usr]" in wf_b.read_text()
    # installing again is a no-op; --force replaces
    assert len(weights.install_from(out, ["rel"])) == 1
    with pytest.raises(WeightsNotFoundError, match="holds no file for nope"):
        weights.install_from(out, ["nope"])


def test_bundle_with_wrong_hash_installs_nothing(tmp_path: Path, home: Path) -> None:
    bundle = tmp_path / "evil.tar"
    data = _onnx_bytes(13)
    frag = (
        "schema_version = 1\n[models.x]\n"
        f'task = "tumor"\nfilename = "x.onnx"\nsha256 = "{_sha(b"other")}"\n'
    )
    (tmp_path / "weights.toml").write_text(frag)
    (tmp_path / "models" / "x").mkdir(parents=True)
    (tmp_path / "models" / "x" / "x.onnx").write_bytes(data)
    with tarfile.open(bundle, "w") as tf:
        tf.add(tmp_path / "weights.toml", "weights.toml")
        tf.add(tmp_path / "models" / "x" / "x.onnx", "models/x/x.onnx")
    with pytest.raises(ChecksumMismatchError) as err:
        weights.install_from(bundle)
    assert _sha(b"other") in str(err.value) and _sha(data) in str(err.value)
    assert not (home / "weights.toml").exists()
    assert not [p for p in home.rglob("*") if p.is_file() and "stamps" not in p.parts]


def test_install_from_plain_folder_matches_file_names(tmp_path: Path, home: Path) -> None:
    wf = _user_file(
        tmp_path / "u.toml",
        f'[models.rel]\ntask = "tumor"\nfilename = "onnx/rel.onnx"\n'
        f'sha256 = "{_sha(_onnx_bytes(14))}"\n'
        f'repo_id = "org/models"\nrevision = "{REV}"\n',
    )
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "rel.onnx").write_bytes(_onnx_bytes(14))
    (done,) = weights.install_from(usb, weights_file=wf)
    assert done.path == home / "models" / "rel" / "rel.onnx"
    (usb / "rel.onnx").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatchError):
        weights.install_from(usb, weights_file=wf, force=True)
    assert done.path.read_bytes() == _onnx_bytes(14)  # the good copy was not replaced


def test_failed_write_leaves_no_partial_file(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "m.onnx"
    f.write_bytes(_onnx_bytes(15))

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights.integrity.os, "fsync", disk_full)
    with pytest.raises(OutputError, match="no space left"):
        weights.register_model(
            weights.ModelCard(name="m", task="tumor", filename="m.onnx", sha256=""), f
        )
    assert not [p for p in home.rglob("*") if p.is_file()]
    assert not (home / "weights.toml").exists()


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_list_verify_bundle_round_trip(tmp_path: Path, home: Path) -> None:
    from breastai.cli import app

    runner = CliRunner()
    f = tmp_path / "m.onnx"
    f.write_bytes(_onnx_bytes(16))
    weights.register_model(
        weights.ModelCard(name="m", task="tumor", filename="m.onnx", sha256=""), f
    )
    res = runner.invoke(app, ["weights", "list", "--json"])
    assert res.exit_code == 0, res.output
    import json

    listed = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    assert listed["m"]["state"] == "verified" and listed["demo-tumor"]["demo"] is True
    assert runner.invoke(app, ["weights", "verify", "m"]).exit_code == 0
    out = tmp_path / "b.zip"
    res = runner.invoke(app, ["weights", "export-bundle", str(out)])
    assert res.exit_code == 0 and out.is_file()
    other = tmp_path / "other.toml"
    res = runner.invoke(app, ["download-weights", "--from", str(out), "--weights-file", str(other)])
    assert res.exit_code == 0, res.output
    assert "m" in weights.load_registry(other)
    # a modified file: verify fails with exit 1 and removes it
    installed = home / "models" / "m" / "m.onnx"
    installed.write_bytes(b"changed")
    res = runner.invoke(app, ["weights", "verify"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert not installed.exists()


def test_cli_errors_are_one_line(fake_package: dict[str, bytes]) -> None:
    from breastai.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["download-weights", "nope"])
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and "demo-tumor" in res.stderr
    res = runner.invoke(app, ["download-weights"])
    assert res.exit_code == 2 and "--all" in res.stderr
    res = runner.invoke(app, ["download-weights", "--all"])
    assert res.exit_code == 0 and "nothing to download" in res.stdout
    res = runner.invoke(app, ["weights", "export-bundle", "x.rar", "demo-tumor"])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_weights_module_imports_only_stdlib() -> None:
    code = (
        "import sys, breastai.weights\n"
        "heavy = [m for m in ('huggingface_hub', 'numpy', 'onnxruntime', 'SimpleITK', 'torch',"
        " 'typer', 'rich') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_verify_fails_on_mismatch_placeholder_and_named_missing_files(tmp_path: Path) -> None:
    card = weights.ModelCard(name="m", task="tumor", filename="m.onnx", sha256="0" * 64)
    for state, unnamed, named in (
        ("verified", False, False),
        ("unverified", False, False),
        ("missing", False, True),  # a model not downloaded is fine unless asked for by name
        ("mismatch", True, True),
        ("placeholder", True, True),
    ):
        s = weights.ModelStatus(card, tmp_path / "m.onnx", state)
        assert s.fails_verify(named=False) is unnamed, state
        assert s.fails_verify(named=True) is named, state


def test_models_to_download_names_or_all(fake_package: dict[str, bytes]) -> None:
    from breastai.errors import ParameterError

    assert weights.models_to_download(["b", "a", "b"]) == ["b", "a"]  # once each, in order
    # the fake package registry lists no downloadable model: --all is an empty choice
    assert weights.models_to_download([], all_models=True) == []
    with pytest.raises(ParameterError, match="not both"):
        weights.models_to_download(["a"], all_models=True)
    with pytest.raises(ParameterError, match=r"downloadable models: none \(see"):
        weights.models_to_download([])
