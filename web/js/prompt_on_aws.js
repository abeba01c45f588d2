// @ts-check
// The "Prompt on AWS" section: the switch (switch.js keeps it; always on for an artist) and its target,
// which follows the canvas: the loaded template and version, the environment it was bound to when loaded
// (templates.js records both) and that environment's endpoint state. queue.js routes Run by the switch.
import { call, onServerEvent } from "./api.js";
import { el } from "./dom.js";
import { hostProblems, onHostProblem } from "./host_queue.js";
import { onShared } from "./live.js";
import { offerModels, restoreModelCombos } from "./model_combos.js";
import { Latest, LiveSet, Section } from "./section.js";
import { isForcedOn, isPromptOnAws, onSwitch, setPromptOnAws } from "./switch.js";
import { onTask } from "./tasks.js";
import { loadedRecord, onCanvasChanged } from "./templates.js";

/** @type {LiveSet<PromptOnAwsSection>} */
const sections = new LiveSet();
const resolves = new Latest(); // only the latest resolve may set the target
/**
 * template, version: loaded in the canvas; environment: its binding as loaded (else its current one);
 * current: the template as now published ({version, environment}); endpoint: {name, state, reason} or
 * null; manifest: the environment's latest version; problem: why the target could not be read.
 * @typedef {object} Target
 * @property {string | null} template
 * @property {number | null} version
 * @property {string | null} environment
 * @property {{version: number, environment: string | null} | null} current
 * @property {{name: string, state: string, reason?: string} | null} endpoint
 * @property {any} manifest
 * @property {string | null} problem
 */
/** @type {Target} */
const NONE = { template: null, version: null, environment: null, current: null, endpoint: null, manifest: null, problem: null };
let target = NONE;

export function currentTarget() {
  return target;
}

const sameName = (a, b) => typeof a === "string" && typeof b === "string" && a.toLowerCase() === b.toLowerCase();

function switched() {
  for (const s of sections.all()) s.draw();
  if (isPromptOnAws()) offerModels(target.manifest);
  else restoreModelCombos();
}

// Read the target again (the canvas, the binding or the environment changed). Lists first: a deleted
// template or environment is said in the sidebar, not as a failed request.
export async function resolveTarget() {
  const isLatest = resolves.begin();
  const loaded = loadedRecord();
  /** @type {Target} */
  const next = { ...NONE, template: loaded?.template ?? null, version: loaded?.version ?? null };
  if (loaded && next.template) {
    try {
      const { templates } = await call("GET", "/templates");
      const template = templates.find((t) => t.name === next.template);
      if (!template) throw new Error(`template ${next.template} no longer exists`);
      next.current = { version: template.version, environment: template.environment };
      next.environment = loaded.environment ?? template.environment;
      if (next.environment) {
        const [{ endpoints }, { environments }] = await Promise.all([call("GET", "/endpoints"), call("GET", "/environments")]);
        if (!environments.some((e) => sameName(e.name, next.environment)))
          throw new Error(`environment ${next.environment} no longer exists`);
        next.endpoint = endpoints.find((e) => sameName(e.name, next.environment)) ?? null;
        next.manifest = await call("GET", `/environments/${encodeURIComponent(next.environment)}`);
      }
    } catch (err) {
      next.problem = err.message;
    }
  }
  if (!isLatest()) return;
  target = next;
  switched();
}

onCanvasChanged(() => resolveTarget());
// Another ComfyUI changed a template, an environment or an endpoint: the target line follows.
onShared(["templates", "environments", "endpoints"], () => {
  if (target.template) resolveTarget();
});

// Live endpoint state: the target's endpoint line follows without a request.
onServerEvent("sagemaker.endpoint", (endpoint) => {
  if (!endpoint?.name || !sameName(endpoint.environment ?? endpoint.name, target.environment)) return;
  target = { ...target, endpoint: endpoint.state === "Deleted" ? null : endpoint };
  for (const s of sections.all()) s.draw();
});

// A new version of the target's environment may bring other models.
onTask((task) => {
  if (task.kind === "publish" && task.state === "succeeded" && target.environment) resolveTarget();
});

onSwitch(() => switched());
onHostProblem(() => {
  for (const s of sections.all()) s.draw();
});

// The endpoint's part of the target line: its text, colour class and data-state.
function endpointText(t) {
  if (!t.endpoint) return { text: "no endpoint", cls: "sagemaker-state-bad", state: "none" };
  const state = t.endpoint.state ?? "unknown";
  const cls = state === "InService" ? "sagemaker-state-ok" : state === "Failed" ? "sagemaker-state-bad" : "sagemaker-state-wait";
  return { text: state, cls, state, title: t.endpoint.reason ?? undefined };
}

