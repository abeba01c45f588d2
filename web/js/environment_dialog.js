// @ts-check
// The New Environment dialog: name, what to include (templates or everything installed), the
// endpoint config and a summary; publishing starts a task and the dialog closes (no page lock).
import { call, getRules, toastError } from "./api.js";
import { openConnect } from "./connect.js";
import { field, openDialog } from "./dialog.js";
import { el } from "./dom.js";
import { endpointForm } from "./endpoint_form.js";
import { formatBytes, plural } from "./format.js";
import { analyzeTemplate, builtinPacks, missingHere, modelKeys } from "./needs.js";

let dialogs = 0; // radio groups need a page-unique name

function nameRule(rules) {
  const rule = rules?.environment_name;
  return rule ? { pattern: new RegExp(rule.pattern), description: rule.description ?? `must match ${rule.pattern}` } : null;
}

// A template's row: checkbox, name, what it needs (packs, models) and, in red, what this ComfyUI lacks.
function templateChoice(name, checked) {
  const box = el("input", { type: "checkbox", value: name, checked, "data-testid": "sagemaker-environment-template-check" });
  const info = el(
    "div",
    { class: "sagemaker-muted sagemaker-choice-detail", "data-testid": "sagemaker-environment-template-info" },
    "analyzing...",
  );
  const missing = el("div", {
    class: "sagemaker-error sagemaker-choice-detail",
    "data-testid": "sagemaker-environment-template-missing",
    hidden: true,
  });
  const root = el("div", { class: "sagemaker-choice", "data-testid": "sagemaker-environment-template", "data-template": name }, [
    el("label", { class: "sagemaker-check" }, [box, el("span", { class: "sagemaker-choice-name", title: name }, name)]),
    info,
    missing,
  ]);
  return {
    name,
    box,
    root,
    state: "loading",
    analysis: null,
    show(analysis) {
      this.state = "ok";
      this.analysis = analysis;
      const lacks = missingHere(analysis);
      info.textContent = `${plural(analysis.packs.length, "pack")} · ${plural(analysis.models.length, "model")}`;
      missing.hidden = lacks.length === 0;
      missing.textContent = lacks.length ? `missing here: ${lacks.join(", ")}` : "";
      if (lacks.length) this.state = "missing";
    },
    fail(err) {
      this.state = "error";
      info.textContent = "";
      missing.hidden = false;
      missing.textContent = `could not analyze: ${err?.message ?? err}`;
    },
  };
}

// What the chosen templates (or everything installed) add up to: packs, models and the models' size.
function summarize(choices, all, snapshot) {
  const builtin = builtinPacks(snapshot);
  const installed = snapshot.custom_nodes.filter((p) => !p.builtin).map((p) => p.folder);
  const sizes = new Map(snapshot.models.map((m) => [`${m.folder}/${m.name}`, m.size]));
  if (all) {
    const bytes = snapshot.models.reduce((sum, m) => sum + m.size, 0);
    return {
      text: `everything installed: ${plural(installed.length, "pack")} · ${plural(sizes.size, "model")} · ${formatBytes(bytes)}`,
      pending: false,
    };
  }
  const chosen = choices.filter((c) => c.box.checked);
  const packs = new Set();
  const models = new Set();
  for (const c of chosen.filter((c) => c.analysis)) {
    for (const p of c.analysis.packs) if (!builtin.has(p)) packs.add(p);
    for (const key of c.analysis.models.flatMap(modelKeys)) if (sizes.has(key)) models.add(key);
  }
  const bytes = [...models].reduce((sum, key) => sum + sizes.get(key), 0);
  const pending = chosen.some((c) => c.state === "loading");
  return {
    text:
      `${plural(chosen.length, "template")} · ${plural(packs.size, "pack")} · ${plural(models.size, "model")} · ` +
      `${formatBytes(bytes)}${pending ? " (analyzing...)" : ""}`,
    pending,
  };
}

