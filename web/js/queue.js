// The one place that wraps the host's queueing.
//
// ComfyUI's frontend (1.32 to 1.58 at least) queues every way (Run with its batch count, Ctrl+Enter, queue-front,
// queue selected outputs) through app.queuePrompt, which calls
// api.queuePrompt(number, {output, workflow}, {partialExecutionTargets}) once per batch item and then
// follows the run by the prompt_id it answers. With Prompt on AWS ticked, this wrapper sends that
// call to POST /sagemaker/executions instead of /prompt and answers the execution's prompt_id, so the
// relayed events (same names, same prompt_id) drive the canvas as a local run would. Unticked, the
// host's function runs untouched. An artist's switch is always on (switch.js), so an artist's Run always
// goes to the endpoint. api.interrupt is wrapped alongside, so ComfyUI's Interrupt cancels a remote run.
// tests/browser/test_prompt_on_aws.py fails if the host stops going through either.
import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";
import { call, toastError } from "./api.js";
import { cancelExecution, executionCreated, liveRunOf } from "./executions.js";
import { loadRole, roleKnown } from "./role.js";
import { isPromptOnAws } from "./switch.js";
import { loadedRecord } from "./templates.js";

// A refused run skips the rest of its batch (the same refusal N times says nothing new), until the
// next batch: frontends 1.33+ announce each one ("promptQueueing") and send "promptQueued" only when an
// item of it was queued; 1.32 sends "promptQueued" after every batch loop. Both reset the mark.
let refused = false;

// Only the targets and what they depend on (queue selected output nodes): the endpoint runs it all.
function upstreamOf(prompt, targets) {
  const kept = {};
  const todo = targets.map(String);
  while (todo.length) {
    const id = todo.pop();
    if (kept[id] || !prompt[id]) continue;
    kept[id] = prompt[id];
    for (const value of Object.values(prompt[id].inputs ?? {})) {
      if (Array.isArray(value) && value.length === 2 && typeof value[0] === "string") todo.push(value[0]);
    }
  }
  return kept;
}

async function queueOnAws({ output, workflow }, options) {
  if (refused && app.processingQueue === true) return { node_errors: {} };
  refused = false;
  const targets = options?.partialExecutionTargets;
  const prompt = targets?.length ? upstreamOf(output, targets) : output;
  // The environment the template was bound to when loaded: a designer's later rebind does not redirect
  // a template already loaded. None recorded (an older workflow, or loaded unbound): its current binding.
  const loaded = loadedRecord();
  try {
    const answer = await call("POST", "/executions", {
      prompt, workflow, template: loaded?.template ?? null, environment: loaded?.environment ?? undefined,
      client_id: api.clientId ?? null,
    });
    executionCreated(answer.execution);
    // What /prompt answers. `number` (the local queue position) has no meaning for a remote run.
    return { prompt_id: answer.prompt_id, number: 0, node_errors: {} };
  } catch (err) {
    refused = true;
    // A prompt ComfyUI's own validation refused comes back in /prompt's 400 shape: thrown as the host's
    // api.queuePrompt throws it, so the host outlines the nodes and says it in its own words, as locally.
    if (err?.body && typeof err.body === "object" && "node_errors" in err.body) throw promptError(err);
    toastError("Prompt on AWS: not queued", err);
    // No prompt_id: the frontend follows nothing, stays idle. (Throwing would open its modal error dialog.)
    return { node_errors: {} };
  }
}

// The host's own error class for a refused /prompt (1.32: (response); 1.33+: (response, status)).
function promptError(err) {
  const PromptExecutionError = window.comfyAPI?.api?.PromptExecutionError;
  if (typeof PromptExecutionError !== "function") return err;
  return new PromptExecutionError(err.body, err.status);
}

// ComfyUI's "Cancel current run" (and Interrupt) calls api.interrupt(activePromptId): a remote run of
// this page is cancelled on its endpoint instead; anything else goes to the host's function.
function wrapInterrupt() {
  const original = api.interrupt;
  if (typeof original !== "function" || original.__sagemakerWrapped) return;
  function interrupt(promptId, ...rest) {
    const run = promptId ? liveRunOf(promptId) : null;
    if (!run) return original.call(this, promptId, ...rest);
    return cancelExecution(run.id).then(() => undefined);
  }
  interrupt.__sagemakerWrapped = true;
  api.interrupt = interrupt;
}

// Wrap api.queuePrompt (and api.interrupt) once, at setup.
export function installQueueRouting() {
  wrapInterrupt();
  const original = api.queuePrompt;
  if (typeof original !== "function" || original.__sagemakerWrapped) return;
  function queuePrompt(number, data, options, ...rest) {
    // Run pressed before /health said the role (the page just opened): an artist's must not run here.
    if (!roleKnown()) return loadRole().then(() => route.call(this, number, data, options, ...rest));
    return route.call(this, number, data, options, ...rest);
  }
  function route(number, data, options, ...rest) {
    if (!isPromptOnAws()) return original.call(this, number, data, options, ...rest);
    return queueOnAws(data, options);
  }
  queuePrompt.__sagemakerWrapped = true;
  queuePrompt.original = original;
  api.queuePrompt = queuePrompt;
  const nextBatch = () => {
    refused = false;
  };
  api.addEventListener("promptQueueing", nextBatch);
  api.addEventListener("promptQueued", nextBatch);
}
