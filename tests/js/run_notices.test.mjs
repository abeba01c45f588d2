// The questions before Stop and before cancelling someone else's run, and the owner's notice when someone else
// ended their run (web/js/run_notices.js), from the run summaries the server sends.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cancelQuestion, endedByOther, stopQuestion } from "../../web/js/run_notices.js";

const ben = { name: "Ben" };
const run = (id, owner, extra = {}) => ({ id, state: "running", template: "Blur", environment: "Env1", owner, ...extra });
const isMine = (r) => r.owner?.name === "Dana";

test("Stop says how many runs are in flight and whose", () => {
  const runs = [run("a", ben), run("b", { name: "Dana" }), run("c", ben), run("d", { name: "Ana", user: "ana" })];
  assert.equal(
    stopQuestion("Env1", runs, isMine),
    "4 runs are in flight on Env1 (2 Ben's, 1 yours, 1 Ana (ana)'s): Stop ends them, and their owners are told you stopped them.",
  );
  assert.equal(
    stopQuestion("Env1", [run("a", ben)], isMine),
    "1 run is in flight on Env1 (1 Ben's): Stop ends it, and its owner is told you stopped it.",
  );
  assert.equal(stopQuestion("Env1", [run("b", { name: "Dana" })], isMine), "1 run is in flight on Env1 (1 yours): Stop ends it.");
  assert.equal(stopQuestion("Env1", [], isMine), "No run is in flight on Env1. Start brings it back later.");
});

test("cancelling someone else's run names them and what it runs", () => {
  assert.equal(
    cancelQuestion(run("a", ben)),
    "This is Ben's run of Blur: cancelling it stops it for them, and they are told you cancelled it.",
  );
});

test("the owner is told who cancelled or stopped their run, and nothing when they did it themselves", () => {
  const cancelled = run("a", ben, { state: "cancelled", error: { code: "cancelled", message: "cancelled by Dana", by: "Dana" } });
  assert.equal(endedByOther(cancelled), "Dana cancelled your run of Blur");
  const stopped = { ...cancelled, error: { code: "endpoint_stopped", message: "stopped by Dana", by: "Dana" } };
  assert.equal(endedByOther(stopped), "Dana stopped Env1: your run of Blur ended");
  assert.equal(endedByOther({ ...cancelled, error: { code: "cancelled", message: "cancelled by the user" } }), "");
  assert.equal(endedByOther({ ...cancelled, state: "running" }), "");
});