// What binding changes, said before it is done: templates bound elsewhere move here.
function bindConsequence(chosen, templates, target) {
  const lower = target.toLowerCase();
  const moved = chosen
    .map((c) => templates.find((t) => t.name === c.name))
    .filter((t) => t?.environment && t.environment.toLowerCase() !== lower);
  if (chosen.length === 0) return "";
  if (moved.length === 0) return "Once published, their runs go to this environment.";
  return `Once published, their runs go to this environment; ${moved.map((t) => `${t.name} leaves ${t.environment}`).join(", ")}.`;
}

// "Open Connect": closes the dialog and brings the Connect section (expanded) into view.
function connectOffer(close) {
  return el("div", { class: "sagemaker-dialog-action" }, [
    el(
      "button",
      {
        class: "sagemaker-button",
        "data-testid": "sagemaker-open-connect",
        onclick: () => {
          close();
          openConnect();
        },
      },
      "Open Connect",
    ),
  ]);
}

// options: {environments, name?, templates?: [names ticked], include?, endpoint?, warmup?, onStarted(task, name)}.
export async function openEnvironmentDialog(slot, options) {
  const { environments, onStarted } = options;
  const [rules, templates, snapshot] = await Promise.all([
    getRules().catch((err) => {
      toastError("Could not read the name rules", err); // the server still checks the name
      return null;
    }),
    call("GET", "/templates").then((r) => r.templates),
    call("GET", "/snapshot"),
  ]);
  const rule = nameRule(rules);
  const ticked = new Set(options.templates ?? []);
  const group = `sagemaker-include-${++dialogs}`;

  const name = el("input", {
    type: "text",
    class: "sagemaker-input",
    placeholder: "e.g. Portraits",
    autocomplete: "off",
    spellcheck: "false",
    value: options.name ?? "",
    "data-testid": "sagemaker-environment-name",
  });
  const nameError = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-environment-name-error", hidden: true });
  const nameNote = el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-environment-name-note", hidden: true });
  const byTemplates = el("input", {
    type: "radio",
    name: group,
    value: "templates",
    checked: options.include !== "all",
    "data-testid": "sagemaker-environment-include-templates",
  });
  const everything = el("input", {
    type: "radio",
    name: group,
    value: "all",
    checked: options.include === "all",
    "data-testid": "sagemaker-environment-include-all",
  });
  const choices = templates.map((t) => templateChoice(t.name, ticked.has(t.name)));
  // Yes by default: a template is included to run there, and Run needs it bound.
  const bind = el("input", { type: "checkbox", checked: options.bind !== false, "data-testid": "sagemaker-environment-bind" });
  const bindNote = el("div", { class: "sagemaker-muted sagemaker-choice-detail", "data-testid": "sagemaker-environment-bind-note" });
  // Off unless asked: a warm-up is a run nobody asked for, at every cold start (core/warmup.py).
  const warmup = el("input", { type: "checkbox", checked: options.warmup === true, "data-testid": "sagemaker-environment-warmup" });
  const list = el(
    "div",
    { class: "sagemaker-choices", "data-testid": "sagemaker-environment-templates" },
    choices.length
      ? choices.map((c) => c.root)
      : el("div", { class: "sagemaker-muted" }, "No templates yet: publish one first, or include everything installed."),
  );
  const summary = el("div", { class: "sagemaker-summary", "data-testid": "sagemaker-environment-summary" });
  const blocker = el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-environment-blocker", hidden: true });
  let dialog = null;
  const endpoint = endpointForm(options.endpoint, () => dialog && validate());

  const existing = options.name ? environments.find((e) => e.name === options.name) : null;
  dialog = openDialog(slot, {
    title: existing ? `New version of ${existing.name}` : "New Environment",
    body: [
      field("Name", name),
      nameError,
      nameNote,
      el("fieldset", { class: "sagemaker-fieldset" }, [
        el("legend", { class: "sagemaker-label" }, "Include"),
        el("label", { class: "sagemaker-check" }, [byTemplates, "these templates' packs and models"]),
        list,
        el("label", { class: "sagemaker-check" }, [everything, "everything installed (all packs and models)"]),
        el("label", { class: "sagemaker-check", title: "Their runs then go to this environment's endpoint" }, [
          bind,
          "bind the ticked templates to it",
        ]),
        bindNote,
        el(
          "label",
          {
            class: "sagemaker-check",
            title:
              "Each worker runs it on each of its ComfyUIs before the endpoint is ready, so models are loaded before " +
              "the first prompt; it costs one run per ComfyUI at every start, and does what the workflow does",
          },
          [warmup, "warm up: run the first ticked template (its defaults) before the endpoint is ready"],
        ),
      ]),
      endpoint.root,
      summary,
      blocker,
    ],
    okLabel: "Publish",
    busyLabel: "Publishing…", // until its job card shows (the server snapshots the packs first)
    testid: "sagemaker-environment-dialog",
    onOk: () => publish(),
  });

  function nameProblem() {
    const value = name.value;
    nameNote.hidden = true;
    if (value === "") return null;
    if (rule && !rule.pattern.test(value)) return rule.description;
    const same = environments.find((e) => e.name.toLowerCase() === value.toLowerCase());
    if (same && same.name !== value) return `environment ${same.name} exists; names that differ only in case are the same on SageMaker`;
    if (same) {
      nameNote.hidden = false;
      nameNote.textContent = `publishes version ${same.version + 1} of ${same.name}`;
    }
    return null;
  }

  function validate() {
    const problem = nameProblem();
    nameError.hidden = !problem;
    nameError.textContent = problem ?? "";
    const all = everything.checked;
    list.classList.toggle("sagemaker-disabled", all);
    for (const c of choices) c.box.disabled = all;
    const chosen = choices.filter((c) => c.box.checked);
    const lacking = chosen.filter((c) => c.state === "missing").map((c) => c.name);
    let block = null;
    if (!all && chosen.length === 0) block = "Tick at least one template, or include everything installed.";
    else if (!all && lacking.length)
      block = `${lacking.join(", ")} ${lacking.length === 1 ? "needs" : "need"} what this ComfyUI lacks (in red above).`;
    blocker.hidden = !block;
    blocker.textContent = block ?? "";
    summary.textContent = summarize(choices, all, snapshot).text;
    bind.disabled = all;
    warmup.disabled = all;
    bindNote.textContent = bindConsequence(all || !bind.checked ? [] : chosen, templates, name.value);
    dialog.setOkEnabled(name.value !== "" && !problem && !block && endpoint.problem() === null);
  }

  async function publish() {
    const body = { name: name.value, endpoint: endpoint.value() };
    if (everything.checked) body.include = "all";
    else {
      body.templates = choices.filter((c) => c.box.checked).map((c) => c.name);
      if (bind.checked) body.bind = true;
      if (warmup.checked) body.warmup = true;
    }
    let task;
    try {
      ({ task } = await call("POST", "/environments", body));
    } catch (err) {
      toastError(`Could not publish ${body.name}`, err);
      // SageMaker needs the S3 store and AWS set up: the message says what is missing, Connect sets it.
      if (err.code === "aws_not_configured") err.action = connectOffer(() => dialog.close());
      throw err; // the dialog shows it too
    }
    onStarted(task, body.name);
  }

  for (const input of [name, byTemplates, everything, bind, ...choices.map((c) => c.box)]) {
    input.addEventListener("input", validate);
    input.addEventListener("change", validate);
  }
  validate();
  for (const c of choices) {
    analyzeTemplate(c.name)
      .then(
        (a) => c.show(a),
        (err) => c.fail(err),
      )
      .then(() => dialog.box.isConnected && validate());
  }
  return dialog;
}
