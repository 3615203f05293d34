from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_RECORDINGS = ROOT.parent / "shared" / "recordings"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_recordings() -> list[Path]:
    """Every real recording in ../shared/recordings (empty where ../shared is absent)."""
    if not SHARED_RECORDINGS.is_dir():
        return []
    return sorted(p for p in SHARED_RECORDINGS.iterdir() if (p / "manifest.json").is_file())


def shared_recording(name: str) -> Path:
    path = SHARED_RECORDINGS / name
    if not (path / "manifest.json").is_file():
        pytest.skip(f"../shared/recordings/{name} is absent (real recordings live outside the repository)")
    return path


requires_shared = pytest.mark.skipif(
    not SHARED_RECORDINGS.is_dir(), reason="../shared/recordings is absent: real recordings live outside the repository"
)


@pytest.fixture(autouse=True)
def fresh_process_memory():
    """Each test starts with scanners that remember nothing of another test's scans, no kept
    configuration rows (a test's database is emptied without the saves that replace their
    version) and no kept list counts."""
    from scanners.services import forget_scan_state
    from trifecta_site.pagination import forget_counts
    from trifecta_site.models import forget_settings

    for forget in (forget_scan_state, forget_settings, forget_counts):
        forget()
    yield
    for forget in (forget_scan_state, forget_settings, forget_counts):
        forget()