function note(t, on) {
  const forced = isForcedOn();
  if (!on) return "Off: Run queues on this ComfyUI.";
  if (t.problem) return t.problem;
  if (!t.template) return "No template in the canvas: load one from Templates below.";
  if (!t.environment) return `${t.template} is bound to no environment${forced ? ": a designer binds it" : ": rebind it below"}.`;
  // An artist cannot deploy: told who can (a designer deploys one, or shares theirs), never to deploy.
  if (!t.endpoint) {
    const then = forced ? " yet: ask a designer to deploy or share one" : ": publish it with an endpoint config";
    return `${t.environment} has no endpoint${then}.`;
  }
  if (t.endpoint.state !== "InService") return `${t.environment}'s endpoint is ${t.endpoint.state}: it takes runs once InService.`;
  return forced ? `Runs on ${t.environment}'s endpoint.` : `Run sends the canvas to ${t.environment}.`;
}

// The template was published again since it was loaded (a new version, or bound elsewhere): runs still
// follow what is in the canvas; loading it again takes the new one.
function newer(t) {
  const now = t.current;
  if (!now || t.version === null || now.version === t.version) return null;
  const where = now.environment && now.environment !== t.environment ? ` (bound to ${now.environment})` : "";
  return `${t.template} v${now.version}${where} is published: load it again to use it.`;
}

class PromptOnAwsSection extends Section {
  constructor() {
    super({ testid: "sagemaker-prompt-on-aws", className: "sagemaker-prompt-on-aws" });
    this.box = el("input", {
      type: "checkbox",
      "data-testid": "sagemaker-prompt-on-aws-check",
      onchange: () => setPromptOnAws(this.box.checked),
    });
    this.label = el("label", { class: "sagemaker-check sagemaker-switch" }, [this.box, "Prompt on AWS"]);
    this.target = el("div", { class: "sagemaker-target", "data-testid": "sagemaker-prompt-on-aws-target" });
    this.note = el("div", { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-prompt-on-aws-note" });
    this.newer = el("div", { class: "sagemaker-diff-warn sagemaker-note", "data-testid": "sagemaker-target-newer", hidden: true });
    this.degraded = el("div", { class: "sagemaker-warning sagemaker-note", "data-testid": "sagemaker-host-degraded", hidden: true });
    this.root.append(this.label, this.target, this.note, this.newer, this.degraded);
    this.draw();
  }

  // Drawn from the current target, which follows the canvas by itself.
  start() {
    return this.root;
  }

  draw() {
    const on = isPromptOnAws();
    const t = target;
    this.box.checked = on;
    this.box.disabled = isForcedOn();
    this.label.title = isForcedOn() ? "An artist's Run always goes to the endpoint" : "Kept in this browser only";
    this.root.classList.toggle("sagemaker-off", !on);
    this.root.dataset.on = String(on);
    const parts = [];
    if (t.template) {
      parts.push(
        el("span", { class: "sagemaker-badge", title: "template in the canvas", "data-testid": "sagemaker-target-template" }, t.template),
      );
      if (t.version !== null)
        parts.push(
          el(
            "span",
            { class: "sagemaker-muted", title: "the version loaded in the canvas", "data-testid": "sagemaker-target-version" },
            `v${t.version}`,
          ),
        );
      if (t.environment) {
        const state = endpointText(t);
        parts.push(
          el("i", { class: "pi pi-arrow-right sagemaker-muted" }),
          el("span", { class: "sagemaker-badge", title: "its environment", "data-testid": "sagemaker-target-environment" }, t.environment),
          el(
            "span",
            {
              class: `sagemaker-target-state ${state.cls}`,
              title: state.title,
              "data-testid": "sagemaker-target-state",
              "data-state": state.state,
            },
            [el("i", { class: "pi pi-circle-fill" }), state.text],
          ),
        );
      }
    }
    this.target.replaceChildren(...parts);
    this.target.hidden = parts.length === 0;
    this.note.textContent = note(t, on);
    const later = on ? newer(t) : null;
    this.newer.hidden = !later;
    this.newer.textContent = later ?? "";
    // The frontend's queue or interrupt is not the shape host_queue.js knows: what does not work, said here.
    const problems = hostProblems();
    this.degraded.hidden = problems.length === 0;
    this.degraded.replaceChildren(
      ...(problems.length
        ? ["This ComfyUI frontend differs from what Prompt on AWS knows:", ...problems.map((p) => el("div", {}, p))]
        : []),
    );
  }
}

// The section's root element (drawn from the current target; the target follows the canvas).
export function mountPromptOnAws() {
  return sections.add(new PromptOnAwsSection()).start();
}
