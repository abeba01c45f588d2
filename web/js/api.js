// @ts-check
// The extension's calls to its own routes: JSON in and out, errors as toasts.
import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";

const TOKEN_KEY = "sagemaker.token"; // per browser: ComfyUI settings are shared by every browser

export class SageMakerError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
    /** Per-field reasons of a 422 (template runs). @type {Record<string, string> | undefined} */
    this.fields = undefined;
    /** The whole answer: a refused prompt carries /prompt's node_errors beside its error. @type {any} */
    this.body = null;
    this.toasted = false; // already said (a role refusal)
  }
}

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/**
 * fetch /api/sagemaker/<path>; resolves to the JSON body, rejects with SageMakerError.
 * @param {string} method @param {string} path @param {unknown} [body] @returns {Promise<any>}
 */
export async function call(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = {};
  const token = getToken();
  if (token) headers["X-SageMaker-Token"] = token;
  /** @type {RequestInit} */
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await api.fetchApi(`/sagemaker${path}`, init);
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data?.error ?? { code: "http_error", message: `${res.status} ${res.statusText}` };
    const failure = new SageMakerError(res.status, err.code, err.message);
    failure.fields = err.fields;
    failure.body = data;
    if (failure.code === "forbidden_for_role") {
      // The server's policy refused a change this ComfyUI's role may not make: say its words, once.
      toast("error", "Not allowed for this ComfyUI's role", failure.message);
      failure.toasted = true;
    }
    throw failure;
  }
  return data;
}

/** @param {"success" | "info" | "warn" | "error"} severity @param {string} summary @param {string} [detail] */
export function toast(severity, summary, detail) {
  app.extensionManager?.toast?.add({ severity, summary, detail, life: severity === "error" || severity === "warn" ? 8000 : 3000 });
}

/** @param {string} summary @param {any} err */
export function toastError(summary, err) {
  if (err?.toasted) return; // already said (a role refusal)
  toast("error", summary, err?.message ?? String(err));
}

/**
 * The extension's own websocket events ("sagemaker.job", ...): ComfyUI's api dispatches every message type as a
 * CustomEvent, once someone listens to it; its published types list only the host's own types.
 * @param {string} type @param {(detail: any) => void} fn
 */
export function onServerEvent(type, fn) {
  /** @type {EventTarget} */ (api).addEventListener(type, (event) => fn(/** @type {CustomEvent} */ (event).detail));
}

// The name rules from GET /sagemaker/rules, fetched once (the server is their one source of truth).
let rulesPromise = null;
export function getRules() {
  rulesPromise ??= call("GET", "/rules").catch((err) => {
    rulesPromise = null; // retry on the next use
    throw err;
  });
  return rulesPromise;
}
