/* Large-text mode, remembered per device.
 *
 * Loaded synchronously in <head> so the class is on <html> before the first paint. Only this
 * display preference lives in localStorage; credentials never do (they sit in an HttpOnly
 * cookie this script cannot read).
 */
(function () {
  "use strict";
  var KEY = "hc-large-text";
  var root = document.documentElement;

  function stored() {
    try {
      return window.localStorage.getItem(KEY) === "1";
    } catch (e) {
      return false; // storage blocked (private mode): the switch still works for this page
    }
  }

  function apply(on) {
    root.classList.toggle("large-text", on);
  }

  apply(stored());

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("large-text");
    if (!button) {
      return;
    }
    var words = {};
    try {
      words = JSON.parse(document.getElementById("hc-text").textContent);
    } catch (e) {
      words = {};
    }

    function show(on) {
      button.setAttribute("aria-pressed", on ? "true" : "false");
      if (words.large_text_on) {
        button.textContent = on ? words.large_text_on : words.large_text_off;
      }
    }

    show(root.classList.contains("large-text"));
    button.addEventListener("click", function () {
      var on = !root.classList.contains("large-text");
      apply(on);
      show(on);
      try {
        window.localStorage.setItem(KEY, on ? "1" : "0");
      } catch (e) {
        /* not remembered, still applied */
      }
    });
  });
})();
