// @ts-check
// The sidebar's "Environments" section: list, diff, delete, publish (a new environment or a new
// version). A publish is a task: its progress card lives here and ComfyUI stays usable meanwhile.
// An artist only reads the list; an environment another ComfyUI is publishing says so, without actions.
import { call, onServerEvent, toast, toastError } from "./api.js";
import { openDialog } from "./dialog.js";
import { el, find, findAll, iconButton } from "./dom.js";
import { openEnvironmentDialog } from "./environment_dialog.js";
import { renderDiff } from "./environment_diff.js";
import { renderHistory } from "./environment_history.js";
import { formatBytes, plural } from "./format.js";
import { changedHere, onShared } from "./live.js";
import { boundTo, environmentPath } from "./needs.js";
import { LiveSet, Section } from "./section.js";
import { TaskBoard } from "./task_board.js";
import { onTask } from "./tasks.js";

/** @type {LiveSet<EnvironmentsSection>} */
const sections = new LiveSet();

function announce(task, name) {
  if (task.state === "succeeded") toast("success", "Environment published", `${name} version ${task.result?.version ?? "?"}`);
  else if (task.state === "cancelled") toast("info", "Publish cancelled", name);
  else toast("error", `Could not publish ${name}`, task.error?.message ?? "unknown error");
}

// Publishes, each followed once whichever section (or none) shows it. A publish's name is as typed; an
// event carries only the lowercased target, so a later track() may correct it.
const publishes = new TaskBoard({
  title: (entry) => `Publishing ${entry.name}`,
  finished(final, entry) {
    if (final.result?.name) entry.name = final.result.name; // the name as published, not lowercased
    announce(final, entry.name);
    for (const s of sections.all()) s.refresh();
    if (final.result?.bound?.length) changedHere("templates"); // their rows show the binding
  },
});

// A publish started elsewhere (another browser, the CLI) shows up too.
onTask((task) => {
  if (task.kind !== "publish" || task.state !== "running" || publishes.entries.has(task.id)) return;
  const listed = sections
    .all()
    .flatMap((s) => s.environments)
    .find((e) => e.name.toLowerCase() === task.target);
  publishes.track(task, listed?.name ?? task.target);
});

// Another ComfyUI published, deleted or deployed: the list (and its endpoint states) follows.
onShared(["environments", "endpoints"], () => {
  for (const s of sections.all()) s.refresh();
});

// A publish this page follows (of this ComfyUI): its own card says so, so the row keeps its actions.
function publishingHere(name) {
  const lower = name.toLowerCase();
  return [...publishes.entries.values()].some((p) => p.task.state === "running" && p.task.target === lower);
}

// Endpoint state changes refresh the state column in place.
onServerEvent("sagemaker.endpoint", (endpoint) => {
  if (endpoint?.name) for (const s of sections.all()) s.endpointChanged(endpoint.environment ?? endpoint.name, endpoint.state);
});

function endpointLabel(config) {
  if (!config) return { text: "no endpoint", title: "published without an endpoint" };
  if (config.kind !== "sagemaker") return { text: config.kind, title: "a worker process on this machine" };
  const scaling = config.autoscaling ? `, autoscaling ${config.autoscaling.min}-${config.autoscaling.max}` : "";
  const fallback = config.instance_types?.length > 1 ? ` (fallback: ${config.instance_types.slice(1).join(", ")})` : "";
  return {
    text: `sagemaker ${config.mode}`,
    title: `${config.instance_type}${fallback} × ${config.initial_count}, ${config.mode}${scaling}`,
  };
}

// An info panel in the section's slot: a title, its content, Close.
function openPanel(slot, title, content, testid) {
  const close = el("button", { class: "sagemaker-button", "data-testid": "sagemaker-panel-close", onclick: () => box.remove() }, "Close");
  const box = el("div", { class: "sagemaker-dialog", role: "region", "aria-label": title, "data-testid": testid }, [
    el("div", { class: "sagemaker-dialog-title" }, title),
    content,
    el("div", { class: "sagemaker-dialog-buttons" }, close),
  ]);
  box.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Escape") box.remove();
  });
  slot.replaceChildren(box);
  return box;
}

