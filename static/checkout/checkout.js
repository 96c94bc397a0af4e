// The hosted checkout page: live status (pushed over a WebSocket, /ws/checkout/<id>; while
// the socket is not open, a poll of /checkout/<id>/status every second), countdown, copy
// button, dev wallet, "start again" for an expired product checkout, and the receipt once
// paid (fetched from the page's own URL, ?fragment=receipt, when it turns paid while open).
// The shared pieces (copy, countdown, images) are in invoice.js; the words the script
// shows come translated in the page's data (`text`).
(function () {
  "use strict";

  var shared = window.ZapgateInvoice;
  var data = JSON.parse(document.getElementById("checkout-data").textContent);
  var text = data.text || {};
  var POLL_MS = 1000;
  var status = data.status;
  var pollTimer = null;
  var stopCountdown = function () {};
  var socket = null;
  var socketOpen = false;
  var socketRetry = 1000;
  var say = shared.say;

  function $(id) {
    return document.getElementById(id);
  }

  function fill(template, values) {
    return String(template).replace(/\{(\w+)\}/g, function (all, name) {
      return name in values ? values[name] : all;
    });
  }

  function show(newStatus) {
    if (newStatus === status) return;
    var wasUnpaid = status === "unpaid";
    status = newStatus;
    var label = $("status");
    label.textContent = text[status] || status;
    label.className = "status status-" + status;
    ["unpaid", "paid", "expired"].forEach(function (s) {
      $("state-" + s).hidden = s !== status;
    });
    if (status !== "unpaid") {
      clearTimeout(pollTimer);
      stopCountdown();
      if (socket) socket.close();
    }
    if (status === "paid" && wasUnpaid) {
      loadReceipt();
      followRedirectSoon();
    }
    var heading = document.querySelector("#state-" + status + " h2");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: false });
    }
  }

  // --- the receipt ---------------------------------------------------------------------
  function loadReceipt(attempt) {
    attempt = attempt || 0;
    var box = $("receipt");
    if (!box || !data.receiptUrl || box.children.length) return;
    fetch(data.receiptUrl, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("status " + r.status);
        return r.text();
      })
      .then(function (html) {
        box.innerHTML = html; // our own server's markup, no scripts (the policy has none)
        shared.watchImages(box);
      })
      .catch(function () {
        if (attempt < 5) setTimeout(loadReceipt, 1000 * (attempt + 1), attempt + 1);
      });
  }

  // --- live status ---------------------------------------------------------------------
  function poll() {
    clearTimeout(pollTimer);
    fetch(data.statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) {
        return r.ok ? r.json() : null;
      })
      .then(function (body) {
        if (body && body.status) show(body.status);
      })
      .catch(function () {
        /* offline for a moment: the next poll tries again */
      })
      .then(function () {
        if (status === "unpaid" && !socketOpen) pollTimer = setTimeout(poll, POLL_MS);
      });
  }

  // The socket sends the status when it opens and whenever it changes. While it is not
  // open (no WebSocket, a proxy that drops it, a restart), the poll above runs instead, and
  // the socket is tried again with a growing pause.
  function listen() {
    if (!window.WebSocket || !data.socketUrl || status !== "unpaid") return;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + data.socketUrl;
    try {
      socket = new WebSocket(url);
    } catch (e) {
      return;
    }
    socket.onopen = function () {
      socketOpen = true;
      document.body.dataset.push = "open";
      socketRetry = 1000;
      clearTimeout(pollTimer);
    };
    socket.onmessage = function (event) {
      var body = null;
      try {
        body = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (body && body.status) show(body.status);
    };
    socket.onclose = function () {
      var wasOpen = socketOpen;
      socketOpen = false;
      delete document.body.dataset.push;
      socket = null;
      if (status !== "unpaid") return;
      if (wasOpen) poll(); // anything missed while it closed
      else if (!pollTimer) pollTimer = setTimeout(poll, POLL_MS);
      setTimeout(listen, socketRetry);
      socketRetry = Math.min(socketRetry * 2, 30000);
    };
  }

  // --- redirect after payment ----------------------------------------------------------
  function followRedirectSoon() {
    if (!data.redirectUrl) return;
    var left = data.redirectDelay;
    var stay = $("stay");
    var timer = setInterval(step, 1000);
    stay.hidden = false;
    stay.addEventListener("click", function () {
      clearInterval(timer);
      stay.hidden = true;
      say("redirect-note", "");
    });
    step();
    function step() {
      if (left <= 0) {
        clearInterval(timer);
        window.location.assign(data.redirectUrl);
        return;
      }
      say("redirect-note", fill(text.redirecting, { seconds: left }));
      left -= 1;
    }
  }

  // --- JSON POSTs (dev wallet, start again) --------------------------------------------
  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    }).then(function (r) {
      return r
        .json()
        .catch(function () {
          return {};
        })
        .then(function (json) {
          if (!r.ok) throw new Error(json.detail || "The server answered " + r.status + ".");
          return json;
        });
    });
  }

  // A developer's tool (dev mode on the dev node only): its words stay English.
  function onDevPay(event) {
    var button = event.currentTarget;
    button.disabled = true;
    say("feedback", "Paying from the dev wallet…");
    postJson(data.devPayUrl, { bolt11: data.bolt11 }).then(
      function () {
        say("feedback", "Paid from the dev wallet; waiting for the node to confirm…");
        poll();
      },
      function (err) {
        button.disabled = false;
        say("feedback", "The dev wallet could not pay: " + err.message, true);
      }
    );
  }

  function onStartAgain(event) {
    var button = event.currentTarget;
    button.disabled = true;
    say("restart-feedback", text.restarting);
    postJson(data.restartUrl, { quantity: data.quantity }).then(
      function (json) {
        window.location.assign(json.checkoutUrl);
      },
      function (err) {
        button.disabled = false;
        say("restart-feedback", fill(text.restartFailed, { error: err.message }), true);
      }
    );
  }

  function on(id, handler) {
    var el = $(id);
    if (el) el.addEventListener("click", handler);
  }

  shared.bindCopy(data.bolt11, text);
  on("dev-pay", onDevPay);
  on("start-again", onStartAgain);

  if (status === "unpaid") {
    // At zero the server says whether it expired or was paid at the wire.
    stopCountdown = shared.startCountdown(data.expiresAt, data.serverNow, poll);
    pollTimer = setTimeout(poll, POLL_MS);
    listen();
    // Back from the wallet app: check at once rather than at the next tick.
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && status === "unpaid") poll();
    });
  }
})();
