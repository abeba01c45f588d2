// @ts-check
// This ComfyUI's role on a shared store, from GET /sagemaker/health: "designer" (the default) or
// "artist". The server enforces it (server_routes/policy.py); the page only mirrors it: an artist's
// sidebar offers no designer actions and an artist's Run always goes to the endpoint (switch.js).
import { call } from "./api.js";

let role = null; // null until /health said it (a page that still needs its token does not know)
let identity = null; // {instance, name, user, key}
let loading = null;
const listeners = new Set();

// A /health answer (the sidebar reads one at every render): remember what it says.
export function learnRole(health) {
  if (typeof health?.role !== "string") return;
  const changed = health.role !== role;
  role = health.role;
  identity = health.identity ?? null;
  if (changed) for (const fn of [...listeners]) fn(role);
}

// Read /health once (at setup: Run is routed by the role before the sidebar is ever opened).
export function loadRole() {
  loading ??= call("GET", "/health").then(learnRole, () => {
    loading = null; // not readable now (a token is needed first): the next render tells
  });
  return loading;
}

// The configuration changed (Connect): read the role again, whether or not the sidebar is shown.
export function reloadRole() {
  loading = null;
  return loadRole();
}

export const roleKnown = () => role !== null;
export const isArtist = () => role === "artist";
export const myIdentity = () => identity;

export function onRole(fn) {
  listeners.add(fn);
}
