// @ts-check
// The sidebar's "Endpoints" section: every endpoint (a local worker, a SageMaker endpoint) with its state,
// the environment version it serves, its instances, what it is doing while it starts (the worker's own
// activity and cold start steps), its log, Stop / Start, which keep the environment, and Rollback to the
// version before the one it serves; Stop asks first, saying which runs in flight it ends and whose (their owners
// are told who stopped them). States arrive as "sagemaker.endpoint" events; while an endpoint starts, the
// section reads it every second for its steps.
import { call, onServerEvent, toast, toastError } from "./api.js";
import { openDialog } from "./dialog.js";
import { el } from "./dom.js";
import { comfyuisText, comfyuisTitle } from "./endpoint_busy.js";
import { isMine, knownRun } from "./executions.js";
import { formatBytes, formatDuration, timeAgo } from "./format.js";
import { idleText } from "./idle_stop.js";
import { poolsText } from "./instance_pools.js";
import { onShared } from "./live.js";
import { stopQuestion } from "./run_notices.js";
import { LiveSet, Section } from "./section.js";
import { StepClock } from "./step_clock.js";

const STARTING = new Set(["Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"]);
const POLL_MS = 1000;
const LOG_TAIL = 200;
/** @type {LiveSet<EndpointsSection>} */
const sections = new LiveSet();

onServerEvent("sagemaker.endpoint", (endpoint) => {
  if (endpoint?.name) for (const s of sections.all()) s.changed(endpoint);
});

// Another ComfyUI deployed, stopped or deleted one: the list follows.
onShared("endpoints", () => {
  for (const s of sections.all()) s.refresh();
});

const endpointPath = (name) => `/endpoints/${encodeURIComponent(name)}`;
const environmentPath = (name) => `/environments/${encodeURIComponent(name)}`;
// What happens to the runs in flight when it goes back, as each kind does it.
const IN_FLIGHT = {
  sagemaker: "Runs in flight finish on the version they started on; new runs go to the older one.",
  local: "The worker restarts on the older version: a run in flight on it now ends, as with a deploy.",
};

function stateClass(state) {
  if (state === "InService") return "sagemaker-state-ok";
  if (state === "Failed" || state === "OutOfService") return "sagemaker-state-bad";
  return "sagemaker-state-wait";
}

function instancesText(e) {
  if (e.kind === "local" && e.owner) return `shared by ${e.owner}: a worker on their machine`;
  if (e.kind === "local") return e.shared ? "a worker on this machine, shared with the team" : "a worker on this machine";
  const type = e.instance_type ? ` × ${e.instance_type}` : "";
  const count = Number.isFinite(e.instances) ? e.instances : "?";
  const pools = poolsText(e); // capacity fallback: which types serve (web/js/instance_pools.js)
  return pools ? `${count} instance${count === 1 ? "" : "s"} ${pools}` : `${count} instance${count === 1 ? "" : "s"}${type}`;
}

// One cold start step: "models 2.1 GB in 31 s", or "models..." while it runs.
function phaseText(p) {
  const what = p.label || p.name;
  if (p.state === "running") return `${what}...`;
  const size = Number.isFinite(p.bytes) ? `${formatBytes(p.bytes)} in ` : "";
  const failed = p.state === "failed" ? " (failed)" : "";
  return `${what} ${size}${formatDuration(p.seconds ?? 0)}${failed}`;
}

// What it is doing now, in the user's words: the worker's activity, else the step running, else the state.
function doingText(e) {
  if (!STARTING.has(e.state)) return "";
  if (e.activity) return e.activity;
  const running = (e.phases ?? []).find((p) => p.state === "running");
  if (running) return `${running.label || running.name}...`;
  return { Creating: "starting the worker...", Updating: "replacing the worker...", Deleting: "stopping..." }[e.state] ?? `${e.state}...`;
}

