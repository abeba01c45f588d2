// @ts-check
// "sagemaker.changed" {collection}: another ComfyUI on the store changed a shared list (templates,
// environments, endpoints, executions; the server watches the store and tells within ~2 s). Each
// subscriber reloads once per burst: a publish changes environments and endpoints several times.
import { onServerEvent } from "./api.js";

const QUIET_MS = 300;
const subscriptions = new Set(); // {collections, fn, timer}

function changed(collection) {
  for (const s of subscriptions) {
    if (!s.collections.has(collection)) continue;
    clearTimeout(s.timer);
    s.timer = setTimeout(s.fn, QUIET_MS);
  }
}

// Registered at load: ComfyUI's api only dispatches event types someone listens to.
onServerEvent("sagemaker.changed", (detail) => changed(detail?.collection));

// A change made by this page that other sections show (e.g. a publish that bound templates).
export const changedHere = changed;

// Calls fn() after changes to any of `collections` have been quiet for a moment.
export function onShared(collections, fn) {
  subscriptions.add({ collections: new Set([].concat(collections)), fn, timer: null });
}