class EnvironmentsSection extends Section {
  constructor() {
    super({
      testid: "sagemaker-environments",
      title: "Environments",
      refresh: { title: "Refresh the list", testid: "sagemaker-environments-refresh" },
      plus: { title: "New Environment", testid: "sagemaker-environments-new" },
      failure: "Could not list environments",
    });
    this.environments = [];
    this.list = el("div", { class: "sagemaker-environment-list", "data-testid": "sagemaker-environments-list" });
    this.root.append(this.slot, publishes.attach(this.root, "sagemaker-environment-jobs"), this.list);
  }

  async read() {
    return (await call("GET", "/environments")).environments;
  }

  show(environments) {
    this.environments = environments;
    this.renderList();
  }

  plus() {
    this.openNew();
  }

  renderList() {
    if (this.environments.length === 0) {
      this.list.replaceChildren(
        el(
          "div",
          { class: "sagemaker-muted", "data-testid": "sagemaker-environments-empty" },
          this.artist ? "No environments yet: a designer publishes them." : "No environments yet: + publishes one.",
        ),
      );
      return;
    }
    this.list.replaceChildren(...this.environments.map((e) => this.row(e)));
  }

  row(e) {
    if (e.problem) {
      // A manifest this version cannot read: say so, and let it be deleted; the others still list.
      return el("div", { class: "sagemaker-environment", "data-testid": "sagemaker-environment-row", "data-environment": e.name }, [
        el("div", { class: "sagemaker-environment-line" }, [
          el("span", { class: "sagemaker-environment-name", "data-testid": "sagemaker-environment-name" }, e.name),
          this.artist ? null : iconButton("pi pi-trash", `Delete ${e.name}`, "sagemaker-environment-delete", () => this.confirmDelete(e)),
        ]),
        el("div", { class: "sagemaker-error", "data-testid": "sagemaker-environment-problem" }, e.problem),
      ]);
    }
    const endpoint = endpointLabel(e.endpoint);
    // Another ComfyUI holds its lease (publishing or deploying): no publish or delete to offer meanwhile.
    const busy =
      e.busy && !publishingHere(e.name)
        ? el(
            "span",
            {
              class: "sagemaker-badge sagemaker-busy",
              title: "another ComfyUI on the store is working on it",
              "data-testid": "sagemaker-environment-busy",
            },
            `${e.busy.what ?? "publishing"} by ${e.busy.by ?? "another ComfyUI"}`,
          )
        : null;
    const actions =
      this.artist || busy
        ? []
        : [
            iconButton("pi pi-upload", `Publish a new version of ${e.name}`, "sagemaker-environment-publish", () =>
              this.openNew({ name: e.name }),
            ),
            iconButton("pi pi-trash", `Delete ${e.name}`, "sagemaker-environment-delete", () => this.confirmDelete(e)),
          ];
    return el("div", { class: "sagemaker-environment", "data-testid": "sagemaker-environment-row", "data-environment": e.name }, [
      el("div", { class: "sagemaker-environment-line" }, [
        el(
          "span",
          {
            class: "sagemaker-environment-name",
            title: `${e.name}: templates ${e.templates.join(", ") || "none"}`,
            "data-testid": "sagemaker-environment-name",
          },
          e.name,
        ),
        el("span", { class: "sagemaker-muted", title: "version", "data-testid": "sagemaker-environment-version" }, `v${e.version}`),
        iconButton("pi pi-arrow-right-arrow-left", `Compare ${e.name} with this ComfyUI`, "sagemaker-environment-diff", () =>
          this.openDiff(e),
        ),
        iconButton("pi pi-history", `Versions of ${e.name}: who, when, what changed`, "sagemaker-environment-history-open", () =>
          this.openHistory(e),
        ),
        busy,
        ...actions,
      ]),
      el("div", { class: "sagemaker-environment-facts sagemaker-muted" }, [
        el("span", { title: "packs and models, stored", "data-testid": "sagemaker-environment-size" }, formatBytes(e.size)),
        el("span", { "data-testid": "sagemaker-environment-counts" }, `${plural(e.packs, "pack")} · ${plural(e.models, "model")}`),
        el("span", { class: "sagemaker-badge", title: endpoint.title, "data-testid": "sagemaker-environment-endpoint" }, endpoint.text),
        el("span", { title: "endpoint state", "data-testid": "sagemaker-environment-state" }, e.endpoint_state ?? "—"),
      ]),
    ]);
  }

