// Live pages: the server's event stream says when the ledger changed; the page then
// fetches itself again and swaps its <main>, so nothing reloads and focus stays where it
// was when possible. No framework, nothing from the internet.
(function () {
  "use strict";
  var source = document.body.getAttribute("data-live");
  if (!source || !window.EventSource) { return; }
  var status = document.getElementById("live");
  function say(text) { if (status) { status.textContent = text; } }
  var refreshing = false, again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (answer.redirected) { window.location.assign(answer.url); return null; }
        return answer.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var main = document.getElementById("main");
        var focused = document.activeElement && document.activeElement.id;
        if (fresh && main) {
          main.innerHTML = fresh.innerHTML;
          if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
        }
        say("live · updated " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("live · update failed, retrying on the next change"); })
      .finally(function () { refreshing = false; if (again) { again = false; refresh(); } });
  }
  var events = new EventSource(source);
  events.addEventListener("hello", function () { say("live"); });
  events.addEventListener("change", refresh);
  events.addEventListener("signedout", function () { events.close(); window.location.assign("/signin"); });
  events.onerror = function () { say("live · reconnecting…"); };
}());
