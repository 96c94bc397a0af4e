import pytest


@pytest.fixture(autouse=True)
def _fresh_backend():
    """Each test starts with the backend its settings name (tests switch backends)."""
    from lightning.backends import reset_backend

    reset_backend()
    yield
    reset_backend()
