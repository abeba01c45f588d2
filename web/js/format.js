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
