"""What users install carries the sample data, the napari manifest and the licences.

`scripts/test.sh --wheel` (what CI runs) builds the sdist and the wheel, installs the wheel into a
fresh environment and sets DECONOISING_WHEEL / DECONOISING_SDIST; the tests that need those archives
are skipped in the editable developer setup, the others check whichever copy is installed.
"""

from __future__ import annotations

import os
import re
import sysconfig
import tarfile
import zipfile
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import pytest

DIST = "napari-deconoising"
REPO = Path(__file__).resolve().parents[1]
#: Files inside the package that the plugin opens at run time.
PACKAGE_FILES = ["napari.yaml", "data/nuclei_crop.tif", "data/LICENSE-stardist.txt"]
LICENCE_FILES = ["LICENSE", "src/napari_deconoising/data/LICENSE-stardist.txt"]
WHEEL = os.environ.get("DECONOISING_WHEEL")
SDIST = os.environ.get("DECONOISING_SDIST")
needs_built = pytest.mark.skipif(not (WHEEL and SDIST), reason="only after a build: scripts/test.sh --wheel")


def test_package_files_are_installed():
    root = files("napari_deconoising")
    for rel in PACKAGE_FILES:
        path = root.joinpath(*rel.split("/"))
        assert path.is_file(), f"{rel} is missing from the installed package"
    head = root.joinpath("data", "nuclei_crop.tif").read_bytes()[:4]
    assert head in (b"II*\x00", b"MM\x00*"), "the nuclei sample is not a TIFF"
    assert "StarDist" in root.joinpath("data", "LICENSE-stardist.txt").read_text()


def test_manifest_is_registered_and_shipped():
    yaml = pytest.importorskip("yaml")
    (entry,) = [ep for ep in metadata.entry_points(group="napari.manifest") if ep.name == DIST]
    module, resource = entry.value.split(":")
    manifest = yaml.safe_load(files(module).joinpath(resource).read_text())
    assert manifest["name"] == DIST


def test_licences_are_in_the_metadata():
    dist = metadata.distribution(DIST)
    assert dist.metadata["License-Expression"] == "BSD-3-Clause"
    assert set(dist.metadata.get_all("License-File") or []) >= set(LICENCE_FILES)
    ours = dist.read_text("licenses/LICENSE")
    assert ours is not None and "BSD 3-Clause" in ours and "napari-deconoising developers" in ours
    theirs = dist.read_text("licenses/src/napari_deconoising/data/LICENSE-stardist.txt")
    assert theirs is not None and "Uwe Schmidt, Martin Weigert" in theirs


@needs_built
def test_tests_import_the_installed_wheel():
    import napari_deconoising

    where = Path(napari_deconoising.__file__).resolve()
    assert not where.is_relative_to(REPO / "src"), f"tests imported the checkout: {where}"
    assert where.is_relative_to(Path(sysconfig.get_paths()["purelib"]).resolve())
    # RECORD lists what pip unpacked from the wheel: the run-time files came from it.
    recorded = {str(f) for f in metadata.distribution(DIST).files or []}
    assert {f"napari_deconoising/{rel}" for rel in PACKAGE_FILES} <= recorded


@needs_built
def test_wheel_contents():
    names = set(zipfile.ZipFile(WHEEL).namelist())
    assert {f"napari_deconoising/{rel}" for rel in PACKAGE_FILES} <= names
    (dist_info,) = {n.split("/")[0] for n in names if re.match(r"[^/]+\.dist-info/", n)}
    assert {f"{dist_info}/licenses/{lic}" for lic in LICENCE_FILES} <= names
    assert f"{dist_info}/entry_points.txt" in names


@needs_built
def test_sdist_contents():
    with tarfile.open(SDIST) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    wanted = {"LICENSE", "CITATION.cff", "README.md", "CHANGELOG.md", "pyproject.toml", "PKG-INFO"}
    wanted |= {f"src/napari_deconoising/{rel}" for rel in PACKAGE_FILES}
    assert wanted <= names, f"missing from the sdist: {sorted(wanted - names)}"


def test_hub_page_links_resolve():
    """The napari hub description and config point at files that exist and use the hub's keys."""
    yaml = pytest.importorskip("yaml")
    hub = REPO / ".napari-hub"
    config = yaml.safe_load((hub / "config.yml").read_text())
    assert set(config) <= {"visibility", "summary", "authors", "labels", "project_urls"}
    assert config["labels"]["ontology"].startswith("EDAM-BIOIMAGING")
    text = (hub / "DESCRIPTION.md").read_text()
    local = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t and not t.startswith("#")]
    assert local, "the description shows no screenshots"
    for target in local:
        assert (hub / target.split("#")[0]).resolve().is_file(), f"broken link in DESCRIPTION.md: {target}"
