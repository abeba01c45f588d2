// @ts-check
// The sidebar's "Templates" section: publish the canvas as a template; list, load (and analyze), rebind, pin, delete.
import { app } from "../../../scripts/app.js";
import { AnalysisPanel } from "./analysis.js";
import { call, getRules, onServerEvent, toast, toastError } from "./api.js";
import { field, openDialog } from "./dialog.js";
import { el, find, findAll, iconButton } from "./dom.js";
import { onShared } from "./live.js";
import { ParameterForm } from "./parameter_form.js";
import { bindingPreflight } from "./preflight.js";
import { proofNote } from "./proofs.js";
import { Latest, LiveSet, Section } from "./section.js";
import { pinLine } from "./template_pin.js";

// Live sections: their "loaded" marker follows the canvas (see canvasChanged).
/** @type {LiveSet<TemplatesSection>} */
const sections = new LiveSet();
const canvasListeners = new Set(); // e.g. Prompt on AWS's target

// Calls fn() after every change of the loaded template (or of its binding); returns the unsubscribe.
export function onCanvasChanged(fn) {
  canvasListeners.add(fn);
  return () => canvasListeners.delete(fn);
}

// The template recorded in the canvas's workflow (extra.sagemaker survives save and reload):
// {template, version, environment} as loaded, so a run goes where the loaded template went even after a
// designer rebinds it elsewhere. Workflows saved before version and environment were recorded have null.
/** @returns {{template: string, version: number | null, environment: string | null} | null} */
export function loadedRecord() {
  const recorded = /** @type {any} */ (app.graph?.extra)?.sagemaker;
  if (!recorded?.template) return null;
  return { template: recorded.template, version: recorded.version ?? null, environment: recorded.environment ?? null };
}

export function loadedTemplate() {
  return loadedRecord()?.template ?? null;
}

// The marker a workflow carries: in a stored template its name only (its version and binding change
// later); in the canvas the name, version and binding as loaded.
function marked(sagemaker, t) {
  const { version, environment, ...rest } = sagemaker ?? {};
  if (t.version === undefined) return { ...rest, template: t.name };
  return { ...rest, template: t.name, version: t.version, environment: t.environment ?? null };
}

function withTemplate(workflow, t) {
  const extra = workflow.extra ?? {};
  return { ...workflow, extra: { ...extra, sagemaker: marked(extra.sagemaker, t) } };
}

function recordInCanvas(t) {
  app.graph.extra ??= {};
  const extra = /** @type {any} */ (app.graph.extra);
  extra.sagemaker = marked(extra.sagemaker, t);
  canvasChanged();
}

// Called after every graph load (workflow tab switch, file open, template load).
export function canvasChanged() {
  for (const section of sections.all()) section.markLoaded();
  for (const fn of canvasListeners) fn();
}

const templatePath = (name) => `/templates/${encodeURIComponent(name)}`;

// The listed environments; if the route fails only "(unbound)" is offered.
async function listEnvironments() {
  try {
    return (await call("GET", "/environments")).environments ?? [];
  } catch (err) {
    toastError("Could not list environments", err);
    return [];
  }
}

const UNBOUND = "Bound to no environment: listed, but it cannot run until a designer binds it (Rebind)";

function environmentSelect(environments, selected, testid) {
  const names = environments.map((e) => e.name);
  // A template may be bound to an environment the list does not show (deleted, or not listed yet).
  if (selected && !names.includes(selected)) names.push(selected);
  return el("select", { class: "sagemaker-input", "data-testid": testid }, [
    el("option", { value: "", title: UNBOUND }, "(unbound: runs nowhere yet)"),
    ...names.map((name) => el("option", { value: name, selected: name === selected }, name)),
  ]);
}

// ComfyUI's workflow tabs (the host's workflow store, app.extensionManager.workflow).
// @ts-expect-error the published ExtensionManager type omits `workflow`, which frontends 1.32 to 1.58 have
const workflows = () => app.extensionManager?.workflow ?? null;
const tabPath = (name) => `workflows/${name}.json`;

// The open tab a template was loaded into (named after it, holding it), or null.
function templateTab(name) {
  const open = workflows()?.openWorkflows ?? [];
  return (
    open.find((w) => w.path === tabPath(name) && w.isTemporary && (w.activeState?.extra?.sagemaker?.template ?? name) === name) ?? null
  );
}

