// The frontend's queue and interrupt adapter (web/js/host_queue.js) fed the shapes of older and newer frontends
// (the known ones copied from comfyui-frontend-package 1.32.9 and 1.58.1: api.queuePrompt(number, data, options),
// api.interrupt(promptId), PromptExecutionError(response[, status]), app.processingQueue).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

const SOURCE = readFileSync(new URL("../../web/js/host_queue.js", import.meta.url), "utf8");
let copies = 0;

/** A fresh copy of the adapter: what it found is per page. @returns {Promise<typeof import("../../web/js/host_queue.js")>} */
function freshAdapter() {
  copies += 1;
  return import(`data:text/javascript,${encodeURIComponent(`${SOURCE}\n// copy ${copies}`)}`);
}

// 1.32.9: `throw new PromptExecutionError(await c.json())`.
class PromptExecutionError132 extends Error {
  /** @param {any} response */
  constructor(response) {
    super("Prompt execution failed");
    this.response = response;
  }
}

// 1.58.1: the status comes too.
class PromptExecutionError158 extends Error {
  /** @param {any} response @param {number} [status] */
  constructor(response, status) {
    super("Prompt execution failed");
    this.response = response;
    this.status = status;
  }
}

/** A ComfyApi of the known shape; `calls` records what reached the host's own functions. */
function knownApi() {
  /** @type {any[][]} */
  const calls = [];
  class ComfyApi extends EventTarget {
    /** @param {number} number @param {any} data @param {any} options */
    async queuePrompt(number, data, options) {
      calls.push(["queuePrompt", this, number, data, options]);
      return { prompt_id: "local", number: 1, node_errors: {} };
    }

    /** @param {string | null} promptId */
    async interrupt(promptId) {
      calls.push(["interrupt", this, promptId]);
    }
  }
  return { api: /** @type {any} */ (new ComfyApi()), calls };
}

/** @param {any} [PromptExecutionError] */
function frontend(PromptExecutionError = PromptExecutionError158) {
  const { api, calls } = knownApi();
  return { host: { api, app: { processingQueue: false }, comfyAPI: { api: { PromptExecutionError } } }, calls };
}

/** Routes that record what they were given and run the host's own function. */
function recordingRoutes() {
  /** @type {any[][]} */
  const routed = [];
  return {
    routed,
    routes: {
      /** @param {any} prompt @param {any} options @param {() => Promise<any>} runHere */
      queue: (prompt, options, runHere) => {
        routed.push(["queue", prompt, options]);
        return runHere();
      },
      /** @param {string | null} promptId @param {() => Promise<any>} runHere */
      interrupt: (promptId, runHere) => {
        routed.push(["interrupt", promptId]);
        return runHere();
      },
    },
  };
}

/** @param {import("node:test").TestContext} t */
const quietWarnings = (t) => t.mock.method(console, "warn", () => {});

for (const [version, PromptExecutionError] of [
  ["1.32", PromptExecutionError132],
  ["1.58", PromptExecutionError158],
]) {
  test(`the ${version} shape is wrapped and nothing is reported`, async (t) => {
    const warn = quietWarnings(t);
    const adapter = await freshAdapter();
    const { host, calls } = frontend(PromptExecutionError);
    const { routes, routed } = recordingRoutes();
    assert.deepEqual(Object.values(adapter.inspect(host)), [null, null, null, null]);
    adapter.install(host, routes);
    assert.deepEqual(adapter.hostProblems(), []);
    assert.equal(warn.mock.callCount(), 0);
    assert.equal(host.api.queuePrompt.__sagemakerWrapped, true);
    assert.equal(host.api.interrupt.__sagemakerWrapped, true);

    const data = { output: { 1: { class_type: "SaveImage", inputs: {} } }, workflow: { nodes: [] } };
    const options = { partialExecutionTargets: ["1"] };
    assert.deepEqual(await host.api.queuePrompt(-1, data, options), { prompt_id: "local", number: 1, node_errors: {} });
    assert.deepEqual(routed, [["queue", data, options]]);
    // runHere is the host's own function, with the host's `this` and arguments.
    assert.deepEqual(calls, [["queuePrompt", host.api, -1, data, options]]);

    await host.api.interrupt("p1");
    assert.deepEqual(routed.at(-1), ["interrupt", "p1"]);
    assert.deepEqual(calls.at(-1), ["interrupt", host.api, "p1"]);
    await host.api.interrupt(undefined);
    assert.deepEqual(routed.at(-1), ["interrupt", null]);
    assert.deepEqual(calls.at(-1), ["interrupt", host.api, undefined]);

    const refused = adapter.promptError(host, { error: { type: "prompt_outputs_failed_validation" }, node_errors: {} }, 400);
    assert.ok(refused instanceof PromptExecutionError);
    assert.equal(/** @type {any} */ (refused).response.error.type, "prompt_outputs_failed_validation");
    assert.equal(adapter.isSendingBatch(host), false);
    host.app.processingQueue = true;
    assert.equal(adapter.isSendingBatch(host), true);
  });
}

test("installed twice, the host's functions are wrapped once", async (t) => {
  quietWarnings(t);
  const adapter = await freshAdapter();
  const { host, calls } = frontend();
  const { routes, routed } = recordingRoutes();
  adapter.install(host, routes);
  const wrapped = host.api.queuePrompt;
  adapter.install(host, routes);
  assert.equal(host.api.queuePrompt, wrapped);
  await host.api.queuePrompt(0, { output: {}, workflow: {} }, {});
  assert.equal(routed.length, 1);
  assert.equal(calls.length, 1);
});

test("a queuePrompt of another shape stays the host's own, and the sidebar and the console say so once", async (t) => {
  const warn = quietWarnings(t);
  const adapter = await freshAdapter();
  const { host, calls } = frontend();
  const original = async (/** @type {any} */ request) => calls.push(["queuePrompt", request]);
  host.api.queuePrompt = original; // e.g. a later frontend taking one request object
  const heard = [];
  adapter.onHostProblem(() => heard.push(adapter.hostProblems().length));
  const { routes, routed } = recordingRoutes();
  adapter.install(host, routes);
  adapter.install(host, routes);
  assert.equal(host.api.queuePrompt, original);
  assert.deepEqual(adapter.hostProblems(), [
    "api.queuePrompt takes 1 argument, not (number, prompt, options): Run always queues on this ComfyUI",
  ]);
  assert.equal(warn.mock.callCount(), 1);
  assert.match(String(warn.mock.calls[0].arguments[0]), /differs from what Prompt on AWS knows: api\.queuePrompt takes 1 argument,/);
  assert.deepEqual(heard, [1]);
  await host.api.queuePrompt({ number: 0 });
  assert.deepEqual(routed, []);
  assert.equal(host.api.interrupt.__sagemakerWrapped, true); // what has the known shape is still wrapped
});

test("another extension's pass-through wrapper (...args) is wrapped in turn; its calls are checked one by one", async (t) => {
  const warn = quietWarnings(t);
  const adapter = await freshAdapter();
  const { host, calls } = frontend();
  const hostQueuePrompt = host.api.queuePrompt;
  host.api.queuePrompt = function (/** @type {any[]} */ ...args) {
    return hostQueuePrompt.apply(this, args);
  };
  const { routes, routed } = recordingRoutes();
  adapter.install(host, routes);
  assert.deepEqual(adapter.hostProblems(), []);
  const data = { output: {}, workflow: {} };
  await host.api.queuePrompt(0, data, {});
  assert.deepEqual(routed, [["queue", data, {}]]);
  assert.deepEqual(calls, [["queuePrompt", host.api, 0, data, {}]]);
  assert.equal(warn.mock.callCount(), 0);
});

test("a frontend without interrupt, PromptExecutionError or processingQueue: each is said, the rest works", async (t) => {
  quietWarnings(t);
  const adapter = await freshAdapter();
  const { api } = knownApi();
  api.interrupt = undefined;
  const host = { api, app: {}, comfyAPI: {} };
  const { routes, routed } = recordingRoutes();
  adapter.install(host, routes);
  assert.deepEqual(adapter.hostProblems(), [
    "api.interrupt is missing: Interrupt does not cancel a run on AWS",
    "no PromptExecutionError: a prompt the endpoint refused is not outlined on its nodes",
    "no app.processingQueue: a refused run is tried again for each item of its batch",
  ]);
  assert.equal(api.queuePrompt.__sagemakerWrapped, true);
  await api.queuePrompt(0, { output: {}, workflow: {} }, {});
  assert.equal(routed.length, 1);
  assert.equal(adapter.promptError(host, {}, 400), null);
  assert.equal(adapter.isSendingBatch(host), false);
});

test("a call of an unknown shape reaches the route as null (it is refused, never sent), and is said once", async (t) => {
  const warn = quietWarnings(t);
  const adapter = await freshAdapter();
  const { host, calls } = frontend();
  const { routes, routed } = recordingRoutes();
  adapter.install(host, routes);
  await host.api.queuePrompt(0, { prompt: {} }, {});
  await host.api.queuePrompt(0, null, {});
  assert.deepEqual(routed, [
    ["queue", null, {}],
    ["queue", null, {}],
  ]);
  assert.equal(calls.length, 2); // these routes ran it here; queue.js refuses it when Prompt on AWS is on
  assert.deepEqual(adapter.hostProblems(), ["api.queuePrompt was called without {output, workflow}: Prompt on AWS cannot send it"]);
  assert.equal(warn.mock.callCount(), 1);
});

test("batches: a new one is heard from promptQueueing (1.33+) and from promptQueued (1.32)", async () => {
  const adapter = await freshAdapter();
  const { host } = frontend();
  let heard = 0;
  adapter.onBatch(host, () => {
    heard += 1;
  });
  host.api.dispatchEvent(new Event("promptQueueing"));
  host.api.dispatchEvent(new Event("promptQueued"));
  host.api.dispatchEvent(new Event("status"));
  assert.equal(heard, 2);
});
