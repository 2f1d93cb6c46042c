/* Progressive enhancement only: every form works without this file.
   - [data-countdown=SECONDS]: counts down from the server's figure (the phone's own clock is
     not trusted); at zero shows data-done text and, with data-reload, reloads the page.
   - [data-wait=SECONDS] on the resend button: disabled while the resend wait runs. */
(function () {
  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function fmt(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h > 0 ? h + ":" + pad(m) : m) + ":" + pad(sec);
  }
  function start(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("[data-countdown]").forEach(function (el) {
      if (el.dataset.started) return;
      el.dataset.started = "1";
      var left = parseInt(el.dataset.countdown, 10) || 0;
      var tick = function () {
        if (left <= 0) {
          el.textContent = el.dataset.done || "0:00";
          if (el.dataset.reload) { window.location.reload(); }
          return;
        }
        el.textContent = fmt(left);
        left -= 1;
        setTimeout(tick, 1000);
      };
      tick();
    });
    (root.querySelectorAll ? root : document).querySelectorAll("[data-wait]").forEach(function (btn) {
      var left = parseInt(btn.dataset.wait, 10) || 0;
      if (left <= 0 || btn.dataset.started) return;
      btn.dataset.started = "1";
      var label = btn.textContent, text = btn.dataset.waitText || "{s}";
      btn.disabled = true;
      var tick = function () {
        if (left <= 0) { btn.disabled = false; btn.textContent = label; return; }
        btn.textContent = text.replace("{s}", left);
        left -= 1;
        setTimeout(tick, 1000);
      };
      tick();
    });
    (root.querySelectorAll ? root : document).querySelectorAll("form[data-once]").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.setAttribute("aria-busy", "true"); });
      });
    });
  }
  function locate() {
    /* "Nearby": the browser asks for the location permission; we explain first and use the
       position only for this one list (it goes in the URL, and is not stored). */
    document.querySelectorAll("[data-locate]").forEach(function (btn) {
      if (!navigator.geolocation) return;
      btn.hidden = false;
      btn.addEventListener("click", function () {
        if (!window.confirm(btn.dataset.ask)) return;
        navigator.geolocation.getCurrentPosition(function (pos) {
          window.location.href = "/?near=" + pos.coords.latitude.toFixed(4) + "," + pos.coords.longitude.toFixed(4);
        });
      });
    });
  }
  function autosubmit() {
    /* [data-autosubmit]: a choice that applies at once (no inline handlers: the content
       security policy forbids them). Without JavaScript the form's <noscript> button does it. */
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { start(document); locate(); autosubmit(); });
  document.addEventListener("htmx:load", function (e) { start(e.target); });
})();
