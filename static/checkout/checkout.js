// The hosted checkout page: live status (pushed over a WebSocket, /ws/checkout/<id>; while
// the socket is not open, a poll of /checkout/<id>/status every second), countdown, copy
// button, dev wallet, and "start again" for an expired product checkout.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("checkout-data").textContent);
  var POLL_MS = 1000;
  var LABELS = { unpaid: "Waiting for payment", paid: "Paid", expired: "Expired" };
  var status = data.status;
  // The server's clock decides expiry: remember how far this device's clock is off.
  var clockOffset = Date.parse(data.serverNow) - Date.now();
  var expiresAt = Date.parse(data.expiresAt);
  var pollTimer = null;
  var countdownTimer = null;
  var socket = null;
  var socketOpen = false;
  var socketRetry = 1000;

  function $(id) {
    return document.getElementById(id);
  }

  function say(id, text, isError) {
    var el = $(id);
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  function show(newStatus) {
    if (newStatus === status) return;
    var wasUnpaid = status === "unpaid";
    status = newStatus;
    var label = $("status");
    label.textContent = LABELS[status] || status;
    label.className = "status status-" + status;
    ["unpaid", "paid", "expired"].forEach(function (s) {
      $("state-" + s).hidden = s !== status;
    });
    if (status !== "unpaid") {
      clearTimeout(pollTimer);
      clearInterval(countdownTimer);
      if (socket) socket.close();
    }
    if (status === "paid" && wasUnpaid) followRedirectSoon();
    var heading = document.querySelector("#state-" + status + " h2");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: false });
    }
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

  // --- countdown -----------------------------------------------------------------------
  function pad(n) {
    return n < 10 ? "0" + n : "" + n;
  }

  function tick() {
    var left = Math.max(0, Math.floor((expiresAt - (Date.now() + clockOffset)) / 1000));
    var h = Math.floor(left / 3600);
    var m = Math.floor((left % 3600) / 60);
    var s = left % 60;
    $("countdown").textContent = (h ? h + ":" + pad(m) : m) + ":" + pad(s);
    if (left === 0) poll(); // the server says whether it expired or was paid at the wire
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
      say("redirect-note", "Taking you back to the shop in " + left + " s…");
      left -= 1;
    }
  }

  // --- copy ----------------------------------------------------------------------------
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http (not localhost): the old way still works.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function onCopy() {
    copyText(data.bolt11).then(
      function () {
        say("feedback", "Invoice copied. Paste it into your wallet.");
      },
      function () {
        say("feedback", "Could not copy: open “Show the invoice as text” and copy it.", true);
        document.querySelector(".invoice-text").open = true;
      }
    );
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
    say("restart-feedback", "Making a new invoice…");
    postJson(data.restartUrl, { quantity: data.quantity }).then(
      function (json) {
        window.location.assign(json.checkoutUrl);
      },
      function (err) {
        button.disabled = false;
        say("restart-feedback", "Could not start again: " + err.message, true);
      }
    );
  }

  function on(id, handler) {
    var el = $(id);
    if (el) el.addEventListener("click", handler);
  }

  on("copy-invoice", onCopy);
  on("dev-pay", onDevPay);
  on("start-again", onStartAgain);

  if (status === "unpaid") {
    tick();
    countdownTimer = setInterval(tick, 1000);
    pollTimer = setTimeout(poll, POLL_MS);
    listen();
    // Back from the wallet app: check at once rather than at the next tick.
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && status === "unpaid") poll();
    });
  }
})();
