/* Prison health indicators report: charts, sortable tables and the area picker.
   Plain ES2017, no dependencies other than the Plotly bundle shipped beside the pages. */
(function () {
  "use strict";

  function renderCharts() {
    var charts = document.querySelectorAll(".js-plotly[data-figure]");
    if (!charts.length) return;
    if (typeof window.Plotly === "undefined") return; /* the data tables remain */
    charts.forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-figure"));
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      el.innerHTML = "";
      window.Plotly.newPlot(el, figure.data, figure.layout, figure.config || { displaylogo: false, responsive: true });
    });
  }

  function cellValue(row, index, type) {
    var cell = row.children[index];
    if (!cell) return null;
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (type === "number") {
      if (raw === "" || raw === null) return null;
      var n = parseFloat(raw);
      return isNaN(n) ? null : n;
    }
    return raw.toLocaleLowerCase();
  }

  function sortTable(table, header, button) {
    var headers = Array.prototype.slice.call(header.parentNode.children);
    var index = headers.indexOf(header);
    var type = button.getAttribute("data-sort-type") || "text";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    headers.forEach(function (th) { if (th.hasAttribute("aria-sort")) th.setAttribute("aria-sort", "none"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, type), y = cellValue(b, index, type);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   /* [c], [x] and [z] always last */
      if (y === null) return -1;
      var order = type === "number" ? x - y : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    var status = table.closest("section") && table.closest("section").querySelector(".sort-status");
    if (!status) status = document.querySelector(".sort-status");
    if (status) {
      status.textContent = "Table sorted by " + button.textContent.trim() + ", " +
        (ascending ? "ascending" : "descending") + ".";
    }
  }

  function setUpSorting() {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("thead th .sort-button").forEach(function (button) {
        button.addEventListener("click", function () { sortTable(table, button.closest("th"), button); });
      });
    });
  }

  function setUpPicker() {
    document.querySelectorAll("form.js-area-picker").forEach(function (form) {
      form.hidden = false;
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var select = form.querySelector("select");
        if (select && select.value) window.location.href = select.value;
      });
    });
  }

  /* "Behind the figure": counts by reason for the chosen prison and month (the same sentence as
     pipelines/report.py behind_text, from the embedded, disclosure-controlled counts). */
  function formatCount(n) {
    if (n === null || n === undefined) return "[c]";
    return Number(n).toLocaleString("en-GB", { maximumFractionDigits: 1, minimumFractionDigits: Number.isInteger(n) ? 0 : 1 });
  }

  function behindText(data, entry) {
    if (entry === null || typeof entry !== "object") {
      return data.notes[entry === null || entry === undefined ? "none" : entry] || data.notes.none;
    }
    var parts = [];
    data.reasons.forEach(function (label, i) {
      var count = entry.c[i];
      if (count === 0) return;
      if (data.kind === "rows") {
        parts.push(count === null ? label + ": [c]"
          : label + ": " + formatCount(count[0]) + " of " + formatCount(count[1]) + " rows loaded");
      } else {
        parts.push(formatCount(count) + " " + label);
      }
    });
    var text = (parts.length ? parts.join("; ") : "nothing counted") + ".";
    if (data.population && Object.prototype.hasOwnProperty.call(entry, "p")) {
      text += " " + data.population.charAt(0).toUpperCase() + data.population.slice(1) + ": " + formatCount(entry.p) + ".";
    }
    if (entry.f) {
      text += " Published figure: numerator " + formatCount(entry.f[0]) + ", denominator " + formatCount(entry.f[1]) +
        ", value " + (entry.f[2] || "[x]") + ".";
    }
    return text;
  }

  function setUpBehind() {
    document.querySelectorAll("form.js-behind").forEach(function (form) {
      var source = document.getElementById(form.getAttribute("data-source"));
      var output = document.getElementById(form.getAttribute("data-output"));
      if (!source || !output) return;
      var data = JSON.parse(source.textContent);
      var prison = form.querySelector("select[name=prison]");
      var month = form.querySelector("select[name=month]");
      var prisons = data.prisons.map(function (p) { return p[0]; });
      var months = data.months.map(function (m) { return m[0]; });
      function update() {
        var p = prisons.indexOf(prison.value), m = months.indexOf(month.value);
        if (p < 0 || m < 0) return;
        output.textContent = data.prisons[p][1] + ", " + data.months[m][1] + ": " + behindText(data, data.cells[p][m]);
      }
      prison.addEventListener("change", update);
      month.addEventListener("change", update);
      form.addEventListener("submit", function (event) { event.preventDefault(); update(); });
      form.hidden = false;
      var table = form.parentNode.querySelector("details.behind-table");
      if (table) table.open = false; /* the picker replaces the static table; it stays one click away */
    });
  }

  function start() {
    setUpSorting();
    setUpPicker();
    setUpBehind();
    renderCharts();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
