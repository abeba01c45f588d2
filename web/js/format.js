// @ts-check
// Small text helpers shared by the sidebar sections.

const UNITS = ["B", "KB", "MB", "GB", "TB"];

// 1536 -> "1.5 KB" (powers of 1024, one decimal below 10).
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "?";
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 10 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

// plural(1, "pack") -> "1 pack"; plural(2, "pack") -> "2 packs".
export function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

// 4.2 -> "4.2 s"; 125 -> "2 min 5 s".
export function formatDuration(s) {
  if (s === null) return "";
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

// An ISO time as "just now", "2 min ago", "3 h ago", "5 d ago" (older: the date); "" when unreadable.
export function timeAgo(iso, now = Date.now()) {
  const at = Date.parse(iso);
  if (!Number.isFinite(at)) return "";
  const s = Math.max(0, (now - at) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 30 * 86400) return `${Math.round(s / 86400)} d ago`;
  return new Date(at).toLocaleDateString();
}
