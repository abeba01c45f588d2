// The Endpoints section's idle stop line (web/js/idle_stop.js), from the endpoint views the server sends.
import assert from "node:assert/strict";
import { test } from "node:test";
import { idleText } from "../../web/js/idle_stop.js";

const NOW = Date.parse("2026-01-01T12:00:00Z");

test("a running endpoint says when it stops", () => {
  assert.equal(idleText({ state: "InService", idle_stop_minutes: 60 }, NOW), "stops after 60 min idle");
  assert.equal(idleText({ state: "InService", idle_stop_minutes: 0 }, NOW), "");
  assert.equal(idleText({ state: "InService" }, NOW), ""); // a server before idle stop
});

test("a stopped endpoint says the idle stop stopped it, and when", () => {
  const stopped = { state: "Stopped", idle_stop_minutes: 60, stopped_by: "idle", stopped_at: "2026-01-01T10:00:00Z" };
  assert.equal(idleText(stopped, NOW), "stopped after 60 min idle, 2 h ago");
  assert.equal(idleText({ ...stopped, stopped_by: null }, NOW), ""); // a person stopped it
});
