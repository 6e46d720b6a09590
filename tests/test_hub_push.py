"""The card of a credentialed (MIMIC-CXR tree) build, and `push` against a Hub stand-in that records each request at
the socket: the real `huggingface_hub.HfApi` must create the repo private, gate it, upload, and only then show it."""

import csv
import gzip
import json
import shutil

import huggingface_hub
import pytest
import yaml

from dataset_builder.__main__ import main
from dataset_builder.card import PHYSIONET_GATING
from dataset_builder.hub import push_hub_folder
from ko_radiology.sample_corpus import SAMPLE_DIR
from tests.standins import HubStandin

REPO = "org/ko-cxr-qa"
REPO_CALLS = ("/api/repos/create", "/api/validate-yaml")
"""Hub calls about a repo that do not name it in their path."""


@pytest.fixture(scope="module")
def mimic_hub_folder(tmp_path_factory):
    """The sample laid out as a MIMIC-CXR tree of the user's (so credentialed), with MIMIC's official split file."""
    root = tmp_path_factory.mktemp("mimic")
    data = root / "mimic-cxr-reports"
    shutil.copytree(SAMPLE_DIR, data)
    splits = json.loads((data / "splits.json").read_text())
    (data / "splits.json").unlink()
    with gzip.open(data / "mimic-cxr-2.0.0-split.csv.gz", "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dicom_id", "study_id", "subject_id", "split"])
        for split, studies in splits.items():
            for study in studies:
                writer.writerow(["d", study[1:], "1", "validate" if split == "validation" else split])
    build, hub = root / "build", root / "hub"
    assert main(["build", "--data-dir", str(data), "--gold", "--out", str(build)]) == 0
    assert main(["export", str(build), "--out", str(hub), "--repo-id", REPO]) == 0
    return hub


def card_of(folder):
    readme = (folder / "README.md").read_text()
    return yaml.safe_load(readme.split("---")[1]), readme


def test_mimic_tree_card_is_credentialed_and_true_to_the_build(mimic_hub_folder):
    metadata, readme = card_of(mimic_hub_folder)
    assert metadata["license"] == "other" and metadata["license_name"].startswith("physionet")
    assert metadata["source_datasets"] == ["extended|mimic-cxr"] and metadata["language_creators"] == ["found"]
    assert "PhysioNet" in metadata["extra_gated_prompt"] and metadata["extra_gated_fields"]
    assert "MIMIC-CXR's official split file" in readme and "Beth Israel" in readme
    assert "No report was sent to a model endpoint for this release." in readme  # a gold build
    assert "hand-written gold translations" in readme and "CC BY" not in readme and "invented" not in readme


def push_to_standin(folder, monkeypatch, *extra):
    """`push` through the CLI with the real HfApi, pointed at a stand-in Hub; returns the recorded requests."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the tests run with the Hub offline
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with HubStandin() as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.root)
        code = main(["push", str(folder), "--repo-id", REPO, *extra])
    repo_calls = [r for r in hub.requests if r.path in REPO_CALLS or f"/api/datasets/{REPO}/" in r.path]
    assert {r.method for r in hub.requests if r not in repo_calls} <= {"GET"}  # e.g. the client's own lookups
    return code, repo_calls


def visibility_before_upload(requests):
    """Every visibility the repo had from its creation until the upload's commit, in order."""
    commit = next(i for i, request in enumerate(requests) if "/commit/" in request.path)
    return [r.json["visibility"] for r in requests[:commit] if r.json and "visibility" in r.json], commit


def test_credentialed_push_is_private_and_gated_before_any_upload(mimic_hub_folder, monkeypatch):
    code, requests = push_to_standin(mimic_hub_folder, monkeypatch)
    assert code == 0
    assert [(r.method, r.path.split("/")[-2] if "/api/datasets/" in r.path else r.path) for r in requests] == [
        ("POST", "/api/repos/create"),
        ("PUT", "ko-cxr-qa"),  # settings
        ("POST", "/api/validate-yaml"),
        ("POST", "preupload"),
        ("POST", "commit"),
        ("PUT", "ko-cxr-qa"),
    ]
    assert requests[0].json["visibility"] == "private" and requests[0].json["type"] == "dataset"
    assert requests[1].json == {"gated": "manual", "visibility": "private"}
    visibilities, commit = visibility_before_upload(requests)
    assert set(visibilities) == {"private"}
    assert {"README.md", "provenance.json", "qa/test-00000-of-00001.parquet"} <= set(requests[commit].files)
    assert requests[-1].json == {"visibility": "public"}


