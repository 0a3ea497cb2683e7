"""The PACS loop against a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``, see .ci/run).

Every test that needs a server starts its own Orthanc (free 127.0.0.1 port, temporary storage,
authentication on, DICOMweb plugin) and stops it by the process id it started. Truth comes from
Orthanc's own REST API and from the local run's files, never from breastai's PACS code.
"""

from __future__ import annotations

import dataclasses
import io
import json
import stat
from pathlib import Path

import numpy as np
import pytest
from segment_factory import cli_model_args, make_model_pair, write_classic_study
from typer.testing import CliRunner

from breastai.cli import app
from breastai.cohort import study_folder_name
from breastai.errors import PacsError, ParameterError

pytest.importorskip("dicomweb_client", reason="the [pacs] extra (dicomweb-client) is not installed")
import orthanc_server
from orthanc_server import PASSWORD, USER, Orthanc

runner = CliRunner()

needs_orthanc = pytest.mark.skipif(
    orthanc_server.missing() is not None, reason=str(orthanc_server.missing())
)


@pytest.fixture(autouse=True)
def _env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREASTAI_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("BREASTAI_DICOMWEB_CONFIG", str(tmp_path_factory.mktemp("cfg") / "none"))
    monkeypatch.setenv("BREASTAI_DICOMWEB_USER", USER)
    monkeypatch.setenv("BREASTAI_DICOMWEB_PASSWORD", PASSWORD)
    monkeypatch.delenv("BREASTAI_DICOMWEB_TOKEN", raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny models; a DCE study (3 phases, one series each) plus a T2 decoy series in the same
    study; a second DCE study; a study with one single-phase series (no DCE)."""
    import pydicom

    root = tmp_path_factory.mktemp("pacs")
    models = make_model_pair(root / "models")
    dce = write_classic_study(root / "dce", shape=(8, 24, 30))
    decoy = write_classic_study(root / "decoy-src", shape=(8, 24, 30), n_phases=1)
    decoy_files = []
    (root / "dce-decoy").mkdir()
    for k, f in enumerate(decoy["files"][0]):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID = dce["study_uid"]
        ds.FrameOfReferenceUID = pydicom.dcmread(dce["files"][0][0]).FrameOfReferenceUID
        ds.SeriesNumber = 5
        ds.SeriesDescription = "ax T2 tse"
        ds.EchoTime = 80.0
        ds.RepetitionTime = 4000.0
        out = root / "dce-decoy" / f"t2_{k:03d}.dcm"
        ds.save_as(out, enforce_file_format=True)
        decoy_files.append(out)
    other = write_classic_study(root / "dce2", shape=(8, 24, 30))
    single = write_classic_study(root / "single", shape=(8, 24, 30), n_phases=1)
    return {
        "root": root,
        "models": models,
        "dce": dce,
        "dce_files": [f for p in dce["files"] for f in p] + decoy_files,
        "decoy_series": pydicom.dcmread(decoy_files[0]).SeriesInstanceUID,
        "other": other,
        "single": single,
    }


def _files(info: dict) -> list[Path]:
    return [f for p in info["files"] for f in p]


def _model_args(data: dict) -> list[str]:
    return cli_model_args(data["models"], data["root"] / "w.toml")


@pytest.fixture
def orthanc(tmp_path: Path):
    if orthanc_server.missing():
        pytest.skip(orthanc_server.missing())
    server = Orthanc(tmp_path / "orthanc", stable_age_s=1).start()
    try:
        yield server
    finally:
        server.stop()


def _by_modality(server: Orthanc, study_uid: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in server.series(study_uid):
        out.setdefault(s["MainDicomTags"].get("Modality", ""), []).append(s)
    return out


def _dataset(server: Orthanc, series: dict):
    import pydicom

    (instance,) = series["Instances"]
    return pydicom.dcmread(io.BytesIO(server.instance_file(instance)))


def _no_secret(res, *folders: Path) -> None:
    assert PASSWORD not in res.output
    for folder in folders:
        for f in folder.rglob("*"):
            if f.is_file():
                assert PASSWORD.encode() not in f.read_bytes(), f


# ------------------------------------------------------------------------ segment --from-pacs


@needs_orthanc
def test_segment_from_pacs_sends_seg_and_sr_into_the_study(data, orthanc, tmp_path) -> None:
    import highdicom as hd
    import SimpleITK as sitk

    dce = data["dce"]
    study_uid = dce["study_uid"]
    orthanc.upload(data["dce_files"])
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "segment",
            "--from-pacs",
            orthanc.url,
            "--study",
            study_uid,
            "-o",
            str(out),
            "--send-to",
            orthanc.url,
            "--send-preview",
            *_model_args(data),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "Research use only" in res.output
    local = out / study_uid
    assert {"seg.dcm", "report-sr.dcm", "pacs.json", "tumor.nii.gz"} <= {
        p.name for p in local.iterdir()
    }

    # only the DCE series' pixels were fetched; the T2 decoy's headers only
    record = json.loads((local / "pacs.json").read_text())
    pixels = {s["series_uid"]: s["pixels"] for s in record["series"]}
    assert pixels[data["decoy_series"]] is False
    assert all(pixels[uid] for uid in dce["series_uids"])
    assert sorted(record["dce_series"]) == sorted(dce["series_uids"])

    # the same masks as a run on the original folder
    folder_out = tmp_path / "folder-out"
    (tmp_path / "folder").mkdir()
    for f in data["dce_files"]:
        (tmp_path / "folder" / f.name).write_bytes(f.read_bytes())
    res2 = runner.invoke(app, ["segment", str(tmp_path / "folder"), "-o", str(folder_out),
                               *_model_args(data)])  # fmt: skip
    assert res2.exit_code == 0, res2.output
    for name in ("tumor.nii.gz", "breast.nii.gz"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(local / name)))
        folder = folder_out / study_folder_name(tmp_path / "folder")
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name)))
        assert a.any() and np.array_equal(a, b), name

    # what Orthanc now holds: one SEG, one SR, one Secondary Capture, in this study
    series = _by_modality(orthanc, study_uid)
    assert len(series["SEG"]) == 1 and len(series["SR"]) == 1 and len(series["OT"]) == 1
    assert len(series["MR"]) == 4  # 3 phases + the decoy, untouched
    reference_series = dce["series_uids"][1]  # P1, the segmented phase
    seg = _dataset(orthanc, series["SEG"][0])
    sr = _dataset(orthanc, series["SR"][0])
    sc = _dataset(orthanc, series["OT"][0])
    for ds in (seg, sr, sc):
        assert ds.StudyInstanceUID == study_uid
        assert ds.SeriesInstanceUID not in dce["series_uids"]
    assert reference_series in {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence}
    evidence = {
        s.SeriesInstanceUID
        for st in sr.CurrentRequestedProcedureEvidenceSequence
        for s in st.ReferencedSeriesSequence
    }
    assert evidence == {reference_series}
    assert {i.ReferencedSOPInstanceUID for i in sc.SourceImageSequence} >= set(dce["uids"][1])
    assert "research use only" in str(sr.SeriesDescription).lower()

    # highdicom reads the stored SEG back with exactly the local seg.dcm's voxels
    remote = hd.seg.Segmentation.from_dataset(seg)
    mine = hd.seg.segread(str(local / "seg.dcm"))
    assert remote.SOPInstanceUID == mine.SOPInstanceUID
    va = remote.get_volume(combine_segments=True, skip_overlap_checks=True)
    vb = mine.get_volume(combine_segments=True, skip_overlap_checks=True)
    assert va.array.any() and np.array_equal(va.array, vb.array)
    assert np.allclose(va.affine, vb.affine)
    _no_secret(res, out)


@needs_orthanc
def test_segment_from_pacs_unknown_study_is_one_line(data, orthanc, tmp_path) -> None:
    res = runner.invoke(
        app,
        ["segment", "--from-pacs", orthanc.url, "--study", "1.2.3.4", "-o", str(tmp_path),
         *_model_args(data)],
    )  # fmt: skip
    assert res.exit_code == 1
    assert "not on the DICOMweb server" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


# --------------------------------------------------------------------------------------- watch


def _watch(data: dict, orthanc: Orthanc, out: Path, *extra: str):
    return runner.invoke(app, ["watch", orthanc.url, "--once", "-o", str(out),
                               *_model_args(data)[:-2], *extra])  # fmt: skip


@needs_orthanc
def test_watch_once_sends_once_and_skips_non_dce_with_reason(data, orthanc, tmp_path) -> None:
    a, single = data["dce"], data["single"]
    orthanc.upload(data["dce_files"] + _files(single))
    orthanc.wait_stable(a["study_uid"])
    orthanc.wait_stable(single["study_uid"])
    out = tmp_path / "out"
    first = _watch(data, orthanc, out)
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert any(ln.startswith(f"sent {a['study_uid']}") for ln in lines), first.stdout
    skipped = [ln for ln in lines if ln.startswith(f"skipped {single['study_uid']}")]
    assert skipped and "No DCE" in skipped[0], first.stdout  # the reader's own reason
    state = json.loads((out / "breastai-watch.json").read_text())
    assert state["handled"][a["study_uid"]]["status"] == "sent"
    assert state["handled"][single["study_uid"]]["status"] == "skipped"
    assert "No DCE" in state["handled"][single["study_uid"]]["message"]
    assert len(_by_modality(orthanc, a["study_uid"])["SEG"]) == 1
    assert set(_by_modality(orthanc, single["study_uid"])) == {"MR"}  # nothing sent there

    # Orthanc reports the study stable again after the SEG/SR arrived: still nothing new
    orthanc.wait_stable(a["study_uid"])
    second = _watch(data, orthanc, out)
    assert second.exit_code == 0, second.output
    assert "nothing new" in second.stdout and "sent" not in second.stdout
    series = _by_modality(orthanc, a["study_uid"])
    assert len(series["SEG"]) == 1 and len(series["SR"]) == 1

    # state lost after a send (crash between storing and recording): not sent twice
    (out / "breastai-watch.json").unlink()
    third = _watch(data, orthanc, out)
    assert third.exit_code == 0, third.output
    assert f"has-results {a['study_uid']}" in third.stdout
    assert len(_by_modality(orthanc, a["study_uid"])["SEG"]) == 1
    _no_secret(first, out)


@needs_orthanc
def test_watch_across_orthanc_restart_loses_and_repeats_nothing(data, orthanc, tmp_path) -> None:
    a, b = data["dce"], data["other"]
    out = tmp_path / "out"
    orthanc.upload(_files(a))
    orthanc.wait_stable(a["study_uid"])
    first = _watch(data, orthanc, out)
    assert first.exit_code == 0 and f"sent {a['study_uid']}" in first.stdout, first.output

    # B arrives and the server stops before B is stable (its StableStudy event never happens)
    orthanc.stable_age_s = 3
    orthanc.restart()
    orthanc.upload(_files(b))
    orthanc.stop()
    orthanc.stable_age_s = 1
    orthanc.start()
    orthanc.wait_stable(b["study_uid"])
    second = _watch(data, orthanc, out)
    assert second.exit_code == 0, second.output
    assert f"sent {b['study_uid']}" in second.stdout and a["study_uid"] not in second.stdout

    orthanc.restart()
    third = _watch(data, orthanc, out)
    assert third.exit_code == 0 and "nothing new" in third.stdout, third.output
    for info in (a, b):
        series = _by_modality(orthanc, info["study_uid"])
        assert len(series["SEG"]) == 1 and len(series["SR"]) == 1, info["study_uid"]
    state = json.loads((out / "breastai-watch.json").read_text())
    assert {a["study_uid"], b["study_uid"]} == set(state["handled"])


@needs_orthanc
def test_watch_qido_mode_by_date(data, orthanc, tmp_path) -> None:
    a = data["dce"]
    orthanc.upload(_files(a))
    out = tmp_path / "out"
    args = ("--mode", "qido", "--since-date", "20250101", "--stable-age", "0")
    first = _watch(data, orthanc, out, *args)
    assert first.exit_code == 0 and f"sent {a['study_uid']}" in first.stdout, first.output
    second = _watch(data, orthanc, out, *args)
    assert second.exit_code == 0 and "nothing new" in second.stdout, second.output
    assert len(_by_modality(orthanc, a["study_uid"])["SEG"]) == 1
    # a date after the study's: QIDO-RS does not list it
    fresh = _watch(data, orthanc, tmp_path / "out2", "--mode", "qido", "--since-date", "20300101")
    assert fresh.exit_code == 0 and "nothing new" in fresh.stdout, fresh.output


# ----------------------------------------------------------------------------- failures: 1 line


@needs_orthanc
def test_wrong_password_is_one_line_and_exit_1(data, orthanc, tmp_path, monkeypatch) -> None:
    wrong = "not-the-password-42"
    monkeypatch.setenv("BREASTAI_DICOMWEB_PASSWORD", wrong)
    for args in (
        ["segment", "--from-pacs", orthanc.url, "--study", data["dce"]["study_uid"]],
        ["watch", orthanc.url, "--once"],
    ):
        res = runner.invoke(app, [*args, "-o", str(tmp_path / "o"), *_model_args(data)[:2]])
        assert res.exit_code == 1, res.output
        err = res.stderr.strip().splitlines()
        assert len(err) == 1 and "refused" in err[0] and "401" in err[0], res.stderr
        assert "BREASTAI_DICOMWEB_PASSWORD" in err[0]
        assert wrong not in res.output and "Traceback" not in res.output
    left = sorted(p.name for p in (tmp_path / "o").iterdir()) if (tmp_path / "o").exists() else []
    assert left in ([], ["breastai-watch.json.lock"]), left  # no study folder, no state


def test_unreachable_server_is_one_line_and_exit_1(data, tmp_path) -> None:
    url = f"http://127.0.0.1:{orthanc_server.free_port()}/dicom-web"  # nothing listens there
    for args in (
        ["segment", "--from-pacs", url, "--study", "1.2.3"],
        ["watch", url, "--once"],
    ):
        res = runner.invoke(app, [*args, "-o", str(tmp_path / "o"), *_model_args(data)[:2]])
        assert res.exit_code == 1, res.output
        err = res.stderr.strip().splitlines()
        assert len(err) == 1 and "Could not connect" in err[0] and url in err[0], res.stderr
        assert "Traceback" not in res.output


def test_watch_backs_off_while_the_server_is_down(tmp_path) -> None:
    from breastai.pacs import DicomwebServer, watch

    server = DicomwebServer(f"http://127.0.0.1:{orthanc_server.free_port()}/dicom-web", attempts=1)
    waits: list[float] = []
    events = []
    watch(
        server,
        out_dir=tmp_path,
        interval_s=2.0,
        max_backoff_s=10.0,
        sleep=waits.append,
        stop=lambda: len(waits) >= 5,
        on_event=events.append,
        models=object(),  # never used: no study is found while the server is down
    )
    assert waits == [4.0, 8.0, 10.0, 10.0, 10.0]
    assert all(e.status == "server-error" and "Could not connect" in e.message for e in events)


# ------------------------------------------------------------------------------ credentials


def test_credentials_from_env_or_private_config_only(tmp_path, monkeypatch) -> None:
    from breastai.pacs import load_credentials

    url = "https://pacs.example.org/dicom-web"
    c = load_credentials(url)
    assert (c.user, c.password, c.token) == (USER, PASSWORD, None)
    assert PASSWORD not in repr(c) and PASSWORD not in str(c)
    monkeypatch.setenv("BREASTAI_DICOMWEB_TOKEN", "tok-123")
    c = load_credentials(url)
    assert c.token == "tok-123" and "tok-123" not in repr(c)
    for name in ("BREASTAI_DICOMWEB_TOKEN", "BREASTAI_DICOMWEB_USER", "BREASTAI_DICOMWEB_PASSWORD"):
        monkeypatch.delenv(name)
    assert not load_credentials(url).given

    cfg = tmp_path / "dicomweb.toml"
    cfg.write_text(
        'user = "default-user"\npassword = "default-pw"\n'
        '[servers."https://pacs.example.org"]\ntoken = "site-token"\n'
    )
    cfg.chmod(0o644)
    with pytest.raises(PacsError, match="chmod 600"):
        load_credentials(url, path=cfg)
    cfg.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert load_credentials(url, path=cfg).token == "site-token"
    other = load_credentials("https://other.example.org/dicom-web", path=cfg)
    assert (other.user, other.password) == ("default-user", "default-pw")

    monkeypatch.setenv("BREASTAI_DICOMWEB_USER", "only-user")
    with pytest.raises(PacsError, match="BREASTAI_DICOMWEB_PASSWORD is not set"):
        load_credentials(url, path=cfg)


def test_credentials_in_the_url_are_refused(data) -> None:
    from breastai.pacs import connect

    with pytest.raises(ParameterError, match="not accepted") as err:
        connect("https://bob:hunter2@pacs.example.org/dicom-web")
    assert "hunter2" not in str(err.value)
    res = runner.invoke(app, ["watch", "https://bob:hunter2@pacs.example.org/dicom-web", "--once"])
    assert res.exit_code == 2 and "hunter2" not in res.output
    res = runner.invoke(app, ["segment", "--from-pacs", "ftp://x/y", "--study", "1.2"])
    assert res.exit_code == 2 and "not a DICOMweb URL" in res.stderr



def test_results_go_back_on_the_source_connection_when_send_to_names_it() -> None:
    """`segment --from-pacs URL --send-to URL/` and `watch URL --send-to URL` reuse the source
    connection; another URL gets its own (no request is made: nothing listens there)."""
    from breastai.pacs import connect, connect_target

    source = connect("http://127.0.0.1:9/dicom-web")
    assert connect_target(source, "http://127.0.0.1:9/dicom-web/") is source
    other = connect_target(source, "http://127.0.0.1:10/dicom-web")
    assert other is not source and other.url == "http://127.0.0.1:10/dicom-web"
    with pytest.raises(ParameterError, match="not a DICOMweb URL"):
        connect_target(source, "ftp://127.0.0.1/dicom-web")

def test_segment_pacs_option_combinations_are_usage_errors(tmp_path) -> None:
    cases = [
        (["segment", "--from-pacs", "http://127.0.0.1:1/dicom-web"], "--study"),
        (["segment", str(tmp_path), "--send-to", "http://127.0.0.1:1/dicom-web"], "--from-pacs"),
        (["segment"], "No study given"),
        (["segment", str(tmp_path), "--from-pacs", "http://h/d", "--study", "1"], "not both"),
    ]
    for args, text in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and text in res.stderr, (args, res.output)


# ------------------------------------------------------------------ DICOM JSON -> header files


@pytest.mark.parametrize("layout", ["ge", "philips", "enhanced", "siemens"])
def test_fast_header_files_match_pydicom(tmp_path, layout) -> None:
    """Every vendor layout of the phantom (private tags, enhanced multi-frame functional groups,
    decoys): DICOM JSON as WADO-RS sends it (pixel data as a bulk data reference) -> our encoder
    -> pydicom reads the same elements and values as pydicom's own from_json."""
    import pydicom

    from breastai.io.dicom_index import index_folder
    from breastai.pacs._json2dcm import header_file_bytes
    from breastai.phantom import generate_case, write_dicom_study

    case = generate_case(3, n_phases=2, shape_zyx=(16, 48, 40), spacing_zyx=(8.0, 7.0, 8.4))
    files = write_dicom_study(case, tmp_path / "src", layout=layout, seed=1)
    out = tmp_path / "fast"
    out.mkdir()
    checked = 0
    for k, f in enumerate(sorted(files)):
        if f.suffix.lower() not in (".dcm", "") or f.name == "DICOMDIR":
            continue
        ds = pydicom.dcmread(f, stop_before_pixels=False)
        item = ds.to_json_dict(
            bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "http://server/bulk"
        )
        encoded = header_file_bytes(item)
        assert encoded is not None, f
        data, sop, sop_class = encoded
        assert (sop, sop_class) == (ds.SOPInstanceUID, ds.SOPClassUID)
        (out / f"{k}.dcm").write_bytes(data)
        mine = pydicom.dcmread(out / f"{k}.dcm")
        ref = pydicom.Dataset.from_json({t: e for t, e in item.items() if "BulkDataURI" not in e})
        _same_elements(ref, mine)
        checked += 1
    assert checked >= 10

    # and the reader indexes them exactly as the original files (geometry, times, roles)
    def records(index):
        keep = [r for r in index.records if r.image]
        return sorted(keep, key=lambda r: (r.sop_uid, r.frame))

    ra, rb = records(index_folder(tmp_path / "src")), records(index_folder(out))
    assert len(ra) == len(rb) > 0
    for x, y in zip(ra, rb, strict=True):
        dx, dy = dataclasses.asdict(x), dataclasses.asdict(y)
        for name in ("path", "transfer_syntax"):
            dx.pop(name), dy.pop(name)
        assert dx == dy


def _same_elements(ref, mine) -> None:
    for elem in ref:
        if elem.tag.group == 0x0002 or elem.tag.element == 0 or elem.tag == 0x7FE00010:
            continue
        assert elem.tag in mine, elem
        other = mine[elem.tag]
        assert other.VR == elem.VR or elem.VR in ("OB or OW", "US or SS"), (elem, other)
        if elem.VR == "SQ":
            assert len(other.value) == len(elem.value), elem.tag
            for i, j in zip(elem.value, other.value, strict=True):
                _same_elements(i, j)
        elif elem.VR in ("DS", "FL", "FD"):
            va = elem.value if elem.VM != 1 else [elem.value]
            vb = other.value if other.VM != 1 else [other.value]
            va = [] if va in (None, "", [None]) else list(va)
            vb = [] if vb in (None, "", [None]) else list(vb)
            assert np.allclose(np.asarray(va, float), np.asarray(vb, float), rtol=1e-12), elem
        else:
            assert str(other.value) == str(elem.value) or (not elem.value and not other.value), (
                elem,
                other,
            )


def test_select_dce_series_from_headers_is_the_readers_choice(data, tmp_path) -> None:
    from breastai.errors import NoDCESeriesError
    from breastai.io import load_study
    from breastai.io.dicom import select_dce_series
    from breastai.io.dicom_index import index_folder

    folder = tmp_path / "study"
    folder.mkdir()
    for f in data["dce_files"]:
        (folder / f.name).write_bytes(f.read_bytes())
    chosen = select_dce_series(index_folder(folder))
    study = load_study(folder)
    assert chosen == list(dict.fromkeys(p.series_uid for p in study.phases))
    assert data["decoy_series"] not in chosen
    with pytest.raises(NoDCESeriesError) as err:
        select_dce_series(index_folder(data["root"] / "single"))
    with pytest.raises(NoDCESeriesError) as err2:
        load_study(data["root"] / "single")
    assert str(err.value) == str(err2.value)  # the same reason as a folder read gives


@needs_orthanc
def test_requests_are_retried_with_backoff_until_the_server_is_back(data, orthanc) -> None:
    import threading

    from breastai.pacs import Credentials, DicomwebServer

    a = data["dce"]
    orthanc.upload(_files(a))
    orthanc.stop()
    server = DicomwebServer(
        orthanc.url, Credentials(user=USER, password=PASSWORD), attempts=6, backoff_s=0.5
    )
    restart = threading.Timer(1.0, orthanc.start)  # the same port and storage, 1 s later
    restart.start()
    try:
        found = server.search_series(a["study_uid"])
    finally:
        restart.join()
    assert len(found) == 3
    orthanc.stop()
    quick = DicomwebServer(orthanc.url, Credentials(user=USER, password=PASSWORD), attempts=2)
    with pytest.raises(PacsError, match=r"Could not connect .* \(tried 2 times\)"):
        quick.search_series(a["study_uid"])


def test_other_character_sets_fall_back_to_pydicom(tmp_path) -> None:
    import pydicom

    from breastai.pacs import transfer
    from breastai.pacs._json2dcm import header_file_bytes

    info = write_classic_study(tmp_path / "s", shape=(2, 4, 4), n_phases=2)
    ds = pydicom.dcmread(info["files"][0][0])
    ds.SpecificCharacterSet = "ISO_IR 144"
    ds.PatientName = "Иванова^Анна"
    item = ds.to_json_dict(bulk_data_threshold=16, bulk_data_element_handler=lambda e: "http://b")
    assert header_file_bytes(item) is None  # Cyrillic ISO_IR 144: not the fast encoder's
    back = transfer._header_dataset(item)
    transfer._save(back, tmp_path / "h.dcm", header_only=True)
    again = pydicom.dcmread(tmp_path / "h.dcm")
    assert str(again.PatientName) == "Иванова^Анна" and "PixelData" not in again
    assert again.ImagePositionPatient == ds.ImagePositionPatient


@needs_orthanc
def test_watch_first_look_is_bounded_then_follows_the_feed(data, orthanc, tmp_path) -> None:
    a, b = data["dce"], data["other"]
    orthanc.upload(_files(a))
    orthanc.wait_stable(a["study_uid"])
    out = tmp_path / "out"
    first = _watch(data, orthanc, out, "--since-date", "20300101")  # a's arrival is before it
    assert first.exit_code == 0 and "nothing new" in first.stdout, first.output
    orthanc.upload(_files(b))
    orthanc.wait_stable(b["study_uid"])
    second = _watch(data, orthanc, out)
    assert second.exit_code == 0 and f"sent {b['study_uid']}" in second.stdout, second.output
    assert a["study_uid"] not in second.stdout
    assert set(_by_modality(orthanc, a["study_uid"])) == {"MR"}