class EndpointsSection extends Section {
  constructor() {
    super({
      testid: "sagemaker-endpoints",
      title: "Endpoints",
      refresh: { title: "Refresh the list", testid: "sagemaker-endpoints-refresh" },
    });
    this.endpoints = new Map(); // name -> view
    this.unavailable = [];
    this.logs = new Map(); // name -> text of its open log
    this.timer = undefined;
    this.clock = new StepClock(); // how long each endpoint's start-up step has run
    this.list = el("div", { class: "sagemaker-endpoint-list", "data-testid": "sagemaker-endpoints-list" });
    this.root.append(this.slot, this.list);
  }

  read() {
    return call("GET", "/endpoints");
  }

  show({ endpoints, unavailable }) {
    this.endpoints = new Map(endpoints.map((e) => [e.name, e]));
    this.unavailable = unavailable ?? [];
    this.draw();
  }

  // A state change event: its view, or the list again when one appeared or went.
  changed(view) {
    if (!this.endpoints.has(view.name) || view.state === "Deleted") {
      this.refresh();
      return;
    }
    this.endpoints.set(view.name, { ...this.endpoints.get(view.name), ...view });
    this.draw();
  }

  // While one starts (or a log is open on one that starts), read it every second: its steps and log move.
  schedule() {
    clearTimeout(this.timer);
    const busy = [...this.endpoints.values()].filter((e) => STARTING.has(e.state));
    if (!busy.length || !this.root.isConnected) return;
    // One that is going is followed in the list (refresh): its own GET, or its log's, ends in a 404 once it has gone.
    const going = busy.some((e) => e.state === "Deleting");
    this.timer = setTimeout(async () => {
      await Promise.all(
        busy
          .filter((e) => e.state !== "Deleting")
          .map(async (e) => {
            try {
              const view = await call("GET", endpointPath(e.name));
              if (this.endpoints.has(e.name)) this.endpoints.set(e.name, view);
            } catch (err) {
              if (err.status === 404) this.endpoints.delete(e.name);
            }
            if (this.logs.has(e.name)) await this.readLog(e.name, false);
          }),
      );
      if (going) await this.refresh();
      else this.draw();
    }, POLL_MS);
  }

  draw() {
    const rows = [...this.endpoints.values()].sort((a, b) => a.name.localeCompare(b.name)).map((e) => this.row(e));
    const problems = (this.unavailable ?? []).map((p) =>
      el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-endpoints-unavailable" }, `${p.kind}: ${p.reason}`),
    );
    this.list.replaceChildren(
      ...(rows.length || problems.length
        ? [...rows, ...problems]
        : [
            el(
              "div",
              { class: "sagemaker-muted", "data-testid": "sagemaker-endpoints-empty" },
              "No endpoints: publish an environment with an endpoint.",
            ),
          ]),
    );
    this.schedule();
  }

