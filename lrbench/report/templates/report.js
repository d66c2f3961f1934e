// Sort any table.sortable by a column: click its header (again to reverse). A column is sorted
// as numbers when most of its cells start with one ("12.5 ± 0.3", "5%", "inf"), else as text;
// cells without a number ("–", "diverged") stay at the bottom either way.
(function () {
  "use strict";
  function key(cell) {
    var text = (cell.getAttribute("data-sort") || cell.textContent).trim();
    var number = /^inf\b/.test(text) ? Infinity : parseFloat(text);
    return { text: text, number: number };
  }
  function numeric(keys) {
    var numbers = 0, words = 0;
    keys.forEach(function (k) {
      if (!isNaN(k.number)) numbers += 1;
      else if (k.text && k.text !== "–") words += 1;
    });
    return numbers > 0 && numbers >= words;
  }
  function sortBy(table, column, th) {
    var body = table.tBodies[0];
    var descending = th.getAttribute("aria-sort") === "ascending";
    var rows = Array.prototype.slice.call(body.rows).map(function (row) {
      return { row: row, key: key(row.cells[column]) };
    });
    var asNumbers = numeric(rows.map(function (r) { return r.key; }));
    var sign = descending ? -1 : 1;
    rows.sort(function (a, b) {
      if (asNumbers) {
        var an = !isNaN(a.key.number), bn = !isNaN(b.key.number);
        if (an !== bn) return an ? -1 : 1;
        if (an && a.key.number !== b.key.number) return sign * (a.key.number < b.key.number ? -1 : 1);
        if (an) return 0;
      }
      return sign * a.key.text.localeCompare(b.key.text, undefined, { numeric: true });
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
      other.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      var button = document.createElement("button");
      button.type = "button";
      button.title = "sort by this column";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, column, th); });
    });
  });
  // Printing shows what folded sections hold; they fold again afterwards.
  var opened = [];
  window.addEventListener("beforeprint", function () {
    opened = Array.prototype.filter.call(document.querySelectorAll("details:not([open])"),
      function (d) { d.open = true; return true; });
  });
  window.addEventListener("afterprint", function () {
    opened.forEach(function (d) { d.open = false; });
    opened = [];
  });
})();