// The unsaved tab a template was published from is named after it ("Unsaved Workflow (2)" said nothing), as a
// loaded template's tab is; a saved file keeps its name, and a tab or file of that name is left alone.
async function nameTabAfter(name) {
  const store = workflows();
  const active = store?.activeWorkflow;
  if (!active?.isTemporary || active.path === tabPath(name) || store.getWorkflowByPath?.(tabPath(name))) return;
  try {
    await store.renameWorkflow(active, tabPath(name));
  } catch (err) {
    console.warn("comfyui-sagemaker: could not name the tab after the template", err); // the tab keeps its name
  }
}

function savedWorkflow(name) {
  const found = workflows()?.getWorkflowByPath?.(tabPath(name));
  return Boolean(found && !found.isTemporary);
}

// The environment a new template most likely goes to: the only one, or the most recently published.
function newest(environments) {
  const sorted = [...environments].sort((a, b) => String(b.created_at ?? "").localeCompare(String(a.created_at ?? "")));
  return sorted[0]?.name ?? null;
}

// A publish's answer: what the server narrowed or doubts (a parameter wider than the input it feeds) is a
// warning that stays until read; otherwise a short success.
function announce(template, summary) {
  const warnings = template?.warnings ?? [];
  if (warnings.length)
    toast(
      "warn",
      `${summary} with ${warnings.length === 1 ? "a warning" : `${warnings.length} warnings`}`,
      `${template.name}: ${warnings.join("\n")}`,
    );
  else toast("success", summary, template?.name);
}

// Runs a change; a failure becomes a toast and is rethrown so the dialog shows it too.
async function change(summary, fn) {
  try {
    return await fn();
  } catch (err) {
    toastError(summary, err);
    throw err;
  }
}

// What a rebind changes, shown as the environment is chosen (before Save).
function rebindConsequence(t, select) {
  const box = el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-rebind-consequence" });
  const show = () => {
    const to = select.value || null;
    if (to === (t.environment ?? null)) box.textContent = "No change.";
    else if (!to) box.textContent = `${t.name} will run nowhere until it is bound again; runs in flight finish.`;
    else
      box.textContent =
        `New runs of ${t.name} go to ${to}${t.environment ? ` instead of ${t.environment}` : ""}; ` +
        "runs in flight finish where they are, and canvases that already loaded it keep running where they loaded it.";
  };
  select.addEventListener("change", show);
  show();
  return box;
}

class TemplatesSection extends Section {
  constructor() {
    super({
      testid: "sagemaker-templates",
      title: "Templates",
      refresh: { title: "Refresh the list", testid: "sagemaker-templates-refresh" },
      plus: { title: "Publish the canvas as a template", testid: "sagemaker-templates-publish" },
      failure: "Could not list templates",
    });
    this.templates = [];
    this.newest = new Map(); // environment (lower case) -> its newest version, for the pin lines
    this.endpoints = new Map(); // environment (lower case) -> its endpoint's view
    this.following = new Latest(); // only the latest canvas change may choose the form
    this.list = el("div", { class: "sagemaker-template-list", "data-testid": "sagemaker-templates-list" });
    this.analysis = new AnalysisPanel({
      isLoaded: (name) => loadedTemplate() === name,
      load: (name) => this.load(name),
      onChange: () => this.markAnalyzed(),
    });
    this.form = new ParameterForm({ isLoaded: (name) => loadedTemplate() === name }); // the selected template's run form
    this.root.append(this.slot, this.list, this.form.root, this.analysis.root);
  }

  // The templates, and what the pin lines show: each environment's newest version and its endpoint (either
  // may fail to read: the list still shows, its pin lines say less).
  async read() {
    const [templates, environments, endpoints] = await Promise.all([
      call("GET", "/templates"),
      call("GET", "/environments").catch(() => ({ environments: [] })),
      call("GET", "/endpoints").catch(() => ({ endpoints: [] })),
    ]);
    return { templates: templates.templates, environments: environments.environments ?? [], endpoints: endpoints.endpoints ?? [] };
  }

  show({ templates, environments, endpoints }) {
    this.templates = templates;
    this.newest = new Map(environments.filter((e) => Number.isInteger(e.version)).map((e) => [e.name.toLowerCase(), e.version]));
    this.endpoints = new Map(endpoints.map((e) => [e.name.toLowerCase(), e]));
    this.renderList();
    this.analysis.sync(templates);
  }