  endpointChanged(environment, state) {
    const lower = String(environment).toLowerCase();
    for (const row of findAll(this.list, "[data-environment]")) {
      if (row.dataset.environment?.toLowerCase() === lower)
        find(row, '[data-testid="sagemaker-environment-state"]').textContent = state ?? "—";
    }
  }

  // New environment, or (name given) a new version of it: its templates, the ones bound to it, and `add`.
  async openNew({ name = null, add = [] } = {}) {
    try {
      let prefill = { templates: add };
      if (name) {
        const [manifest, { templates }] = await Promise.all([call("GET", environmentPath(name)), call("GET", "/templates")]);
        const known = new Set(templates.map((t) => t.name));
        const names = new Set([...manifest.templates, ...boundTo(templates, manifest.name), ...add]);
        prefill = {
          name: manifest.name,
          templates: [...names].filter((n) => known.has(n)),
          include: manifest.include,
          endpoint: manifest.endpoint,
        };
      }
      await this.refresh();
      await openEnvironmentDialog(this.slot, {
        ...prefill,
        environments: this.environments,
        onStarted: (task, taskName) => publishes.track(task, taskName),
      });
      this.slot.scrollIntoView({ block: "nearest" });
    } catch (err) {
      toastError("Could not open the New Environment dialog", err);
    }
  }

  async openDiff(e) {
    try {
      const diff = await call("GET", `${environmentPath(e.name)}/diff`);
      openPanel(this.slot, `${diff.name} v${diff.version} compared with this ComfyUI`, renderDiff(diff), "sagemaker-diff-panel");
    } catch (err) {
      toastError(`Could not compare ${e.name}`, err);
      if (err.status === 404) this.refresh();
    }
  }

  async openHistory(e) {
    try {
      const history = await call("GET", `${environmentPath(e.name)}/versions`);
      const serving = history.serving ? `, v${history.serving} serving` : ", no endpoint";
      openPanel(
        this.slot,
        `${history.name}: ${plural(history.versions.length, "version")}${serving}`,
        renderHistory(history),
        "sagemaker-history-panel",
      );
    } catch (err) {
      toastError(`Could not read the versions of ${e.name}`, err);
      if (err.status === 404) this.refresh();
    }
  }

  async confirmDelete(e) {
    // Bound templates are known before asking: the usual conflict needs no failed request.
    let bound = [];
    try {
      bound = boundTo((await call("GET", "/templates")).templates, e.name);
    } catch {
      bound = []; // the server still refuses (409) and the dialog then offers "Delete anyway"
    }
    let force = bound.length > 0;
    const note = force
      ? el(
          "div",
          { class: "sagemaker-error", "data-testid": "sagemaker-environment-delete-note" },
          `${plural(bound.length, "template")} ${bound.join(", ")} ${bound.length === 1 ? "is" : "are"} bound to ${e.name} ` +
            "and will point at a missing environment.",
        )
      : el(
          "div",
          { class: "sagemaker-muted", "data-testid": "sagemaker-environment-delete-note" },
          "Its versions and its endpoint go; stored files other environments share stay.",
        );
    const dialog = openDialog(this.slot, {
      title: `Delete environment ${e.name}?`,
      body: note,
      okLabel: force ? "Delete anyway" : "Delete",
      danger: true,
      testid: "sagemaker-environment-delete-dialog",
      onOk: async () => {
        try {
          await call("DELETE", environmentPath(e.name) + (force ? "?force=true" : ""));
        } catch (err) {
          if (err.code === "conflict" && !force) {
            force = true; // the message says why; a second click deletes anyway
            find(dialog.box, '[data-testid="sagemaker-dialog-ok"]').textContent = "Delete anyway";
          } else {
            toastError(`Could not delete ${e.name}`, err);
          }
          if (err.status === 404) this.refresh();
          throw err;
        }
        toast("success", "Environment deleted", e.name);
        await this.refresh();
      },
    });
  }
}

// The section's root element; its list loads at once.
export function mountEnvironments() {
  return sections.add(new EnvironmentsSection()).start();
}

// The New Environment dialog prefilled for a new version of `name` with `add` ticked (binding preflight).
export function openNewEnvironment(name, add) {
  const section = sections.all()[0];
  if (!section) {
    toast("warn", "Open the SageMaker tab", "The Environments section is not shown.");
    return;
  }
  section.openNew({ name, add });
}