  row(e) {
    const doing = this.clock.label(e.name, doingText(e));
    const idle = idleText(e);
    const phases = (e.phases ?? []).map(phaseText).join(" · ");
    const busy = comfyuisText(e, knownRun);
    const log = this.logs.get(e.name);
    const actions = this.artist
      ? []
      : [
          e.state === "InService" || (e.owner && e.state === "Gone")
            ? el(
                "button",
                {
                  class: "sagemaker-button",
                  title: "Stop its instances; the environment stays and Start brings it back",
                  "data-testid": "sagemaker-endpoint-stop",
                  onclick: (ev) => this.confirmStop(e, ev.currentTarget),
                },
                "Stop",
              )
            : null,
          e.state === "Stopped"
            ? el(
                "button",
                {
                  class: "sagemaker-button",
                  title: "Start it again, serving its environment",
                  "data-testid": "sagemaker-endpoint-start",
                  onclick: (ev) => this.act(e, "start", ev.currentTarget),
                },
                "Start",
              )
            : null,
          e.version > 1 && !STARTING.has(e.state) && e.state !== "Stopping"
            ? el(
                "button",
                {
                  class: "sagemaker-button",
                  title: "Serve the version before this one again (what was kept of it is reused: nothing is uploaded)",
                  "data-testid": "sagemaker-endpoint-rollback",
                  onclick: () => this.confirmRollback(e),
                },
                "Rollback",
              )
            : null,
          e.kind === "local" && !e.owner && !STARTING.has(e.state) && e.state !== "Stopping" ? this.shareSwitch(e) : null,
        ];
    return el(
      "div",
      { class: "sagemaker-endpoint", "data-testid": "sagemaker-endpoint-row", "data-endpoint": e.name, "data-state": e.state },
      [
        el("div", { class: "sagemaker-endpoint-line" }, [
          el(
            "span",
            { class: "sagemaker-endpoint-name", title: e.endpoint_name ?? e.name, "data-testid": "sagemaker-endpoint-name" },
            e.name,
          ),
          el("span", { class: `sagemaker-target-state ${stateClass(e.state)}`, "data-testid": "sagemaker-endpoint-state" }, e.state),
          el(
            "span",
            { class: "sagemaker-muted", title: "the environment version it serves", "data-testid": "sagemaker-endpoint-version" },
            e.version ? `v${e.version}` : "",
          ),
        ]),
        el("div", { class: "sagemaker-endpoint-facts sagemaker-muted" }, [
          el("span", { "data-testid": "sagemaker-endpoint-instances" }, instancesText(e)),
          e.updated_at
            ? el("span", { title: e.updated_at, "data-testid": "sagemaker-endpoint-updated" }, `changed ${timeAgo(e.updated_at)}`)
            : null,
          idle
            ? el(
                "span",
                {
                  title: e.stopped_at ?? "the endpoint's idle_stop_minutes: stopped when it runs nothing that long",
                  "data-testid": "sagemaker-endpoint-idle",
                },
                idle,
              )
            : null,
        ]),
        doing ? el("div", { class: "sagemaker-endpoint-doing", "data-testid": "sagemaker-endpoint-activity" }, doing) : null,
        busy
          ? el("div", { class: "sagemaker-endpoint-busy", title: comfyuisTitle(e), "data-testid": "sagemaker-endpoint-comfyuis" }, busy)
          : null,
        phases
          ? el(
              "div",
              {
                class: "sagemaker-endpoint-phases sagemaker-muted",
                title: "the last start, step by step",
                "data-testid": "sagemaker-endpoint-phases",
              },
              phases,
            )
          : null,
        e.reason ? el("div", { class: "sagemaker-error", "data-testid": "sagemaker-endpoint-reason" }, e.reason) : null,
        e.warning ? el("div", { class: "sagemaker-warning", "data-testid": "sagemaker-endpoint-warning" }, e.warning) : null,
        el("div", { class: "sagemaker-endpoint-actions" }, [
          el(
            "button",
            {
              class: "sagemaker-button",
              "aria-expanded": String(log !== undefined),
              "data-testid": "sagemaker-endpoint-log-toggle",
              onclick: () => this.toggleLog(e.name),
            },
            log === undefined ? "Log" : "Hide log",
          ),
          ...actions,
        ]),
        log === undefined
          ? null
          : el("pre", { class: "sagemaker-endpoint-log", "data-testid": "sagemaker-endpoint-log" }, log || "(nothing logged yet)"),
      ],
    );
  }

  async toggleLog(name) {
    if (this.logs.has(name)) {
      this.logs.delete(name);
      this.draw();
      return;
    }
    this.logs.set(name, "Loading...");
    this.draw();
    await this.readLog(name, true);
  }

  async readLog(name, draw) {
    try {
      const { logs } = await call("GET", `${endpointPath(name)}/logs?tail=${LOG_TAIL}`);
      if (this.logs.has(name)) this.logs.set(name, logs ?? "");
    } catch (err) {
      if (this.logs.has(name)) this.logs.set(name, `Could not read the log: ${err.message}`);
    }
    if (draw) this.draw();
  }

