"""The hosted page's push, timed in the page itself (one clock): used by tests/test_push.py,
tests/production_check.py and bench/push.py."""

# Sends the payment from the page, and resolves with the milliseconds until its status
# label reads "Paid".
TIME_TO_PAID = """async (bolt11) => {
    const label = document.getElementById("status");
    const turned = new Promise((resolve) => new MutationObserver(() => {
      if (label.textContent === "Paid") resolve(performance.now());
    }).observe(label, {childList: true, characterData: true, subtree: true}));
    const start = performance.now();
    const paid = await fetch("/api/dev/pay", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({bolt11}),
    });
    if (!paid.ok) throw new Error("dev pay answered " + paid.status);
    return (await turned) - start;
}"""


def time_to_paid(page, bolt11: str, timeout_ms: float = 30_000) -> float:
    """With the checkout page open: wait until its socket is open, pay, and return the
    milliseconds from sending the payment to the page showing "Paid"."""
    page.wait_for_function("() => document.body.dataset.push === 'open'", timeout=timeout_ms)
    return page.evaluate(TIME_TO_PAID, bolt11)
