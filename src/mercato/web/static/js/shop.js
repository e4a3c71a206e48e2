// Storefront behaviours. Every page works without this file; it only makes them smoother:
// keyboard use of the search suggestions, the variant picker's live price and stock, selects
// that apply themselves, and one submit per checkout form.
document.documentElement.classList.add("js");

document.addEventListener("DOMContentLoaded", () => {
  const body = document.body;

  // --- search suggestions: ArrowDown from the box into the list, arrows within, Escape out --
  const box = document.getElementById("q");
  const panel = document.getElementById("search-suggestions");
  const links = () => Array.from(panel ? panel.querySelectorAll("a.suggestion") : []);
  const setOpen = (open) => {
    if (!box || !panel) return;
    panel.hidden = !open;
  };
  if (box && panel) {
    setOpen(false);
    body.addEventListener("htmx:afterSwap", (event) => {
      if (event.detail.target === panel) setOpen(links().length > 0 && box.value.trim() !== "");
    });
    box.addEventListener("input", () => { if (!box.value.trim()) setOpen(false); });
    box.addEventListener("keydown", (event) => {
      const items = links();
      if (event.key === "ArrowDown" && items.length) {
        event.preventDefault();
        setOpen(true);
        items[0].focus();
      } else if (event.key === "Escape") {
        setOpen(false);
      }
    });
    panel.addEventListener("keydown", (event) => {
      const items = links();
      const index = items.indexOf(document.activeElement);
      if (event.key === "ArrowDown") {
        event.preventDefault();
        items[Math.min(index + 1, items.length - 1)]?.focus();
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        if (index <= 0) box.focus(); else items[index - 1].focus();
      } else if (event.key === "Escape") {
        event.preventDefault();
        setOpen(false);
        box.focus();
      }
    });
    document.addEventListener("click", (event) => {
      if (!event.target.closest("[data-autocomplete]")) setOpen(false);
    });
  }

  // --- variant picker: the chosen variant's price, "was" price, stock and SKU ---------------
  body.addEventListener("change", (event) => {
    const radio = event.target.closest("input[name=variant_id][data-price]");
    if (!radio) return;
    const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
    set("variant-price", radio.dataset.price);
    set("variant-sku", radio.dataset.sku);
    const compare = document.getElementById("variant-compare");
    if (compare) {
      compare.hidden = !radio.dataset.compare;
      const s = compare.querySelector("s");
      if (s) s.textContent = radio.dataset.compare;
    }
    const stock = document.getElementById("variant-stock");
    if (stock) {
      const available = Number(radio.dataset.available || 0);
      stock.textContent = radio.dataset.stock;
      stock.className = "stock " + (available <= 0 ? "stock-out"
        : radio.dataset.stock.startsWith("Only") ? "stock-low" : "stock-ok");
      const form = radio.closest("form");
      const button = form && form.querySelector("button[type=submit]");
      if (button) button.disabled = available <= 0;
      const qty = form && form.querySelector("input[name=quantity]");
      if (qty && available > 0) qty.max = String(Math.min(available, Number(qty.dataset.max || qty.max || 99)));
    }
    if (window.history.replaceState) {
      const url = new URL(window.location.href);
      url.searchParams.set("variant", radio.value);
      window.history.replaceState(window.history.state, "", url);
    }
  });

  // --- variant picker: when the chosen variant would arrive, who sells it ------------------
  body.addEventListener("change", (event) => {
    const radio = event.target.closest("input[name=variant_id]");
    if (!radio) return;
    // Its arrival dates and who sells it (the buy box and "Other sellers").
    for (const id of ["variant-arrives", "variant-sellers"]) {
      const box = document.getElementById(id);
      if (!box) continue;
      for (const line of box.querySelectorAll("[data-variant]")) {
        line.hidden = line.dataset.variant !== radio.value;
      }
    }
  });

  // --- selects that apply at once (sort order, estimate country) -----------------------------
  body.addEventListener("change", (event) => {
    const select = event.target.closest("select[data-autosubmit]");
    if (select && select.form) select.form.requestSubmit();
  });

  // --- one submit per checkout form (a double click would post twice) -----------------------
  body.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-submit-once]");
    if (!form) return;
    const button = event.submitter;
    if (!button || button.value !== "place") return;
    if (form.dataset.submitted === "1") { event.preventDefault(); return; }
    form.dataset.submitted = "1";
    button.setAttribute("aria-busy", "true");
    button.textContent = "Placing your order…";
  });

  // --- filters start folded on a phone, where they would push the results down --------------
  const fold = () => {
    if (!window.matchMedia("(max-width: 860px)").matches) return;
    document.querySelectorAll("details[data-collapse-narrow]").forEach((d) => { d.open = false; });
  };
  fold();
  body.addEventListener("htmx:afterSettle", fold);

  // --- the checkout's error message takes the focus, so it is read out first ----------------
  const error = document.getElementById("checkout-error");
  if (error) error.focus();
});
