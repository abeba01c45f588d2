// @ts-check
// The sidebar's "Analysis" panel: what a template needs (node packs, models, input files) and what
// this ComfyUI lacks. A missing thing lists its node ids; clicking one selects that node on the canvas.
import { app } from "../../../scripts/app.js";
import { call, toast, toastError } from "./api.js";
import { el, iconButton } from "./dom.js";

const MAX_IDS = 12; // a model used by 5,000 nodes must not draw 5,000 buttons

// "10:1" is inner node 1 of subgraph node 10: the root graph only holds node 10.
export function outerNodeId(id) {
  return String(id).split(":")[0];
}

// Select the node with this id (or its outer subgraph node) and center the canvas on it.
export function focusNode(id) {
  const canvas = app.canvas;
  const root = app.graph;
  const node = root?.getNodeById(outerNodeId(id));
  if (!canvas || !node) return false;
  if (canvas.graph !== root) canvas.setGraph(root); // leave an open subgraph: analysis ids are the root's
  canvas.selectItems([node]);
  canvas.centerOnNode(node);
  canvas.setDirty(true, true);
  return true;
}

function section(title, testid, items, empty) {
  if (items.length === 0 && empty === null) return null; // nothing worth a heading
  return el("div", { class: "sagemaker-analysis-section", "data-testid": testid }, [
    el("div", { class: "sagemaker-analysis-heading" }, `${title}${items.length ? ` (${items.length})` : ""}`),
    items.length ? el("ul", { class: "sagemaker-analysis-list" }, items) : el("div", { class: "sagemaker-muted" }, empty),
  ]);
}

function status(present, testid = "sagemaker-analysis-status") {
  return present
    ? el("span", { class: "sagemaker-analysis-ok", "data-testid": testid }, [el("i", { class: "pi pi-check" }), " present"])
    : el("span", { class: "sagemaker-analysis-missing", "data-testid": testid }, [el("i", { class: "pi pi-times" }), " MISSING"]);
}

function packItems(nodes) {
  const byPack = new Map();
  for (const n of nodes) {
    const pack = n.pack ?? "?";
    if (!byPack.has(pack)) byPack.set(pack, []);
    byPack.get(pack).push(n.type);
  }
  return [...byPack].map(([pack, types]) =>
    el("li", { class: "sagemaker-analysis-item", "data-testid": "sagemaker-analysis-pack", "data-pack": pack }, [
      el("div", { class: "sagemaker-analysis-line" }, [
        el(
          "span",
          {
            class: `sagemaker-badge${pack === "core" ? " sagemaker-core" : ""}`,
            title: pack === "core" ? "built into ComfyUI" : "custom node pack",
          },
          pack,
        ),
        el("span", { class: "sagemaker-analysis-types sagemaker-muted", title: types.join("\n") }, types.join(", ")),
      ]),
    ]),
  );
}

