/* gatekeeper console: live updates over server-sent events.
 *
 * No inline scripts anywhere (the CSP forbids them): this file reads its
 * configuration from data- attributes on <body>:
 *   data-fragment     URL of the server-rendered fragment to re-fetch
 *   data-live-target  id of the element that fragment replaces
 *   data-request-id   (detail page) only events about this request matter
 *   data-now          the server's clock, to count time left without skew
 * The fragment is HTML rendered and escaped by the server; it is parsed with
 * DOMParser (which runs no scripts) and swapped in whole.
 */
(function () {
  "use strict";

  var body = document.body;
  var live = document.getElementById("live");
  var fragmentUrl = body.getAttribute("data-fragment");
  var targetId = body.getAttribute("data-live-target");
  var requestId = body.getAttribute("data-request-id");
  var skew = 0; // server clock minus this browser's clock, in ms

  function readClock(el) {
    var at = el && Date.parse(el.getAttribute("data-now") || "");
    if (at) {
      skew = at - Date.now();
    }
  }

  function setLive(state, text) {
    if (!live) {
      return;
    }
    live.hidden = false;
    live.setAttribute("data-state", state);
    live.textContent = text;
  }

  // -- time left, counted down every second --------------------------------
  function formatLeft(seconds) {
    if (seconds <= 0) {
      return "expired";
    }
    if (seconds >= 3600) {
      var m = Math.floor((seconds % 3600) / 60);
      return Math.floor(seconds / 3600) + "h" + (m < 10 ? "0" : "") + m + "m";
    }
    if (seconds >= 60) {
      var s = seconds % 60;
      return Math.floor(seconds / 60) + "m" + (s < 10 ? "0" : "") + s + "s";
    }
    return seconds + "s";
  }

  function tick() {
    var now = Date.now() + skew;
    var nodes = document.querySelectorAll(".time-left[data-expires]");
    var lapsed = false;
    for (var i = 0; i < nodes.length; i++) {
      var expires = Date.parse(nodes[i].getAttribute("data-expires"));
      if (!expires) {
        continue;
      }
      var seconds = Math.floor((expires - now) / 1000);
      var text = formatLeft(seconds);
      if (nodes[i].textContent !== text) {
        nodes[i].textContent = text;
      }
      var urgent = seconds < 60;
      nodes[i].classList.toggle("urgent", urgent);
      if (seconds <= 0 && !nodes[i].classList.contains("lapsed")) {
        nodes[i].classList.add("lapsed");
        lapsed = true;
      }
    }
    if (lapsed) {
      schedule(); // let the server say what expiry did
    }
  }

  // -- re-fetching the live fragment ----------------------------------------
  var timer = null;
  var inflight = false;
  var again = false;

  function schedule() {
    if (!fragmentUrl || !targetId) {
      return;
    }
    if (timer) {
      clearTimeout(timer);
    }
    timer = setTimeout(function () {
      timer = null;
      refresh();
    }, 250); // debounce: a burst of events costs one fetch
  }

  function refresh() {
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    fetch(fragmentUrl, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
      redirect: "follow"
    })
      .then(function (response) {
        if (response.redirected && response.url.indexOf("/login") !== -1) {
          window.location.reload(); // signed out meanwhile: the page itself goes to /login
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        if (html !== null) {
          swap(html);
        }
      })
      .catch(function () {
        setLive("error", "update failed");
      })
      .then(function () {
        inflight = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var fresh = doc.getElementById(targetId);
    var old = document.getElementById(targetId);
    if (!fresh || !old) {
      return;
    }
    var node = document.importNode(fresh, true);
    old.parentNode.replaceChild(node, old);
    readClock(node);
    afterSwap(node);
    tick();
  }

  function afterSwap(node) {
    var fields = document.getElementById("decide-fields");
    if (!fields) {
      return;
    }
    var closed = node.getAttribute("data-open") === "0";
    var stale = !!node.querySelector("#stale");
    if (closed || stale) {
      fields.disabled = true; // decided elsewhere, or the arguments changed: reload first
    }
  }

  // -- server-sent events ------------------------------------------------------
  function relevant(data) {
    if (!requestId) {
      return true;
    }
    try {
      var event = JSON.parse(data);
      // "resync": the feed (re)started and anything may have changed.
      return event.status === "resync" || event.id === requestId;
    } catch (e) {
      return true;
    }
  }

  function connect() {
    var source = new EventSource("/api/v1/events");
    var dropped = false;
    source.addEventListener("open", function () {
      setLive("on", "live");
      dropped = false;
      // Whatever changed between this page being rendered (or the feed
      // dropping) and now was never sent to us: read it once.
      schedule();
    });
    source.addEventListener("error", function () {
      dropped = true;
      setLive("reconnecting", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, 5000); // the browser gave up (e.g. 401): try again later
      }
    });
    source.addEventListener("request", function (event) {
      if (relevant(event.data)) {
        schedule();
      }
    });
  }

  readClock(body);
  if (fragmentUrl || document.querySelector(".time-left[data-expires]")) {
    setInterval(tick, 1000);
    tick();
  }
  if (fragmentUrl && targetId) {
    if (window.EventSource) {
      setLive("connecting", "connecting…");
      connect();
    } else {
      setLive("error", "no live updates");
    }
  }
})();
