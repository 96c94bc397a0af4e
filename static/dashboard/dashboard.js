// The merchant site's small behaviours: copy buttons, image fallback and preview, the
// brand colour swatch. Everything works without it except copying to the clipboard.
"use strict";
(function () {
  function copy(button) {
    var text = button.getAttribute("data-copy");
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () {});
    }
  }
  function fallback(img) {
    img.hidden = true;
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) { copy(button); }
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("img[data-fallback]").forEach(function (img) {
      img.addEventListener("error", function () { fallback(img); });
      if (img.complete && img.getAttribute("src") && img.naturalWidth === 0) { fallback(img); }
    });
    var imageField = document.getElementById("id_image_url");
    var preview = document.querySelector("#image-preview img");
    if (imageField && preview) {
      imageField.addEventListener("input", function () {
        var url = imageField.value.trim();
        if (/^https?:\/\//i.test(url)) { preview.hidden = false; preview.src = url; }
        else { preview.hidden = true; preview.removeAttribute("src"); }
      });
    }
    var colour = document.getElementById("id_brand_colour");
    var swatch = document.getElementById("brand-swatch");
    if (colour && swatch) {
      var paint = function () {
        var value = colour.value.trim();
        swatch.style.background = /^#[0-9a-f]{6}$/i.test(value) ? value : "transparent";
      };
      colour.addEventListener("input", paint);
      paint();
    }
  });
})();
