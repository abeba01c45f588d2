// @ts-check
// comfyui-sagemaker's frontend: registers the "SageMaker templates" sidebar tab.
import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";
import { call, getRules, setToken, toastError } from "./api.js";
import { mountConnect, onConfigChanged, refreshConnect } from "./connect.js";
import { mountCosts } from "./costs.js";
import { el } from "./dom.js";
import { mountEndpoints } from "./endpoints.js";
import { mountEnvironments } from "./environments.js";
import { forgetRuns, mountExecutions } from "./executions.js";
import { mountInputs } from "./inputs.js";
import { mountModels } from "./models.js";
import { mountPromptOnAws, resolveTarget } from "./prompt_on_aws.js";
import { installQueueRouting } from "./queue.js";
import { isArtist, learnRole, loadRole, reloadRole } from "./role.js";
import { showS3Uris } from "./s3_uris.js";
import { canvasChanged, mountTemplates } from "./templates.js";

const TAB_ID = "sagemaker";
// ComfyUI's own "Templates" tab (its example workflows) sits next to ours: the label says whose templates these are.
const TAB_TITLE = "SageMaker templates";
const TAB_TOOLTIP = "SageMaker templates: publish workflows, run them on endpoints (not ComfyUI's example Templates)";

// The extension's broadcasts reach this page once it subscribed (with the token where one is needed).
let subscribedAs = null;
function subscribeEvents(force = false) {
  const id = api.clientId ?? api.initialClientId;
  if (!id || (id === subscribedAs && !force)) return;
  subscribedAs = id;
  call("POST", "/events/subscribe", { client_id: id }).catch(() => {
    subscribedAs = null; // refused (no token yet): try again once there is one
  });
}

// A visible page looks at this ComfyUI: it says so again every minute, and at once when shown again (the
// server reads the store for other ComfyUIs' changes only while a page looks; a hidden page's subscription
// lapses after 5 minutes: core/pages.py).
const RENEW_MS = 60_000;
function renewWhileVisible() {
  const renew = () => document.visibilityState === "visible" && subscribeEvents(true);
  setInterval(renew, RENEW_MS);
  document.addEventListener("visibilitychange", renew);
}

// Asked for when this ComfyUI needs the token (configured, or listening beyond this machine).
function tokenForm(onSaved) {
  const input = el("input", {
    type: "password",
    class: "sagemaker-input",
    autocomplete: "off",
    "aria-label": "SageMaker token",
    "data-testid": "sagemaker-token-input",
  });
  const save = () => {
    setToken(input.value.trim());
    subscribeEvents(true);
    onSaved();
  };
  input.addEventListener("keydown", (event) => event.key === "Enter" && save());
  return el("div", { class: "sagemaker-token", "data-testid": "sagemaker-token" }, [
    el(
      "div",
      { class: "sagemaker-muted" },
      "This ComfyUI needs its SageMaker token (from its configuration). It is kept in this browser only.",
    ),
    el("div", { class: "sagemaker-row" }, [
      input,
      el("button", { class: "sagemaker-button", "data-testid": "sagemaker-token-save", onclick: save }, "Save"),
    ]),
  ]);
}

async function renderStatus(box) {
  box.replaceChildren(el("div", { class: "sagemaker-muted" }, "Loading..."));
  try {
    const [health] = await Promise.all([call("GET", "/health"), getRules()]); // the rules are read once, here
    if (health.authorized === false) {
      box.replaceChildren();
      return health;
    }
    learnRole(health); // before the sections are drawn: an artist's show no designer actions
    const store = health.store ? health.store.kind : "unconfigured";
    // Which one: two ComfyUIs of a team see whether they share it.
    const where = health.store?.kind === "s3" ? `s3://${health.store.bucket}/${health.store.prefix || ""}` : (health.store?.path ?? "");
    box.replaceChildren(
      el("div", { class: "sagemaker-row", "data-testid": "sagemaker-store" }, [
        el("span", { class: "sagemaker-label" }, "Store"),
        el("span", { class: "sagemaker-value", title: where }, store + (where ? ` (${where})` : "")),
      ]),
      el("div", { class: "sagemaker-row", "data-testid": "sagemaker-version" }, [
        el("span", { class: "sagemaker-label" }, "Version"),
        el("span", { class: "sagemaker-value" }, `${health.version} · ComfyUI ${health.comfyui_version}`),
      ]),
      health.config_error
        ? el("div", { class: "sagemaker-error", "data-testid": "sagemaker-config-error" }, health.config_error)
        : el("span"),
      isArtist()
        ? el(
            "div",
            {
              class: "sagemaker-muted sagemaker-note",
              title: "configuration key role",
              "data-testid": "sagemaker-role",
              "data-role": "artist",
            },
            "Artist: you can run templates; a designer publishes them.",
          )
        : el("span"),
    );
    return health;
  } catch (err) {
    box.replaceChildren(el("div", { class: "sagemaker-error" }, err.message));
    toastError("SageMaker", err);
    return null;
  }
}