function safeUrl(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

export class AnalysisPanel {
  // isLoaded(name): is the template the canvas's graph? load(name): load it there, resolve truthy if done.
  // onChange(): the analyzed template changed (the list marks its row). The element is .root.
  constructor({ isLoaded, load, onChange }) {
    this.isLoaded = isLoaded;
    this.load = load;
    this.onChange = onChange;
    this.template = null; // {name, version}
    this.ticket = 0; // only the latest analysis may draw
    this.title = el("h5", { class: "sagemaker-analysis-title", "data-testid": "sagemaker-analysis-title" });
    this.body = el("div", { class: "sagemaker-analysis-body", "data-testid": "sagemaker-analysis-body" });
    this.root = el("div", { class: "sagemaker-analysis", "data-testid": "sagemaker-analysis", hidden: true }, [
      el("div", { class: "sagemaker-section-header" }, [
        this.title,
        iconButton(
          "pi pi-refresh",
          "Analyze again",
          "sagemaker-analysis-refresh",
          () => this.template && this.showByName(this.template.name),
        ),
        iconButton("pi pi-times", "Close the analysis", "sagemaker-analysis-close", () => this.hide()),
      ]),
      this.body,
    ]);
  }

  get name() {
    return this.template?.name ?? null;
  }

  hide() {
    this.ticket++;
    this.template = null;
    this.root.hidden = true;
    this.body.replaceChildren();
    this.onChange?.();
  }

  async showByName(name) {
    const ticket = this.begin(name);
    try {
      const template = await call("GET", `/templates/${encodeURIComponent(name)}`);
      if (ticket === this.ticket) await this.analyze(template, ticket);
    } catch (err) {
      this.fail(ticket, name, err);
    }
  }

  // A template already fetched (a load just did): no second GET.
  async show(template) {
    const ticket = this.begin(template.name);
    try {
      await this.analyze(template, ticket);
    } catch (err) {
      this.fail(ticket, template.name, err);
    }
  }

  begin(name) {
    this.template = { name, version: null };
    this.root.hidden = false;
    this.title.textContent = `Analysis: ${name}`;
    this.title.title = name;
    this.body.replaceChildren(el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-analysis-loading" }, "Analyzing..."));
    this.onChange?.();
    return ++this.ticket;
  }

  async analyze(template, ticket) {
    const result = await call("POST", "/analyze", { workflow: template.workflow });
    if (ticket !== this.ticket) return;
    this.template = { name: template.name, version: template.version };
    this.render(result);
  }

  fail(ticket, name, err) {
    if (ticket !== this.ticket) return;
    this.body.replaceChildren(
      el("div", { class: "sagemaker-error", "data-testid": "sagemaker-analysis-error" }, err?.message ?? String(err)),
    );
    toastError(`Could not analyze ${name}`, err);
  }

  // Templates changed (list refresh): a deleted template's analysis goes, a changed one is redone.
  sync(templates) {
    const shown = this.template;
    if (!shown || shown.version === null) return;
    const current = templates.find((t) => t.name === shown.name);
    if (!current) this.hide();
    else if (current.version !== shown.version) this.showByName(current.name);
  }

  render(a) {
    const missingCount = a.missing.length + a.models.filter((m) => !m.present).length + a.inputs.filter((i) => !i.present).length;
    const summary = missingCount
      ? el(
          "div",
          { class: "sagemaker-analysis-missing sagemaker-analysis-summary", "data-testid": "sagemaker-analysis-summary" },
          `${missingCount} missing on this ComfyUI`,
        )
      : el(
          "div",
          { class: "sagemaker-analysis-ok sagemaker-analysis-summary", "data-testid": "sagemaker-analysis-summary" },
          "Everything it needs is here",
        );
    this.body.replaceChildren(
      ...[
        summary,
        section(
          "Missing node types",
          "sagemaker-analysis-missing-nodes",
          a.missing.map((m) => this.missingNodeItem(m)),
          null,
        ),
        section("Node packs", "sagemaker-analysis-packs", packItems(a.nodes), "none"),
        section(
          "Models",
          "sagemaker-analysis-models",
          a.models.map((m) => this.modelItem(m)),
          "none",
        ),
        section(
          "Input files",
          "sagemaker-analysis-inputs",
          a.inputs.map((i) => this.inputItem(i)),
          "none",
        ),
        section(
          "Warnings",
          "sagemaker-analysis-warnings",
          a.warnings.map((w) =>
            el("li", { class: "sagemaker-analysis-item sagemaker-analysis-warning", "data-testid": "sagemaker-analysis-warning" }, w),
          ),
          null,
        ),
      ].filter((part) => part !== null),
    );
  }

  missingNodeItem(m) {
    return el("li", { class: "sagemaker-analysis-item", "data-testid": "sagemaker-analysis-missing-node", "data-type": m.type }, [
      el("div", { class: "sagemaker-analysis-line" }, [
        el("span", { class: "sagemaker-analysis-name", title: m.type }, m.type),
        el("span", { class: "sagemaker-analysis-missing" }, "not installed"),
      ]),
      this.nodeIds(m.node_ids),
    ]);
  }

  modelItem(m) {
    const ambiguous = m.folder === "?";
    const path = ambiguous ? m.name : `${m.folder}/${m.name}`;
    const url = !m.present && m.url ? safeUrl(m.url) : null;
    return el(
      "li",
      {
        class: "sagemaker-analysis-item",
        "data-testid": "sagemaker-analysis-model",
        "data-model": path,
        "data-present": String(m.present),
      },
      [
        el("div", { class: "sagemaker-analysis-line" }, [
          el("span", { class: "sagemaker-analysis-name", title: path }, path),
          status(m.present),
        ]),
        ambiguous && m.candidates
          ? el(
              "div",
              { class: "sagemaker-muted", "data-testid": "sagemaker-analysis-candidates" },
              `ambiguous: in ${m.candidates.join(", ")}`,
            )
          : null,
        url
          ? el(
              "a",
              {
                class: "sagemaker-analysis-url",
                href: url,
                target: "_blank",
                rel: "noopener noreferrer",
                title: url,
                "data-testid": "sagemaker-analysis-url",
              },
              "download link",
            )
          : null,
        !m.present || ambiguous ? this.nodeIds(m.node_ids) : null,
      ],
    );
  }

  inputItem(i) {
    return el(
      "li",
      {
        class: "sagemaker-analysis-item",
        "data-testid": "sagemaker-analysis-input",
        "data-input": i.name,
        "data-present": String(i.present),
      },
      [
        el("div", { class: "sagemaker-analysis-line" }, [
          el("span", { class: "sagemaker-analysis-name", title: i.name }, i.name),
          status(i.present),
        ]),
        i.present ? null : this.nodeIds(i.node_ids),
      ],
    );
  }

  nodeIds(ids) {
    const shown = ids.slice(0, MAX_IDS).map((id) =>
      el(
        "button",
        {
          class: "sagemaker-node-id",
          title: `Select node ${id} on the canvas`,
          "data-testid": "sagemaker-analysis-node-id",
          "data-node-id": id,
          onclick: () => this.goTo(id),
        },
        `#${id}`,
      ),
    );
    const more = ids.length > MAX_IDS ? el("span", { class: "sagemaker-muted" }, `+${ids.length - MAX_IDS} more`) : null;
    return el("div", { class: "sagemaker-node-ids" }, [
      el("span", { class: "sagemaker-muted" }, ids.length === 1 ? "node" : "nodes"),
      ...shown,
      more,
    ]);
  }

  async goTo(id) {
    const name = this.name;
    // The ids are the template's: another graph in the canvas would have other nodes under them.
    if (name && !this.isLoaded(name) && !(await this.load(name))) return;
    if (!focusNode(id)) toast("warn", "Node not on the canvas", `Node ${id} is not in the canvas's graph (edited since the load?).`);
  }
}