def test_private_push_never_becomes_public(mimic_hub_folder, monkeypatch):
    code, requests = push_to_standin(mimic_hub_folder, monkeypatch, "--private")
    assert code == 0
    assert "public" not in [r.json.get("visibility") for r in requests if r.json]
    assert requests[1].json["gated"] == "manual"


def test_synthetic_push_needs_no_gate_but_is_still_public_only_after_upload(gold_hub_folder, monkeypatch):
    code, requests = push_to_standin(gold_hub_folder, monkeypatch)
    assert code == 0
    assert requests[1].json == {"visibility": "private"}  # no gate: CC BY 4.0 synthetic data
    visibilities, commit = visibility_before_upload(requests)
    assert set(visibilities) == {"private"} and requests[-1].json == {"visibility": "public"}


def edited_card(folder, **changes):
    """The card with its front matter changed as a user could (a key set to None is removed)."""
    metadata, readme = card_of(folder)
    metadata = {key: value for key, value in {**metadata, **changes}.items() if value is not None}
    body = readme.split("---", 2)[2]
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(metadata)}---{body}")


UNGATED = {key: None for key in PHYSIONET_GATING}


SYNTHETIC_SOURCES = "source_datasets: ['original'] (expected ['extended|mimic-cxr'])"


@pytest.mark.parametrize(
    "changes, named",
    [
        (UNGATED, "no gating form (extra_gated_prompt)"),
        ({"source_datasets": ["original"], "license": "cc-by-4.0", **UNGATED}, SYNTHETIC_SOURCES),  # a synthetic card
        ({"source_datasets": ["original"]}, SYNTHETIC_SOURCES),  # gating form kept, sources claimed original
    ],
)
def test_an_edited_card_cannot_push_credentialed_data_ungated(
    mimic_hub_folder, tmp_path, monkeypatch, capsys, changes, named
):
    """Gating follows the provenance the build recorded (`provenance.json`), which an edited card cannot override."""
    folder = tmp_path / "edited"
    shutil.copytree(mimic_hub_folder, folder)
    edited_card(folder, **changes)
    code, requests = push_to_standin(folder, monkeypatch)
    assert code == 2 and requests == []  # nothing reached the Hub: no repo, no upload, nothing public
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder / 'README.md'} contradicts the build's provenance (mimic-cxr, in ")
    assert named in err and len(err.splitlines()) == 1


def test_a_folder_without_the_recorded_provenance_is_not_pushed(mimic_hub_folder, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "no-record"
    shutil.copytree(mimic_hub_folder, folder)
    (folder / "provenance.json").unlink()
    code, requests = push_to_standin(folder, monkeypatch)
    assert code == 2 and requests == []
    assert (
        "has no provenance.json (written by export); run `python -m dataset_builder export" in capsys.readouterr().err
    )


def test_dry_run_prints_the_same_plan(mimic_hub_folder, capsys):
    assert main(["push", str(mimic_hub_folder), "--repo-id", REPO, "--dry-run"]) == 0
    steps = [line.split("(")[0] for line in capsys.readouterr().out.splitlines()]
    assert steps == [
        "would create_repo", "would update_repo_settings", "would upload_folder", "would update_repo_settings"
    ]  # fmt: skip


def test_push_hub_folder_takes_an_api_pointed_anywhere(gold_hub_folder, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with HubStandin() as hub:
        push_hub_folder(gold_hub_folder, REPO, private=True, api=huggingface_hub.HfApi(hub.root, token="hf_x"))
    assert [r.path.rsplit("/", 2)[-2] for r in hub.requests][-2:] == ["preupload", "commit"]
