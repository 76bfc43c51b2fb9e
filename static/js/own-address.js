// The rating page may be the answer to the last item's submit (evaluation.views._next_item_page), at the submit's
// address: its own address goes in the bar and in history as soon as the page is parsed (this script is the page's
// first, deferred), so that a reload, or a return to it, asks for the page rather than posting that rating again.
(function () {
  "use strict";
  const form = document.querySelector("[data-rating-form][data-item-url]");
  const own = form && form.dataset.itemUrl;
  if (own && window.location.pathname !== own) window.history.replaceState(window.history.state, "", own);
})();
