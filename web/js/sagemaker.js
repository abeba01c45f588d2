// comfyui-sagemaker's frontend: registers the "SageMaker" sidebar tab.
import { app } from "../../../scripts/app.js";
import { call, getRules, toastError } from "./api.js";
import { el } from "./dom.js";
import { mountEnvironments } from "./environments.js";
import { mountExecutions } from "./executions.js";
import { mountInputs } from "./inputs.js";
import { mountModels } from "./models.js";
import { mountPromptOnAws } from "./prompt_on_aws.js";
import { installQueueRouting } from "./queue.js";
import { showS3Uris } from "./s3_uris.js";
import { canvasChanged, mountTemplates } from "./templates.js";

const TAB_ID = "sagemaker";

async function renderStatus(box) {
  box.replaceChildren(el("div", { class: "sagemaker-muted" }, "Loading..."));
  try {
    const [health, rules] = await Promise.all([call("GET", "/health"), getRules()]);
    window.sagemakerRules = rules;
    const store = health.store ? health.store.kind : "unconfigured";
    const where = health.store?.kind === "s3" ? `s3://${health.store.bucket}/${health.store.prefix || ""}` : "";
    box.replaceChildren(
      el("div", { class: "sagemaker-row", "data-testid": "sagemaker-store" }, [
        el("span", { class: "sagemaker-label" }, "Store"),
        el("span", { class: "sagemaker-value" }, store + (where ? ` (${where})` : "")),
      ]),
      el("div", { class: "sagemaker-row", "data-testid": "sagemaker-version" }, [
        el("span", { class: "sagemaker-label" }, "Version"),
        el("span", { class: "sagemaker-value" }, `${health.version} · ComfyUI ${health.comfyui_version}`),
      ]),
      health.config_error
        ? el("div", { class: "sagemaker-error", "data-testid": "sagemaker-config-error" }, health.config_error)
        : el("span"),
    );
  } catch (err) {
    box.replaceChildren(el("div", { class: "sagemaker-error" }, err.message));
    toastError("SageMaker", err);
  }
}

function render(container) {
  const status = el("div", { class: "sagemaker-status" });
  container.replaceChildren(
    el("div", { class: "sagemaker-panel", "data-testid": "sagemaker-panel" }, [
      el("h3", { class: "sagemaker-title" }, "SageMaker"),
      status,
      mountPromptOnAws(),
      mountTemplates(),
      mountExecutions(),
      mountEnvironments(),
      mountInputs(),
      mountModels(),
    ]),
  );
  renderStatus(status);
}

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
    installQueueRouting(); // Run goes to the endpoint while Prompt on AWS is ticked
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = new URL("./sagemaker.css", import.meta.url).href;
    document.head.appendChild(link);
    app.extensionManager.registerSidebarTab({
      id: TAB_ID,
      icon: "pi pi-cloud",
      title: "SageMaker",
      tooltip: "SageMaker: templates, environments, endpoints",
      type: "custom",
      render,
    });
  },
});
