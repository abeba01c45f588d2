// @ts-check
// What an endpoint row says of its idle stop (core/idle_stop.py): "stops after 60 min idle" while it runs,
// "stopped after 60 min idle, 2 h ago" once the idle stop stopped it. Nothing when it never stops by itself.
import { timeAgo } from "./format.js";

/**
 * @param {{state: string, idle_stop_minutes?: number, stopped_by?: string | null, stopped_at?: string | null}} e
 * @param {number} [now]
 * @returns {string}
 */
export function idleText(e, now = Date.now()) {
  const minutes = e.idle_stop_minutes ?? 0;
  if (e.state === "Stopped") {
    if (e.stopped_by !== "idle") return "";
    const when = e.stopped_at ? `, ${timeAgo(e.stopped_at, now)}` : "";
    return minutes > 0 ? `stopped after ${minutes} min idle${when}` : `stopped for idleness${when}`;
  }
  if (minutes <= 0 || e.state === "Deleting") return "";
  return `stops after ${minutes} min idle`;
}
