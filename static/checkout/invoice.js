// What the buyer's pages share (the checkout page and the Shopify payment page): copying
// the invoice, the countdown to its expiry, printing a receipt, and images that fail to
// load (a product image, a logo) hidden rather than left as a broken frame.
// Loaded before the page's own script, which calls window.ZapgateInvoice.
(function () {
  "use strict";

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

  function say(id, text, isError) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  // The copy button (#copy-invoice) copies the invoice and says so in #feedback.
  function bindCopy(bolt11, text) {
    var button = document.getElementById("copy-invoice");
    if (!button) return;
    button.addEventListener("click", function () {
      copyText(bolt11).then(
        function () {
          say("feedback", text.copied);
        },
        function () {
          say("feedback", text.copyFailed, true);
          var details = document.querySelector(".invoice-text");
          if (details) details.open = true;
        }
      );
    });
  }

  function pad(n) {
    return n < 10 ? "0" + n : "" + n;
  }

  // Counts down to expiresAt in #countdown by the server's clock (serverNow says how far
  // this device's clock is off); calls onZero at every tick once it reached zero.
  // Returns a function that stops it.
  function startCountdown(expiresAtIso, serverNowIso, onZero) {
    var el = document.getElementById("countdown");
    if (!el) return function () {};
    var clockOffset = Date.parse(serverNowIso) - Date.now();
    var expiresAt = Date.parse(expiresAtIso);
    function tick() {
      var left = Math.max(0, Math.floor((expiresAt - (Date.now() + clockOffset)) / 1000));
      var h = Math.floor(left / 3600);
      var m = Math.floor((left % 3600) / 60);
      var s = left % 60;
      el.textContent = (h ? h + ":" + pad(m) : m) + ":" + pad(s);
      if (left === 0 && onZero) onZero();
    }
    tick();
    var timer = setInterval(tick, 1000);
    return function () {
      clearInterval(timer);
    };
  }

  // An image marked data-fallback that fails to load is hidden (no broken frame). It may
  // have failed before this script ran: then it is complete with no width.
  function hideBroken(img) {
    img.hidden = true;
    img.classList.add("image-failed");
  }

  function watchImages(root) {
    var images = (root || document).querySelectorAll("img[data-fallback]");
    Array.prototype.forEach.call(images, function (img) {
      if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) hideBroken(img);
      else
        img.addEventListener("error", function () {
          hideBroken(img);
        });
    });
  }

  // Print buttons may arrive later (a receipt fetched when the page turned paid).
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target && target.closest && target.closest("#print-receipt")) window.print();
  });

  watchImages(document);

  window.ZapgateInvoice = {
    copyText: copyText,
    say: say,
    bindCopy: bindCopy,
    startCountdown: startCountdown,
    watchImages: watchImages,
  };
})();
