// @ts-check
// The frontend's queue and interrupt hooks: the one place that touches them (an adapter at the host's edge).
//
// The shape this extension knows (ComfyUI frontends 1.32 to 1.58 at least): the host queues every way (Run
// with its batch count, Ctrl+Enter, queue-front, queue selected outputs) through app.queuePrompt, which calls
// api.queuePrompt(number, {output, workflow}, {partialExecutionTargets}) once per batch item and then follows
// the run by the prompt_id it answers; app.processingQueue is true while that batch loop runs; "promptQueueing"
// (1.33+) and "promptQueued" mark batches; Interrupt and "Cancel current run" call api.interrupt(promptId); a
// refused /prompt throws window.comfyAPI.api.PromptExecutionError, whose node_errors the host outlines.
//
// inspect() says what differs in the running frontend; install() wraps only what has the known shape (the rest
// stays the host's own), warns once in the console, and hostProblems() lets the sidebar say it. Nothing here
// imports the host: it is handed the host's objects, so tests can hand it older and newer shapes.

/** @typedef {{output: Record<string, any>, workflow: any}} QueuedPrompt what api.queuePrompt is given */
/** @typedef {{prompt_id?: string, number?: number, node_errors: Record<string, any>}} QueueAnswer what /prompt answers */

/**
 * @typedef {object} Host
 * @property {any} api the frontend's api (scripts/api.js)
 * @property {any} app the frontend's app (scripts/app.js)
 * @property {any} [comfyAPI] window.comfyAPI, where the frontend publishes its classes
 */

/**
 * @typedef {object} Routes
 * @property {(prompt: QueuedPrompt | null, options: any, runHere: () => Promise<any>) => any} queue
 *   one batch item: `prompt` is null when the host called with a shape this extension does not know;
 *   runHere() is the host's own queuePrompt with the host's arguments
 * @property {(promptId: string | null, runHere: () => Promise<any>) => any} interrupt
 */

const WRAPPED = "__sagemakerWrapped"; // marks the wrappers: installed once, and tests/browser checks they are there
/** @type {string[]} */
const problems = [];
/** @type {Set<() => void>} */
const listeners = new Set();

/** What the running frontend lacks of the shape this extension knows, in a user's words ([] when none). */
export function hostProblems() {
  return [...problems];
}

/** fn() after every new problem (one found while running, e.g. a call of an unknown shape). @param {() => void} fn */
export function onHostProblem(fn) {
  listeners.add(fn);
}

/** @param {string} problem */
function report(problem) {
  if (problems.includes(problem)) return;
  problems.push(problem);
  console.warn(`[comfyui-sagemaker] this ComfyUI frontend differs from what Prompt on AWS knows: ${problem}`);
  for (const fn of [...listeners]) fn();
}

/**
 * What differs from the known shape; nothing is changed. A function that declares no parameters is taken for a
 * pass-through wrapper (another extension's `(...args)`): its calls are checked one by one instead.
 * @param {Host} host
 * @returns {{queuePrompt: string | null, interrupt: string | null, promptError: string | null, batches: string | null}}
 */
export function inspect({ api, app, comfyAPI }) {
  const queuePrompt = api?.queuePrompt;
  const interrupt = api?.interrupt;
  return {
    queuePrompt:
      typeof queuePrompt !== "function"
        ? "api.queuePrompt is missing: Run always queues on this ComfyUI"
        : queuePrompt.length === 1
          ? "api.queuePrompt takes 1 argument, not (number, prompt, options): Run always queues on this ComfyUI"
          : null,
    interrupt: typeof interrupt !== "function" ? "api.interrupt is missing: Interrupt does not cancel a run on AWS" : null,
    promptError:
      typeof comfyAPI?.api?.PromptExecutionError !== "function"
        ? "no PromptExecutionError: a prompt the endpoint refused is not outlined on its nodes"
        : null,
    batches:
      typeof app?.processingQueue !== "boolean" ? "no app.processingQueue: a refused run is tried again for each item of its batch" : null,
  };
}

/** @param {any} data @returns {data is QueuedPrompt} */
function isQueuedPrompt(data) {
  return typeof data === "object" && data !== null && typeof data.output === "object" && data.output !== null;
}

/**
 * Wraps api.queuePrompt and api.interrupt once, where they have the known shape.
 * @param {Host} host @param {Routes} routes
 */
export function install(host, routes) {
  const { api } = host;
  const found = inspect(host);
  for (const problem of Object.values(found)) if (problem) report(problem);
  if (!found.queuePrompt && !api.queuePrompt[WRAPPED]) {
    const original = api.queuePrompt;
    /** @this {any} @param {number} number @param {any} data @param {any} options @param {...any} rest */
    const queuePrompt = function (number, data, options, ...rest) {
      const runHere = () => original.call(this, number, data, options, ...rest);
      if (isQueuedPrompt(data)) return routes.queue(data, options, runHere);
      report("api.queuePrompt was called without {output, workflow}: Prompt on AWS cannot send it");
      return routes.queue(null, options, runHere);
    };
    queuePrompt[WRAPPED] = true;
    api.queuePrompt = queuePrompt;
  }
  if (!found.interrupt && !api.interrupt[WRAPPED]) {
    const original = api.interrupt;
    /** @this {any} @param {string | null} promptId @param {...any} rest */
    const interrupt = function (promptId, ...rest) {
      return routes.interrupt(promptId ?? null, () => original.call(this, promptId, ...rest));
    };
    interrupt[WRAPPED] = true;
    api.interrupt = interrupt;
  }
}

/**
 * The host is sending a batch (its loop of api.queuePrompt calls); false when this frontend does not say.
 * @param {Host} host
 */
export function isSendingBatch({ app }) {
  return app?.processingQueue === true;
}

/**
 * fn() when a new batch starts: 1.33+ announce each one ("promptQueueing") and send "promptQueued" only when an
 * item of it was queued; 1.32 sends "promptQueued" after every batch loop.
 * @param {Host} host @param {() => void} fn
 */
export function onBatch({ api }, fn) {
  for (const type of ["promptQueueing", "promptQueued"]) /** @type {EventTarget} */ (api).addEventListener(type, fn);
}

/**
 * The error the host's own api.queuePrompt throws for a refused /prompt (1.32: (response); 1.33+: (response,
 * status)), so the host outlines the nodes and says it in its words; null when this frontend has none.
 * @param {Host} host @param {any} body /prompt's 400 answer @param {number} status
 * @returns {Error | null}
 */
export function promptError({ comfyAPI }, body, status) {
  const PromptExecutionError = comfyAPI?.api?.PromptExecutionError;
  return typeof PromptExecutionError === "function" ? new PromptExecutionError(body, status) : null;
}
