import pytest

CHILD_LOG_TAIL = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test fails, show the last lines of every log its child processes wrote into
    its tmp_path (workers, the run.py stack): a timeout alone says nothing about why."""
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and tmp_path is not None:
        for log in sorted(tmp_path.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-CHILD_LOG_TAIL:]
            report.sections.append((f"child log {log.name}", "\n".join(lines)))
    return report


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
