import pytest


@pytest.fixture(autouse=True)
def _fresh_backend():
    """Each test starts with the backend its settings name (tests switch backends)."""
    from lightning.backends import reset_backend

    reset_backend()
    yield
    reset_backend()


@pytest.fixture
def upstream(settings):
    """A real HTTP server on loopback for the L402 proxy to forward to (private targets
    allowed, as they are for a local demo)."""
    from .l402_support import start_upstream

    settings.L402_PROXY_ALLOW_PRIVATE_TARGETS = True
    server = start_upstream()
    yield server
    server.stop()


@pytest.fixture
def receiver():
    """A real webhook receiver on loopback that records what it gets and answers 200."""
    from .webhooks_receiver import Receiver

    r = Receiver().start()
    yield r
    r.stop()
