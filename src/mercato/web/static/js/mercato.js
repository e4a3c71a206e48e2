// Small behaviours the pages share. Everything works without JavaScript; this only improves it.
document.addEventListener("DOMContentLoaded", () => {
  // Confirm destructive actions: <button data-confirm="Cancel this order?">
  document.body.addEventListener("click", (event) => {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
});
