// Flash-sale pages: times that count down (<time data-countdown="ISO" data-countdown-prefix="…"
// data-countdown-done="…">), and a scheduled sale's badge that says "Live now" at its start
// (data-live-at). Without this file the time itself shows; htmx swaps new ones in, so every
// tick looks again.
(() => {
  const pad = (n) => String(n).padStart(2, "0");
  const left = (ms) => {
    const s = Math.ceil(ms / 1000);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d > 0) return `${d}d ${h}h ${pad(m)}m`;
    if (h > 0) return `${h}h ${pad(m)}m ${pad(sec)}s`;
    return `${m}m ${pad(sec)}s`;
  };
  const tick = () => {
    const now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach((el) => {
      const at = Date.parse(el.dataset.countdown);
      if (Number.isNaN(at)) return;
      const prefix = el.dataset.countdownPrefix || "";
      const text = at > now ? prefix + left(at - now) : (el.dataset.countdownDone || "now");
      if (el.textContent !== text) el.textContent = text;
    });
    document.querySelectorAll("[data-live-at]").forEach((el) => {
      if (Date.parse(el.dataset.liveAt) > now) return;
      el.textContent = "Live now";
      el.classList.replace("fs-status-scheduled", "fs-status-live");
      delete el.dataset.liveAt;
    });
  };
  document.addEventListener("DOMContentLoaded", () => {
    tick();
    setInterval(tick, 1000);
    document.body.addEventListener("htmx:afterSwap", tick);
  });
})();
