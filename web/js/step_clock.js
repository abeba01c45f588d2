// @ts-check
// How long an endpoint's current start-up step has run, as this page saw it: the worker's activity ("starting
// 2 ComfyUIs", "models 2.1 of 7.6 GB") carries no start time, so the page notes when each step's text first
// showed (its numbers aside: byte progress moves) and says "starting 2 ComfyUIs (12 s)" (issue 32).
import { formatDuration } from "./format.js";

export class StepClock {
  constructor() {
    /** @type {Map<string, {key: string, at: number}>} endpoint name -> its step and when it was first seen */
    this.seen = new Map();
  }

  /** @param {string} name @param {string} text "" when it does nothing @param {number} [now] @returns {string} */
  label(name, text, now = Date.now()) {
    if (!text) {
      this.seen.delete(name);
      return text;
    }
    const key = text.replace(/\d+(\.\d+)?/g, "#");
    let step = this.seen.get(name);
    if (step?.key !== key) {
      step = { key, at: now };
      this.seen.set(name, step);
    }
    const s = Math.floor((now - step.at) / 1000);
    if (s < 1) return text;
    return `${text} (${s < 60 ? `${s} s` : formatDuration(s)})`;
  }
}
