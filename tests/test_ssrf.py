import pytest

from config.ssrf import UnsafeTarget, check_url, is_public_address


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
    ],
)
def test_private_targets_are_refused(url):
    with pytest.raises(UnsafeTarget, match="refused"):
        check_url(url, allow_private=False)


def test_private_targets_pass_when_the_operator_allows_them():
    target = check_url("http://127.0.0.1:8123/x", allow_private=True)
    assert target.pinned_address == "127.0.0.1" and target.port == 8123


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http:///nohost", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://no-such-host.invalid/", "does not resolve"),
    ],
)
def test_malformed_urls_say_why(url, reason):
    with pytest.raises(UnsafeTarget, match=reason):
        check_url(url, allow_private=True)


def test_public_addresses_are_public():
    assert is_public_address("93.184.216.34")
    assert is_public_address("2606:2800:220:1:248:1893:25c8:1946")
    assert not is_public_address("::ffff:192.168.0.1")
