// The Shopify payment page: the shared invoice pieces (invoice.js), and a check of the
// order's state every few seconds (the page's own URL with ?fragment=state); once it is no
// longer unpaid, the page reloads to show the claim link (or that it expired). Without
// JavaScript, the page refreshes itself instead (<noscript> meta refresh).
(function () {
  "use strict";

  var shared = window.ZapgateInvoice;
  var data = JSON.parse(document.getElementById("pay-data").textContent);
  var CHECK_MS = 3000;
  var timer = null;
  var done = false;

  function check() {
    clearTimeout(timer);
    fetch(data.stateUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) {
        return r.ok ? r.json() : null;
      })
      .then(function (body) {
        if (body && body.state && body.state !== "unpaid" && !done) {
          done = true;
          window.location.reload();
        }
      })
      .catch(function () {
        /* offline for a moment: try again */
      })
      .then(function () {
        if (!done) timer = setTimeout(check, CHECK_MS);
      });
  }

  if (data.state !== "unpaid") return;
  shared.bindCopy(data.bolt11, data.text || {});
  shared.startCountdown(data.expiresAt, data.serverNow, check);
  timer = setTimeout(check, CHECK_MS);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) check();
  });
})();
