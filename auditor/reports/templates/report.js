
/* Filter-as-you-type over every table of the report. No network, no eval, text only (textContent).
   Groups ([data-g]: a template, a principal, a section) hold rows ([data-r]); a row is shown when every
   word typed occurs in its own text or in its group's header ([data-gh]). `#q=words` in the URL pre-fills the
   box, and typing keeps the URL in step, so a filtered view can be shared as a link. */
(function () {
  "use strict";
  var input = document.getElementById("filter");
  var output = document.getElementById("shown");
  var groups = Array.prototype.slice.call(document.querySelectorAll("[data-g]"));
  var index = null;
  var timer = 0;

  function build() {
    index = groups.map(function (g) {
      var head = g.querySelector("[data-gh]");
      var headText = head ? head.textContent.toLowerCase() : "";
      var rows = Array.prototype.slice.call(g.querySelectorAll("[data-r]"));
      return {
        el: g,
        wasOpen: g.tagName === "DETAILS" ? g.open : null,
        head: headText,
        // The group's header is part of each row's text: "tpl-linux FAIL" finds that template's FAIL rows.
        rows: rows.map(function (r) {
          return { el: r, text: headText + " " + r.textContent.toLowerCase(), status: r.getAttribute("data-s") || "" };
        })
      };
    });
  }

  function matches(text, terms) {
    for (var i = 0; i < terms.length; i++) { if (text.indexOf(terms[i]) < 0) { return false; } }
    return true;
  }

  function apply(query) {
    if (index === null) { build(); }
    var terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0, total = 0, openable = [], byStatus = {};
    index.forEach(function (g) {
      var visibleRows = 0, headHit = matches(g.head, terms);
      g.rows.forEach(function (r) {
        var ok = terms.length === 0 || matches(r.text, terms);
        if (r.el.hidden === ok) { r.el.hidden = !ok; }
        total += 1;
        if (ok) {
          visibleRows += 1;
          if (r.status) { byStatus[r.status] = (byStatus[r.status] || 0) + 1; }
        }
      });
      shown += visibleRows;
      var visible = terms.length === 0 || visibleRows > 0 || headHit;
      if (g.el.hidden === visible) { g.el.hidden = !visible; }
      if (visible && g.wasOpen !== null) { openable.push(g); }
    });
    // Opening every match of a broad filter over 1,000 templates would lay out 50,000 rows: open a handful only.
    openable.forEach(function (g) { g.el.open = terms.length === 0 ? g.wasOpen : openable.length <= 25; });
    output.value = shown + " of " + total + " rows shown";
    // Rows with data-s are the findings themselves (templates, reads that failed); other tables sum them up.
    ["FAIL", "ERROR", "ACCEPTED"].forEach(function (s) {
      var el = document.querySelector("[data-shown-status='" + s + "']");
      if (el) { el.textContent = String(byStatus[s] || 0); }
    });
    document.body.setAttribute("data-filtered", terms.length ? "yes" : "no");
  }

  function fromHash() {
    var m = /(?:^|[#&])q=([^&]*)/.exec(window.location.hash);
    if (!m) { return ""; }
    try { return decodeURIComponent(m[1].replace(/\+/g, " ")); } catch (e) { return ""; }
  }

  input.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () {
      apply(input.value);
      var url = window.location.pathname + window.location.search + (input.value ? "#q=" + encodeURIComponent(input.value) : "");
      try { window.history.replaceState(null, "", url); } catch (e) { /* a file:// page may refuse: the filter still works */ }
    }, 120);
  });
  window.addEventListener("hashchange", function () { input.value = fromHash(); apply(input.value); });
  // The page as rendered is the unfiltered view (its counters are the server's): index the rows, which on a
  // 1,000-template page reads every row's text, only once there is something to filter.
  input.value = fromHash();
  if (input.value) {
    apply(input.value);
  } else {
    var rows = document.querySelectorAll("[data-g] [data-r]").length;
    output.value = rows + " of " + rows + " rows shown";
  }
  document.body.setAttribute("data-ready", "yes");
})();
