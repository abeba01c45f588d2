// @ts-check
// A template's environment version in the Templates list: pinned to one (its runs go only to an endpoint
// serving it, else they are refused) or following the newest, and whether its environment's endpoint serves
// that version now. A designer changes the pin here (PUT /templates/{name} {environment_version}).
import { el } from "./dom.js";

/**
 * @typedef {object} TemplateSummary
 * @property {string} name
 * @property {string | null} environment
 * @property {number | null} [environment_version] the pin; null or absent: follows the newest
 * @property {number} version
 */

/**
 * @typedef {object} Serving
 * @property {"served" | "mismatch" | "older" | "not-ready" | "none"} state
 * @property {string} text
 */

/**
 * What the endpoint does for this template: serves its version, another one (refused when pinned; followed
 * when not), is not ready, or there is none.
 * @param {TemplateSummary} t
 * @param {number | null} newest the environment's newest version (null: unknown)
 * @param {{state: string, version?: number | null} | null} endpoint its environment's endpoint
 * @returns {Serving}
 */
export function serving(t, newest, endpoint) {
  const pinned = t.environment_version ?? null;
  const wanted = pinned ?? newest;
  if (!endpoint) return { state: "none", text: "no endpoint" };
  if (endpoint.state !== "InService") return { state: "not-ready", text: `endpoint ${endpoint.state}` };
  const served = endpoint.version ?? null;
  if (served === null || wanted === null || served === wanted) return { state: "served", text: "served" };
  if (pinned !== null) return { state: "mismatch", text: `endpoint serves v${served}: runs refused` };
  return { state: "older", text: `endpoint serves v${served}` };
}

/**
 * The pin line of a bound template's row: the pin (a select for a designer, text for an artist) and what its
 * endpoint serves. `onPin(version | null)` is called when a designer changes it.
 * @param {TemplateSummary} t
 * @param {{newest: number | null, endpoint: any, artist: boolean, onPin: (v: number | null) => void}} context
 */
export function pinLine(t, { newest, endpoint, artist, onPin }) {
  const pinned = t.environment_version ?? null;
  const follows = `follows newest${newest ? ` (v${newest})` : ""}`;
  const label = pinned === null ? follows : `pinned to v${pinned}`;
  let control;
  if (artist) {
    control = el("span", { class: "sagemaker-muted", "data-testid": "sagemaker-template-pin" }, label);
  } else {
    const versions = [];
    for (let v = newest ?? 0; v >= 1; v--) versions.push(v);
    if (pinned !== null && !versions.includes(pinned)) versions.unshift(pinned); // deleted since, or not listed yet
    control = el(
      "select",
      {
        class: "sagemaker-input sagemaker-pin-select",
        title: "Pin the template to an environment version (its runs go only to an endpoint serving it)",
        "data-testid": "sagemaker-template-pin",
        onchange: (/** @type {Event} */ event) => {
          const value = /** @type {HTMLSelectElement} */ (event.target).value;
          onPin(value === "" ? null : Number(value));
        },
      },
      [
        el("option", { value: "", selected: pinned === null }, follows),
        ...versions.map((v) => el("option", { value: String(v), selected: v === pinned }, `pinned to v${v}`)),
      ],
    );
  }
  const state = serving(t, newest, endpoint);
  const note = el(
    "span",
    {
      class: state.state === "mismatch" ? "sagemaker-warning" : "sagemaker-muted",
      title: "what its environment's endpoint serves",
      "data-testid": "sagemaker-template-serving",
      "data-serving": state.state,
    },
    state.text,
  );
  return el(
    "div",
    {
      class: "sagemaker-template-pinline",
      "data-testid": "sagemaker-template-env-version",
      "data-pinned": pinned === null ? "" : String(pinned),
    },
    [control, note],
  );
}
