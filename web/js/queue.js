// @ts-check
// Where Run goes. With Prompt on AWS ticked, a batch item goes to POST /sagemaker/executions instead of /prompt,
// and the execution's prompt_id is answered as /prompt would, so the relayed events (same names, same prompt_id)
// drive the canvas as a local run would. Unticked, the host's queue runs untouched. An artist's switch is always
// on (switch.js), so an artist's Run always goes to the endpoint. ComfyUI's Interrupt cancels a remote run of
// this page. The host's hooks are touched only through host_queue.js; tests/browser/test_prompt_on_aws.py fails
// if the host stops going through them.
import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";
import { call, toastError } from "./api.js";
import { cancelExecution, executionCreated, liveRunOf } from "./executions.js";
import { install, isSendingBatch, onBatch, promptError } from "./host_queue.js";
import { loadRole, roleKnown } from "./role.js";
import { isPromptOnAws } from "./switch.js";
import { loadedRecord } from "./templates.js";

/** @type {import("./host_queue.js").Host} */
const host = {
  api,
  app,
  get comfyAPI() {
    return window.comfyAPI; // read when used, as the frontend fills it in
  },
};

// A refused run skips the rest of its batch (the same refusal N times says nothing new), until the next batch.
let refused = false;

/** What /prompt answers when nothing was queued: the frontend follows nothing and stays idle (throwing would
 * open its modal error dialog). */
const NOTHING_QUEUED = { node_errors: {} };

/**
 * Only the targets and what they depend on (queue selected output nodes): the endpoint runs it all.
 * @param {Record<string, any>} prompt @param {(string | number)[]} targets
 */
function upstreamOf(prompt, targets) {
  /** @type {Record<string, any>} */
  const kept = {};
  const todo = targets.map(String);
  while (todo.length) {
    const id = /** @type {string} */ (todo.pop());
    if (kept[id] || !prompt[id]) continue;
    kept[id] = prompt[id];
    for (const value of Object.values(prompt[id].inputs ?? {})) {
      if (Array.isArray(value) && value.length === 2 && typeof value[0] === "string") todo.push(value[0]);
    }
  }
  return kept;
}

/**
 * @param {import("./host_queue.js").QueuedPrompt} data @param {any} options
 * @returns {Promise<import("./host_queue.js").QueueAnswer>}
 */
async function queueOnAws({ output, workflow }, options) {
  if (refused && isSendingBatch(host)) return NOTHING_QUEUED;
  refused = false;
  const targets = options?.partialExecutionTargets;
  const prompt = targets?.length ? upstreamOf(output, targets) : output;
  // The environment the template was bound to when loaded: a designer's later rebind does not redirect
  // a template already loaded. None recorded (an older workflow, or loaded unbound): its current binding.
  const loaded = loadedRecord();
  try {
    const answer = await call("POST", "/executions", {
      prompt,
      workflow,
      template: loaded?.template ?? null,
      environment: loaded?.environment ?? undefined,
      client_id: api.clientId ?? null,
    });
    executionCreated(answer.execution);
    // What /prompt answers. `number` (the local queue position) has no meaning for a remote run.
    return { prompt_id: answer.prompt_id, number: 0, node_errors: {} };
  } catch (err) {
    refused = true;
    // A prompt ComfyUI's own validation refused comes back in /prompt's 400 shape: thrown as the host's
    // api.queuePrompt throws it, so the host outlines the nodes and says it in its own words, as locally.
    if (err?.body && typeof err.body === "object" && "node_errors" in err.body) throw promptError(host, err.body, err.status) ?? err;
    toastError("Prompt on AWS: not queued", err);
    return NOTHING_QUEUED;
  }
}

/**
 * One batch item. Run pressed before /health said the role (the page just opened): an artist's must not run here.
 * @param {import("./host_queue.js").QueuedPrompt | null} data @param {any} options @param {() => Promise<any>} runHere
 */
async function route(data, options, runHere) {
  if (!roleKnown()) await loadRole();
  if (!isPromptOnAws()) return runHere();
  if (data) return queueOnAws(data, options);
  toastError("Prompt on AWS: not queued", new Error("this ComfyUI frontend queues prompts in a shape this extension does not know"));
  return NOTHING_QUEUED;
}

/**
 * ComfyUI's "Cancel current run" (and Interrupt) names the prompt it follows: a remote run of this page is
 * cancelled on its endpoint instead; anything else goes to the host's function.
 * @param {string | null} promptId @param {() => Promise<any>} runHere
 */
function interrupt(promptId, runHere) {
  const run = promptId ? liveRunOf(promptId) : null;
  if (!run) return runHere();
  return cancelExecution(run.id).then(() => undefined);
}

// Wrap the host's queue and interrupt once, at setup.
export function installQueueRouting() {
  install(host, { queue: route, interrupt });
  onBatch(host, () => {
    refused = false;
  });
}
