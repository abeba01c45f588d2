// The Endpoints section's elapsed time of a start-up step (web/js/step_clock.js): the worker's activity has no
// start time ("starting 1 ComfyUI" said nothing of how long), so the page counts from when it first saw it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { StepClock } from "../../web/js/step_clock.js";

test("a step says how long it has run since the page first saw it", () => {
  const clock = new StepClock();
  assert.equal(clock.label("Env1", "starting 1 ComfyUI", 1_000), "starting 1 ComfyUI");
  assert.equal(clock.label("Env1", "starting 1 ComfyUI", 13_500), "starting 1 ComfyUI (12 s)");
  assert.equal(clock.label("Env1", "starting 1 ComfyUI", 126_000), "starting 1 ComfyUI (2 min 5 s)");
});

test("byte progress is one step; another step, or none, starts the count again", () => {
  const clock = new StepClock();
  clock.label("Env1", "models 0.1 of 7.6 GB", 0);
  assert.equal(clock.label("Env1", "models 2.4 of 7.6 GB", 31_000), "models 2.4 of 7.6 GB (31 s)");
  assert.equal(clock.label("Env1", "starting 1 ComfyUI", 32_000), "starting 1 ComfyUI");
  assert.equal(clock.label("Env1", "", 33_000), "");
  assert.equal(clock.label("Env1", "starting 1 ComfyUI", 40_000), "starting 1 ComfyUI");
  assert.equal(clock.label("Env2", "starting 1 ComfyUI", 45_000), "starting 1 ComfyUI"); // each endpoint its own
  assert.equal(clock.label("Env1", "starting 1 ComfyUI", 45_000), "starting 1 ComfyUI (5 s)");
});
