"""Shared fixtures. Test data is generated in the tests (phantom, synthetic DICOM)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder beside the checkout; tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present: this checkout has no ../shared beside it")
    return SHARED


@pytest.fixture(autouse=True)
def _strict_pydicom_writing() -> object:
    """Written DICOM must be valid: pydicom raises on invalid values while tests run."""
    from pydicom import config

    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.RAISE
    yield
    config.settings.writing_validation_mode = old