  // Asks first, naming the version it goes back to: the newest readable one before the version it serves.
  async confirmRollback(e) {
    let target;
    try {
      const { versions } = await call("GET", `${environmentPath(e.name)}/versions`);
      target = versions.find((v) => v.version < e.version && !v.problem)?.version;
    } catch (err) {
      toastError(`Could not read the versions of ${e.name}`, err);
      return;
    }
    if (!target) {
      toast("info", "Nothing to roll back to", `${e.name} serves v${e.version}, its oldest version`);
      return;
    }
    openDialog(this.slot, {
      title: `Roll back ${e.name} to version ${target}?`,
      body: el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-endpoint-rollback-note" }, [
        `It serves v${e.version} now; v${target} comes back from what was kept, nothing is uploaded. `,
        IN_FLIGHT[e.kind] ?? "",
      ]),
      okLabel: `Roll back to v${target}`,
      testid: "sagemaker-endpoint-rollback-dialog",
      onOk: async () => {
        const view = await call("POST", `${environmentPath(e.name)}/rollback`, { to: target });
        if (view?.name) this.endpoints.set(view.name, { ...this.endpoints.get(view.name), ...view });
        toast("success", "Rolling back", `${e.name} to v${target}`);
        this.draw();
      },
    });
  }

  // Stop asks first, with the runs in flight on it (everyone's on the store) and whose.
  async confirmStop(e, button) {
    button.disabled = true;
    let inFlight = [];
    try {
      const pages = await Promise.all(["running", "queued"].map((state) => call("GET", `/executions?owner=all&state=${state}&limit=100`)));
      inFlight = pages.flatMap((p) => p.executions ?? []).filter((r) => r.environment === e.name);
    } catch (err) {
      toastError("Could not list the runs in flight", err); // still asked: Stop stays possible
    }
    button.disabled = false;
    openDialog(this.slot, {
      title: `Stop endpoint ${e.name}?`,
      body: el("div", { class: "sagemaker-muted", "data-testid": "sagemaker-endpoint-stop-note" }, stopQuestion(e.name, inFlight, isMine)),
      okLabel: "Stop",
      danger: true,
      testid: "sagemaker-endpoint-stop-dialog",
      onOk: () => this.act(e, "stop", button),
    });
  }

  // This ComfyUI's own local endpoint: Share starts its worker again for the team (every ComfyUI on the store
  // lists it and runs on it, with a token), unticked it is this ComfyUI's own again. Another's shows its owner.
  shareSwitch(e) {
    const box = el("input", {
      type: "checkbox",
      checked: Boolean(e.shared),
      "data-testid": "sagemaker-endpoint-share",
      onchange: async (ev) => {
        const input = /** @type {HTMLInputElement} */ (ev.currentTarget);
        input.disabled = true;
        try {
          const view = await call("POST", "/endpoints", { environment: e.name, shared: input.checked });
          if (view?.name) this.endpoints.set(view.name, view); // a new worker: nothing of the old view holds
          toast("success", input.checked ? "Endpoint shared with the team" : "Endpoint no longer shared", e.name);
          this.draw();
        } catch (err) {
          toastError(`Could not change the sharing of ${e.name}`, err);
          this.refresh();
        }
      },
    });
    return el("label", { class: "sagemaker-muted", title: "Every ComfyUI on this store may run on it (its worker restarts)" }, [
      box,
      " Share",
    ]);
  }

  async act(e, action, button) {
    button.disabled = true;
    try {
      const view = await call("POST", `${endpointPath(e.name)}/${action}`);
      if (view?.name) this.endpoints.set(view.name, { ...this.endpoints.get(view.name), ...view });
      toast("success", action === "stop" ? "Endpoint stopped" : "Endpoint starting", e.name);
      this.draw();
    } catch (err) {
      toastError(`Could not ${action} ${e.name}`, err);
      button.disabled = false;
      this.refresh(); // its state changed meanwhile: show how
    }
  }
}

// The section's root element; its list loads at once.
export function mountEndpoints() {
  return sections.add(new EndpointsSection()).start();
}