  // A "sagemaker.endpoint" event: the pin lines follow what the endpoint serves now.
  endpointChanged(endpoint) {
    const key = endpoint.name.toLowerCase();
    if (endpoint.state === "Deleted") this.endpoints.delete(key);
    else this.endpoints.set(key, { ...this.endpoints.get(key), ...endpoint });
    if (this.templates.some((t) => t.environment?.toLowerCase() === key)) this.renderList();
  }

  plus() {
    this.openPublish();
  }

  renderList() {
    if (this.templates.length === 0) {
      this.list.replaceChildren(
        el(
          "div",
          { class: "sagemaker-muted", "data-testid": "sagemaker-templates-empty" },
          this.artist ? "No templates yet: a designer publishes them." : "No templates yet: + publishes the canvas.",
        ),
      );
      return;
    }
    this.list.replaceChildren(...this.templates.map((t) => this.row(t)));
    this.markLoaded();
    this.markAnalyzed();
  }

  row(t) {
    const environment = t.environment
      ? el("span", { class: "sagemaker-badge", title: "bound environment", "data-testid": "sagemaker-template-environment" }, t.environment)
      : el(
          "span",
          {
            class: "sagemaker-badge sagemaker-unbound",
            title: UNBOUND,
            "data-testid": "sagemaker-template-environment",
          },
          "unbound",
        );
    return el("div", { class: "sagemaker-template", "data-testid": "sagemaker-template-row", "data-template": t.name }, [
      el("i", {
        class: "pi pi-circle-fill sagemaker-loaded-mark",
        title: "loaded in the canvas",
        "data-testid": "sagemaker-template-loaded",
        hidden: true,
      }),
      el(
        "button",
        {
          class: "sagemaker-template-name",
          title: `Load ${t.name} into the canvas (its own workflow tab)`,
          "data-testid": "sagemaker-template-name",
          onclick: () => this.select(t.name),
        },
        t.name,
      ),
      environment,
      el("span", { class: "sagemaker-muted", title: "version", "data-testid": "sagemaker-template-version" }, `v${t.version}`),
      this.artist ? null : iconButton("pi pi-pencil", `Rebind ${t.name}`, "sagemaker-template-rebind", () => this.openRebind(t)),
      this.artist ? null : iconButton("pi pi-trash", `Delete ${t.name}`, "sagemaker-template-delete", () => this.confirmDelete(t)),
      t.environment
        ? pinLine(t, {
            newest: this.newest.get(t.environment.toLowerCase()) ?? null,
            endpoint: this.endpoints.get(t.environment.toLowerCase()) ?? null,
            artist: this.artist,
            onPin: (version) => this.pin(t, version),
          })
        : null,
      t.environment ? proofNote(t, this.endpoints.get(t.environment.toLowerCase()) ?? null) : null,
    ]);
  }

  // Pins the template to an environment version (null: follows the newest); `version` is the one shown, so a
  // change made meanwhile elsewhere is refused (409) rather than overwritten.
  async pin(t, environmentVersion) {
    try {
      await call("PUT", templatePath(t.name), { environment_version: environmentVersion, version: t.version });
      toast("success", environmentVersion === null ? `${t.name} follows the newest version` : `${t.name} pinned to v${environmentVersion}`);
    } catch (err) {
      toastError(`Could not pin ${t.name}`, err);
    }
    await this.refresh(); // the row shows what the server holds, whichever way it went
  }

  markLoaded() {
    this.followCanvas();
    const loaded = loadedTemplate();
    for (const row of findAll(this.list, "[data-template]")) {
      const isLoaded = row.dataset.template === loaded;
      row.classList.toggle("sagemaker-loaded", isLoaded);
      find(row, ".sagemaker-loaded-mark").hidden = !isLoaded;
    }
  }

  // The form is the canvas's template's: it reads the canvas again, comes with another template's graph
  // and goes with a graph that is no template.
  async followCanvas() {
    const loaded = loadedTemplate();
    const isLatest = this.following.begin();
    if (loaded && loaded === this.form.name) {
      this.form.readCanvas();
      this.followAnalysis(loaded, null);
      return;
    }
    if (!loaded || !this.templates.some((t) => t.name === loaded)) {
      this.form.show(null);
      return;
    }
    let template = null;
    try {
      template = await call("GET", templatePath(loaded));
    } catch {
      template = null; // listed a moment ago: gone meanwhile, and the list will say so
    }
    if (isLatest() && loadedTemplate() === loaded) {
      this.form.show(template);
      this.followAnalysis(loaded, template);
    }
  }

