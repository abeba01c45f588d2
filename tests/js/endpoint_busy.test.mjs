// The Endpoints section's line of what each of a worker's ComfyUIs is doing (web/js/endpoint_busy.js), from the
// `comfyuis` of the endpoint views the server sends (the worker's /status).
import assert from "node:assert/strict";
import { test } from "node:test";
import { comfyuisText, comfyuisTitle } from "../../web/js/endpoint_busy.js";

const runs = new Map([["20261207T005500173482-672d088c", { template: "Blur", owner: { name: "Ann" } }]]);
const runOf = (id) => runs.get(id);

test("a ComfyUI busy with a run this page knows names its template and owner; another's by its id", () => {
  const e = {
    comfyuis: [
      { index: 0, state: "busy", execution: "20261207T005500173482-672d088c" },
      { index: 1, state: "busy", execution: "someone-elses" },
      { index: 2, state: "ready", execution: null },
    ],
  };
  assert.equal(comfyuisText(e, runOf), "ComfyUI 0: running Blur (Ann) · ComfyUI 1: running execution someone-elses · ComfyUI 2: idle");
  assert.match(comfyuisTitle(e), /ComfyUI 1: busy, execution someone-elses/);
});

test("a ComfyUI restarted to stop a cancelled run says so, and why in the tooltip", () => {
  const reason = "a cancelled run (x) did not stop in node ImageMorphology within 10 s";
  const e = { comfyuis: [{ index: 0, state: "restarting", execution: "x", reason }] };
  assert.equal(comfyuisText(e, runOf), "ComfyUI 0: restarting");
  assert.equal(comfyuisTitle(e), `ComfyUI 0: restarting, execution x, ${reason}`);
});

test("nothing while every ComfyUI is idle, or for an endpoint that reports none", () => {
  assert.equal(comfyuisText({ comfyuis: [{ index: 0, state: "ready" }] }, runOf), "");
  assert.equal(comfyuisText({ comfyuis: [] }, runOf), "");
  assert.equal(comfyuisText({}, runOf), "");
});