let drawnIn = null; // the container the tab last drew into (the host gives one at every open)
let drawnFor = null; // what its sections were drawn for (basis)

// What the sections depend on: the store, the role, whether this page may read. A configuration applied without
// changing them (a display name, allowed hosts, idle stop) redraws only the status and Connect: an open form, the
// models' hashes and the rest stay (issue 32: Apply threw them away).
const basis = (health) => JSON.stringify([health?.authorized ?? null, health?.store ?? null, health?.role ?? null]);

async function render(container) {
  drawnIn = container;
  const status = el("div", { class: "sagemaker-status" });
  const panel = el("div", { class: "sagemaker-panel", "data-testid": "sagemaker-panel" }, [
    el("h3", { class: "sagemaker-title" }, TAB_TITLE),
    status,
  ]);
  container.replaceChildren(panel);
  const health = await renderStatus(status);
  drawnFor = health ? basis(health) : null;
  if (health?.authorized === false) {
    status.append(tokenForm(() => render(container)));
    return;
  }
  panel.append(
    mountConnect(),
    mountPromptOnAws(),
    mountTemplates(),
    mountExecutions(),
    mountEnvironments(),
    mountEndpoints(),
    mountCosts(),
    mountInputs(),
    mountModels(),
  );
}

// A configuration applied (Connect, here or in another page): the store, the role and the token may have
// changed. Everything is read again from the new one, without a page reload.
onConfigChanged(async () => {
  subscribeEvents(true); // with the token as it is now
  reloadRole(); // Run is routed by the role, whether or not the tab is open
  resolveTarget(); // Prompt on AWS's target, on the new store
  const container = drawnIn;
  if (!container?.isConnected) {
    forgetRuns(); // the old store's runs are not listed on the new one
    return;
  }
  const status = container.querySelector(".sagemaker-status");
  const health = await call("GET", "/health").catch(() => null);
  if (health && drawnFor !== null && basis(health) === drawnFor && status instanceof HTMLElement && !health.config_error) {
    await renderStatus(status);
    refreshConnect();
    return;
  }
  forgetRuns();
  if (container.isConnected) render(container);
});

app.registerExtension({
  name: "comfyui.sagemaker",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    showS3Uris(nodeType, nodeData); // Save Image (S3) lists the URIs it wrote
  },
  // Every graph load (tab switch, file open, template load): the loaded-template marker follows.
  async afterConfigureGraph() {
    canvasChanged();
  },
  async setup() {
    installQueueRouting(); // Run goes to the endpoint while Prompt on AWS is ticked (always, for an artist)
    loadRole();
    // The websocket (re)connects with the page's client id: subscribe to the extension's events then.
    api.addEventListener("status", () => subscribeEvents());
    api.addEventListener("reconnected", () => subscribeEvents(true));
    subscribeEvents();
    renewWhileVisible();
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = new URL("./sagemaker.css", import.meta.url).href;
    document.head.appendChild(link);
    app.extensionManager.registerSidebarTab({
      id: TAB_ID,
      icon: "pi pi-cloud",
      title: TAB_TITLE, // the host shows it under the icon (its label, when none is given)
      tooltip: TAB_TOOLTIP,
      type: "custom",
      render,
    });
  },
});