  // An open analysis follows the canvas to another template (it kept the previous one); a graph that is no
  // template keeps it (its node ids load the template first).
  followAnalysis(loaded, template) {
    const shown = this.analysis.name;
    if (shown === null || shown === loaded) return;
    if (template) this.analysis.show(template);
    else this.analysis.showByName(loaded);
  }

  markAnalyzed() {
    for (const row of findAll(this.list, "[data-template]")) {
      row.classList.toggle("sagemaker-analyzed", row.dataset.template === this.analysis.name);
    }
  }

  // Selecting a template (clicking its name) loads it and shows its analysis.
  async select(name) {
    const template = await this.load(name);
    this.following.begin(); // this template's form, not one a canvas change on the way asked for
    this.form.show(template);
    if (template) await this.analysis.show(template);
  }

  // Resolves to the template once it is in the canvas, or null (the failure is a toast).
  async load(name) {
    let template = null;
    try {
      template = await call("GET", templatePath(name));
      const data = withTemplate(template.workflow, template);
      const tab = templateTab(name);
      if (tab) {
        // Its tab is open: back to it, with its edits while it holds this version, else with this version.
        const state = tab.activeState;
        const same = state?.extra?.sagemaker?.version === template.version;
        await app.loadGraphData(same ? state : data, true, true, tab);
      } else {
        // A new tab named after the template; never a saved workflow of that name (it would be overwritten).
        await app.loadGraphData(data, true, true, savedWorkflow(name) ? null : name);
      }
    } catch (err) {
      template = null;
      toastError(`Could not load ${name}`, err);
      if (err.status === 404) this.refresh();
    }
    this.markLoaded();
    return template;
  }

  async openPublish() {
    const [rules, environments] = await Promise.all([
      getRules().catch((err) => {
        toastError("Could not read the name rules", err); // the server still checks the name
        return null;
      }),
      listEnvironments(),
    ]);
    const rule = rules?.template_name;
    const pattern = rule ? new RegExp(rule.pattern) : null;
    // The canvas is a listed template: + offers to update it (a new version), or to publish a new one.
    const loaded = this.templates.find((t) => t.name === loadedTemplate()) ?? null;
    const update = el("input", {
      type: "radio",
      name: "sagemaker-publish-mode",
      checked: Boolean(loaded),
      "data-testid": "sagemaker-publish-update",
    });
    const asNew = el("input", { type: "radio", name: "sagemaker-publish-mode", checked: !loaded, "data-testid": "sagemaker-publish-new" });
    const mode = loaded
      ? el("fieldset", { class: "sagemaker-fieldset" }, [
          el("label", { class: "sagemaker-check" }, [update, `update ${loaded.name} with the canvas (version ${loaded.version + 1})`]),
          el("label", { class: "sagemaker-check" }, [asNew, "publish a new template"]),
        ])
      : null;
    const name = el("input", {
      type: "text",
      class: "sagemaker-input",
      placeholder: "e.g. Portrait2",
      autocomplete: "off",
      spellcheck: "false",
      "data-testid": "sagemaker-publish-name",
    });
    const message = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-publish-name-error", hidden: true });
    const note = el("div", { class: "sagemaker-warning", "data-testid": "sagemaker-publish-name-note", hidden: true });
    const environment = environmentSelect(
      environments,
      loaded ? loaded.environment : newest(environments),
      "sagemaker-publish-environment",
    );
    const nameField = field("Name", name);
    const dialog = openDialog(this.slot, {
      title: loaded ? `Publish the canvas (${loaded.name} is loaded)` : "Publish the canvas as a template",
      body: [mode, nameField, message, note, field("Environment", environment)],
      okLabel: "Publish",
      busyLabel: "Publishing…",
      testid: "sagemaker-publish-dialog",
      onOk: () =>
        loaded && update.checked
          ? this.rebind(loaded, environment.value || null, true)
          : this.publish(name.value, environment.value || null),
    });
    const checks = new Latest();
    const validate = () => {
      const updating = Boolean(loaded && update.checked);
      nameField.hidden = updating;
      const invalid = !updating && name.value !== "" && pattern !== null && !pattern.test(name.value);
      message.hidden = !invalid;
      message.textContent = invalid ? (rule.description ?? `must match ${rule.pattern}`) : "";
      dialog.setOkEnabled(updating || (name.value !== "" && !invalid));
      note.hidden = true;
      // A taken name would be refused: Publish waits for another (the server still refuses a late one).
      if (!updating && name.value !== "" && !invalid) this.checkName(name.value, checks.begin(), note, () => dialog.setOkEnabled(false));
    };
    for (const input of [name, update, asNew]) input.addEventListener("input", validate);
    for (const input of [update, asNew]) input.addEventListener("change", validate);
    validate();
  }

