// The "Prompt on AWS" section: the switch (switch.js keeps it) and its target, which follows the
// canvas: the loaded template, its bound environment and that environment's endpoint state. queue.js
// routes Run by the switch.
import { api } from "../../../scripts/api.js";
import { call } from "./api.js";
import { el } from "./dom.js";
import { onJob } from "./jobs.js";
import { offerModels, restoreModelCombos } from "./model_combos.js";
import { isPromptOnAws, onSwitch, setPromptOnAws } from "./switch.js";
import { loadedTemplate, onCanvasChanged } from "./templates.js";

const sections = new Set();
let resolves = 0; // only the latest resolve may set the target
// template: loaded in the canvas; environment: its binding; endpoint: {name, state, reason} or null;
// manifest: the environment's latest version; problem: why the target could not be read.
let target = { template: null, environment: null, endpoint: null, manifest: null, problem: null };

export function currentTarget() {
  return target;
}

const sameName = (a, b) => typeof a === "string" && typeof b === "string" && a.toLowerCase() === b.toLowerCase();

function switched() {
  for (const s of live()) s.draw();
  if (isPromptOnAws()) offerModels(target.manifest);
  else restoreModelCombos();
}

function live() {
  for (const s of sections) if (!s.root.isConnected) sections.delete(s);
  return [...sections];
}

// Read the target again (the canvas, the binding or the environment changed). Lists first: a deleted
// template or environment is said in the sidebar, not as a failed request.
export async function resolveTarget() {
  const mine = ++resolves;
  const next = { template: loadedTemplate(), environment: null, endpoint: null, manifest: null, problem: null };
  if (next.template) {
    try {
      const { templates } = await call("GET", "/templates");
      const template = templates.find((t) => t.name === next.template);
      if (!template) throw new Error(`template ${next.template} no longer exists`);
      next.environment = template.environment;
      if (next.environment) {
        const [{ endpoints }, { environments }] = await Promise.all([call("GET", "/endpoints"), call("GET", "/environments")]);
        if (!environments.some((e) => sameName(e.name, next.environment))) throw new Error(`environment ${next.environment} no longer exists`);
        next.endpoint = endpoints.find((e) => sameName(e.name, next.environment)) ?? null;
        next.manifest = await call("GET", `/environments/${encodeURIComponent(next.environment)}`);
      }
    } catch (err) {
      next.problem = err.message;
    }
  }
  if (mine !== resolves) return;
  target = next;
  switched();
}

onCanvasChanged(() => resolveTarget());

// Live endpoint state: the target's endpoint line follows without a request.
api.addEventListener("sagemaker.endpoint", (event) => {
  const endpoint = event.detail;
  if (!endpoint?.name || !sameName(endpoint.environment ?? endpoint.name, target.environment)) return;
  target = { ...target, endpoint: endpoint.state === "Deleted" ? null : endpoint };
  for (const s of live()) s.draw();
});

// A new version of the target's environment may bring other models.
onJob((job) => {
  if (job.kind === "publish" && job.state === "succeeded" && target.environment) resolveTarget();
});

onSwitch(() => switched());

// The endpoint's part of the target line: its text, colour class and data-state.
function endpointText(t) {
  if (!t.endpoint) return { text: "no endpoint", cls: "sagemaker-state-bad", state: "none" };
  const state = t.endpoint.state ?? "unknown";
  const cls = state === "InService" ? "sagemaker-state-ok" : state === "Failed" ? "sagemaker-state-bad" : "sagemaker-state-wait";
  return { text: state, cls, state, title: t.endpoint.reason ?? undefined };
}

function note(t, on) {
  if (!on) return "Off: Run queues on this ComfyUI.";
  if (t.problem) return t.problem;
  if (!t.template) return "No template in the canvas: load one from Templates below.";
  if (!t.environment) return `${t.template} is bound to no environment: rebind it below.`;
  if (!t.endpoint) return `${t.environment} has no endpoint: publish it with an endpoint config.`;
  if (t.endpoint.state !== "InService") return `${t.environment}'s endpoint is ${t.endpoint.state}: it takes runs once InService.`;
  return `Run sends the canvas to ${t.environment}.`;
}

class PromptOnAwsSection {
  constructor() {
    this.box = el("input", { type: "checkbox", "data-testid": "sagemaker-prompt-on-aws-check", onchange: () => setPromptOnAws(this.box.checked) });
    this.target = el("div", { class: "sagemaker-target", "data-testid": "sagemaker-prompt-on-aws-target" });
    this.note = el("div", { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-prompt-on-aws-note" });
    this.root = el("section", { class: "sagemaker-section sagemaker-prompt-on-aws", "data-testid": "sagemaker-prompt-on-aws" }, [
      el("label", { class: "sagemaker-check sagemaker-switch", title: "Kept in this browser only" }, [this.box, "Prompt on AWS"]),
      this.target,
      this.note,
    ]);
    this.draw();
  }

  draw() {
    const on = isPromptOnAws();
    const t = target;
    this.box.checked = on;
    this.root.classList.toggle("sagemaker-off", !on);
    this.root.dataset.on = String(on);
    const parts = [];
    if (t.template) {
      parts.push(el("span", { class: "sagemaker-badge", title: "template in the canvas", "data-testid": "sagemaker-target-template" }, t.template));
      if (t.environment) {
        const state = endpointText(t);
        parts.push(
          el("i", { class: "pi pi-arrow-right sagemaker-muted" }),
          el("span", { class: "sagemaker-badge", title: "its environment", "data-testid": "sagemaker-target-environment" }, t.environment),
          el("span", { class: `sagemaker-target-state ${state.cls}`, title: state.title, "data-testid": "sagemaker-target-state", "data-state": state.state }, [
            el("i", { class: "pi pi-circle-fill" }),
            state.text,
          ]),
        );
      }
    }
    this.target.replaceChildren(...parts);
    this.target.hidden = parts.length === 0;
    this.note.textContent = note(t, on);
  }
}

// The section's root element (drawn from the current target; the target follows the canvas).
export function mountPromptOnAws() {
  const section = new PromptOnAwsSection();
  sections.add(section);
  return section.root;
}
