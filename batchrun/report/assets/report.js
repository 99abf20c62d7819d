/* batchrun report: filters by state, model and text. Reads only data-* attributes and never
   builds HTML from job data, so a prompt can never become markup. */
(function () {
  "use strict";
  var state = document.getElementById("f-state");
  var model = document.getElementById("f-model");
  var text = document.getElementById("f-text");
  var shown = document.getElementById("shown");
  var nothing = document.getElementById("nothing");
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var chips = Array.prototype.slice.call(document.querySelectorAll(".chip[data-state]"));

  function apply() {
    var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
    var count = 0;
    cards.forEach(function (card) {
      var haystack = card.getAttribute("data-text");
      var visible = (!state.value || card.getAttribute("data-state") === state.value) &&
        (!model.value || card.getAttribute("data-model") === model.value) &&
        words.every(function (word) { return haystack.indexOf(word) !== -1; });
      card.hidden = !visible;
      if (visible) { count += 1; }
    });
    chips.forEach(function (chip) {
      chip.classList.toggle("active", chip.getAttribute("data-state") === state.value);
    });
    shown.textContent = count + " of " + cards.length + " jobs shown";
    nothing.hidden = count !== 0;
  }

  chips.forEach(function (chip) {
    chip.addEventListener("click", function () {
      var wanted = chip.getAttribute("data-state");
      state.value = state.value === wanted ? "" : wanted;
      apply();
    });
  });
  [state, model].forEach(function (control) { control.addEventListener("change", apply); });
  text.addEventListener("input", apply);
  apply();
})();