  // The server's word on a free name: taken, or differing only in case from one (names are case-sensitive,
  // so "Slow" and "slow" would be two templates). Said under the name; only the latest check is shown.
  async checkName(value, isLatest, note, onTaken) {
    let answer;
    try {
      answer = await call("POST", "/names/check", { kind: "template", name: value });
    } catch {
      return; // the publish itself says what is wrong
    }
    if (!isLatest()) return;
    const similar = answer.similar ?? [];
    let text = "";
    if (answer.exists) {
      text = `${value} exists: publishing would be refused. Load it and use + to update it.`;
      onTaken();
    } else if (similar.length)
      text =
        `${similar.join(", ")} already ${similar.length === 1 ? "exists" : "exist"}: ` +
        "names that differ only in case are different templates.";
    note.hidden = !text;
    note.textContent = text;
  }

  async publish(name, environment) {
    const { workflow, output } = await app.graphToPrompt();
    const published = await change(`Could not publish ${name}`, () =>
      call("POST", "/templates", { name, workflow: withTemplate(workflow, { name }), prompt: output, environment }),
    );
    recordInCanvas(published); // the canvas now is this template, so the marker shows it
    await nameTabAfter(name);
    announce(published, "Template published");
    await this.refresh();
  }

  async openRebind(t) {
    const environments = await listEnvironments();
    const environment = environmentSelect(environments, t.environment, "sagemaker-rebind-environment");
    const replace = el("input", { type: "checkbox", "data-testid": "sagemaker-rebind-replace" });
    openDialog(this.slot, {
      title: `Rebind ${t.name} (version ${t.version})`,
      body: [
        field("Environment", environment),
        rebindConsequence(t, environment),
        bindingPreflight(t, environment, replace, environments),
        el("label", { class: "sagemaker-check" }, [replace, "Replace the workflow with the current graph"]),
      ],
      okLabel: "Save",
      testid: "sagemaker-rebind-dialog",
      onOk: () => this.rebind(t, environment.value || null, replace.checked),
    });
  }

  async rebind(t, environment, replace) {
    // version: the one shown; the server refuses (409 conflict) if someone changed it meanwhile.
    const body = { environment, version: t.version };
    if (replace) {
      const { workflow, output } = await app.graphToPrompt();
      body.workflow = withTemplate(workflow, { name: t.name });
      body.prompt = output;
    }
    let updated;
    try {
      updated = await change(`Could not update ${t.name}`, () => call("PUT", templatePath(t.name), body));
    } catch (err) {
      if (err.code === "conflict" || err.status === 404) this.refresh(); // show what changed
      throw err;
    }
    // Rebound here, by this designer: the canvas holding it follows (a rebind elsewhere does not).
    if (replace || loadedTemplate() === t.name) recordInCanvas(updated);
    announce(updated, "Template updated");
    await this.refresh();
  }

  confirmDelete(t) {
    openDialog(this.slot, {
      title: `Delete template ${t.name}?`,
      body: el("div", { class: "sagemaker-muted" }, "It leaves the store; workflows already open keep their graph."),
      okLabel: "Delete",
      danger: true,
      testid: "sagemaker-delete-dialog",
      onOk: async () => {
        // Out of the list before the DELETE goes (its form too): the canvas's template is not asked for again
        // by a change notice meanwhile (a 404 in the console of a page on a busy machine). A refusal lists it again.
        this.templates = this.templates.filter((x) => x.name !== t.name);
        try {
          await change(`Could not delete ${t.name}`, () => call("DELETE", templatePath(t.name)));
        } catch (err) {
          this.refresh();
          throw err;
        }
        toast("success", "Template deleted", t.name);
        if (loadedTemplate() === t.name) canvasChanged(); // Prompt on AWS's target is gone
        await this.refresh();
      },
    });
  }
}

// Another ComfyUI published, rebound, pinned or deleted a template, or published or deployed a version: the
// open lists follow.
onShared(["templates", "environments", "endpoints"], () => {
  for (const section of sections.all()) section.refresh();
});

onServerEvent("sagemaker.endpoint", (endpoint) => {
  if (endpoint?.name) for (const section of sections.all()) section.endpointChanged(endpoint);
});

// The section's root element; its list loads at once.
export function mountTemplates() {
  return sections.add(new TemplatesSection()).start();
}
