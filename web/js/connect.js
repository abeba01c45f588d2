// @ts-check
// The sidebar's "Connect" section: the configuration this ComfyUI runs (never a credential; the token only
// as set or not), what is wrong with config.json, and for a designer a form to change it. Check tries each
// prerequisite of the configuration the form would make (nothing written); Apply writes config.json and the
// server runs with it at once (no restart). The store may then be another one: listeners of
// onConfigChanged (sagemaker.js) draw the sidebar again (all of it when the store or the role changed), here and
// in every page of this ComfyUI.
import { call, getToken, setToken, toast } from "./api.js";
import { doctorButton } from "./connect_doctor.js";
import { connectForm } from "./connect_form.js";
import { facts, resultRow, summaryOf } from "./connect_view.js";
import { openDialog } from "./dialog.js";
import { el } from "./dom.js";
import { onShared } from "./live.js";
import { isArtist } from "./role.js";
import { LiveSet, Section } from "./section.js";

const REPLACE_HINT = "replace it with these settings"; // the server's words for a file it cannot read

/** @type {LiveSet<ConnectSection>} */
const sections = new LiveSet();
const listeners = new Set();
let expanded = null; // null: as the configuration suggests; then the user's choice, kept across renders
let seen = null; // `applied` (the server's count of configurations applied) this page has drawn

// fn() runs once per configuration applied (by this page, another page, or another tab).
export function onConfigChanged(fn) {
  listeners.add(fn);
}

function configChanged() {
  for (const fn of [...listeners]) fn();
}

// The server applied a configuration: unless this page applied it (and has drawn it already), draw again.
onShared("config", async () => {
  try {
    const { applied } = await call("GET", "/connect");
    if (applied === seen) return;
    seen = applied;
  } catch {
    // not readable now (e.g. a token is needed from now on): the sidebar says so when drawn
  }
  configChanged();
});

// Read the configuration again in every Connect section of this page (a configuration applied that left the rest
// of the sidebar as it was).
export function refreshConnect() {
  for (const section of sections.all()) section.refresh();
}

// Expand the section and bring it into view (e.g. from the New Environment dialog); false if not shown.
export function openConnect() {
  expanded = true;
  const section = sections.all()[0];
  if (!section) {
    toast("info", "Connect", "Open the SageMaker tab: Connect is its first section.");
    return false;
  }
  section.setExpanded(true);
  section.root.scrollIntoView({ block: "start" });
  section.toggle.focus({ preventScroll: true });
  return true;
}

/** "Open Connect" beside a refusal a setting there would lift: `before` (e.g. closing the dialog) runs first.
 * @param {() => void} before */
export function openConnectButton(before) {
  return el(
    "button",
    {
      class: "sagemaker-button",
      "data-testid": "sagemaker-open-connect",
      onclick: () => {
        before();
        openConnect();
      },
    },
    "Open Connect",
  );
}

class ConnectSection extends Section {
  // A designer's form and what goes with it (formArea), and the file's Apply / Reload error (problems).
  /** @type {ReturnType<typeof connectForm>} */ form;
  /** @type {HTMLDivElement} */ results;
  /** @type {HTMLDivElement} */ error;
  /** @type {HTMLButtonElement} */ checkButton;
  /** @type {HTMLButtonElement} */ doctorButton;
  /** @type {HTMLButtonElement} */ applyButton;
  /** @type {HTMLButtonElement} */ replaceButton;
  /** @type {HTMLDivElement} */ replaceOffer;
  /** @type {HTMLDivElement} */ applyFileError;
  busy = false;
  broken = false;
  open = false;

  constructor() {
    super({
      testid: "sagemaker-connect",
      className: "sagemaker-connect",
      refresh: { title: "Read the configuration again", testid: "sagemaker-connect-refresh" },
    });
    /** GET /connect's answer. @type {any} */
    this.state = null;
    this.chevron = el("i", { class: "pi pi-chevron-right", "aria-hidden": "true" });
    this.toggle = el(
      "button",
      {
        class: "sagemaker-section-toggle",
        "aria-expanded": "false",
        "aria-controls": "sagemaker-connect-body",
        "data-testid": "sagemaker-connect-toggle",
        onclick: () => this.userToggle(),
      },
      [this.chevron, el("span", { class: "sagemaker-section-title" }, "Connect")],
    );
    this.badge = el("span", { class: "sagemaker-badge", "data-testid": "sagemaker-connect-badge", hidden: true });
    this.body = el(
      "div",
      { class: "sagemaker-connect-body", id: "sagemaker-connect-body", "data-testid": "sagemaker-connect-body" },
      el("div", { class: "sagemaker-muted" }, "Loading..."),
    );
    this.beside(this.toggle, this.badge);
    this.root.append(this.body);
    this.setExpanded(Boolean(expanded));
  }

  userToggle() {
    expanded = !this.open;
    this.setExpanded(expanded);
  }

  setExpanded(open) {
    this.open = open;
    this.body.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.chevron.className = `pi ${open ? "pi-chevron-down" : "pi-chevron-right"}`;
    this.root.dataset.expanded = String(open);
  }

  read() {
    return call("GET", "/connect");
  }

  show(state) {
    seen = state.applied;
    this.state = state;
    this.draw();
  }

  failed(err) {
    this.body.replaceChildren(el("div", { class: "sagemaker-error", "data-testid": "sagemaker-connect-load-error" }, err.message));
  }

  // The role that runs: while no configuration could be read, the fail-safe one (an artist's).
  get artist() {
    const role = this.state?.role ?? this.state?.effective?.role;
    return role ? role === "artist" : isArtist();
  }

  draw() {
    const s = this.state;
    const cfg = s.effective;
    const problem = Boolean(!cfg || s.startup_error || s.file?.error);
    const pending = Boolean(cfg && !problem && s.file?.differs);
    // Collapsed unless something needs the user, or this ComfyUI still runs on the folder store.
    if (expanded === null) this.setExpanded(problem || pending || cfg?.store === "folder");
    this.badge.hidden = false;
    this.badge.textContent = problem ? "needs attention" : pending ? "file changed" : cfg.store === "s3" ? "S3" : "folder";
    this.badge.classList.toggle("sagemaker-connect-attention", problem || pending);
    this.broken = Boolean(s.file?.error) || !cfg;
    const fromEnv = new Set(s.from_environment ?? []);
    this.body.replaceChildren(
      ...[
        ...this.problems(s),
        cfg ? facts(cfg, fromEnv) : null,
        this.slot,
        this.artist
          ? el(
              "div",
              { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-connect-read-only" },
              "An artist's ComfyUI shows its configuration; config.json (read when ComfyUI starts) changes it.",
            )
          : this.formArea(s, fromEnv),
      ].filter((node) => node !== null),
    );
  }

  problems(s) {
    const out = [];
    const designer = !this.artist;
    if (!s.effective) {
      this.applyFileError = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-connect-apply-file-error", hidden: true });
      out.push(
        el(
          "div",
          { class: "sagemaker-error", "data-testid": "sagemaker-connect-startup-error" },
          `config.json cannot be read: ${s.startup_error ?? s.file?.error ?? "unknown error"}`,
        ),
        el(
          "div",
          { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-connect-fail-safe" },
          "Until it can, this ComfyUI has an artist's rights and uses no store. Fix the file, then reload it.",
        ),
        el(
          "button",
          { class: "sagemaker-button", "data-testid": "sagemaker-connect-reload", onclick: (event) => this.applyFile(event.currentTarget) },
          "Reload the file",
        ),
        this.applyFileError,
      );
    } else if (s.file?.error) {
      out.push(
        el("div", { class: "sagemaker-error", "data-testid": "sagemaker-connect-file-error" }, s.file.error),
        el(
          "div",
          { class: "sagemaker-muted sagemaker-note", "data-testid": "sagemaker-connect-last-good" },
          "ComfyUI keeps running with the last good configuration.",
        ),
      );
    } else if (s.file?.differs) {
      this.applyFileError = el("div", { class: "sagemaker-error", "data-testid": "sagemaker-connect-apply-file-error", hidden: true });
      out.push(
        el("div", { class: "sagemaker-connect-differs", "data-testid": "sagemaker-connect-differs" }, [
          el(
            "div",
            {},
            designer
              ? "config.json is not what runs (aws setup wrote it, or it was edited): apply it to run with it. " +
                  "Applying a change below applies the rest of the file too."
              : "config.json is not what runs (it was edited): apply it to run with it.",
          ),
          el(
            "button",
            {
              class: "sagemaker-button",
              "data-testid": "sagemaker-connect-apply-file",
              onclick: (event) => this.applyFile(event.currentTarget),
            },
            "Apply the file",
          ),
          this.applyFileError,
        ]),
      );
    }
    if (designer && this.broken && s.effective) {
      out.push(el("div", { class: "sagemaker-muted sagemaker-note" }, "Fix the file by hand, or replace it with the settings below."));
    }
    return out;
  }

  formArea(s, fromEnv) {
    this.form = connectForm(s.effective, fromEnv, s.editable ?? [], () => this.formChanged());
    this.results = el("div", {
      class: "sagemaker-connect-results",
      role: "list",
      "aria-label": "Check results",
      "data-testid": "sagemaker-connect-results",
    });
    this.error = el("div", { class: "sagemaker-error", role: "alert", "data-testid": "sagemaker-connect-error", hidden: true });
    this.checkButton = el(
      "button",
      {
        class: "sagemaker-button",
        title: "Try each prerequisite of these settings; nothing is written",
        "data-testid": "sagemaker-connect-check",
        onclick: () => this.check(),
      },
      "Check",
    );
    this.doctorButton = doctorButton(this);
    this.applyButton = el(
      "button",
      {
        class: "sagemaker-button sagemaker-primary",
        title: "Write config.json and run with it now",
        "data-testid": "sagemaker-connect-apply",
        onclick: () => this.apply(),
      },
      "Apply",
    );
    this.replaceButton = el(
      "button",
      { class: "sagemaker-button sagemaker-danger", "data-testid": "sagemaker-connect-replace", onclick: () => this.apply(true) },
      "Replace config.json with these settings",
    );
    this.replaceOffer = el(
      "div",
      { class: "sagemaker-connect-replace", "data-testid": "sagemaker-connect-replace-offer", hidden: !this.broken },
      [
        el(
          "div",
          { class: "sagemaker-muted sagemaker-note" },
          "Writes config.json from this form; the store folder and the token are kept from the configuration that runs.",
        ),
        this.replaceButton,
      ],
    );
    this.formChanged();
    return el("div", { class: "sagemaker-connect-edit" }, [
      this.form.root,
      el("div", { class: "sagemaker-dialog-buttons" }, [this.checkButton, this.doctorButton, this.applyButton]),
      this.error,
      this.replaceOffer,
      this.results,
    ]);
  }

  formChanged() {
    this.results.replaceChildren(); // they were for other values
    this.showError("");
    this.applyButton.disabled = this.busy || Object.keys(this.form.changes()).length === 0;
    this.applyButton.title = this.applyButton.disabled && !this.busy ? "Nothing changed yet" : "Write config.json and run with it now";
  }

  showError(message) {
    this.error.hidden = !message;
    this.error.textContent = message || "";
  }

  /** While a Check or an Apply runs: no second one; the pressed button says what happens.
   * @param {boolean} busy @param {HTMLButtonElement | null} [button] @param {string} [text] */
  setBusy(busy, button = null, text = "") {
    this.busy = busy;
    if (this.form?.root.isConnected) {
      // an artist's page (or one running fail-safe) has no form
      for (const b of [this.checkButton, this.doctorButton, this.replaceButton]) b.disabled = busy;
      this.applyButton.disabled = busy || Object.keys(this.form.changes()).length === 0;
    }
    this.body.setAttribute("aria-busy", String(busy));
    if (button) {
      button.dataset.label ??= button.textContent;
      button.textContent = busy ? text : button.dataset.label;
    }
  }

  // What the server should consider: the form's changes to the file, or (replace) the form alone.
  request(replace) {
    return replace ? { changes: this.form.values(), replace: true } : { changes: this.form.changes() };
  }

  async check() {
    this.showError("");
    this.setBusy(true, this.checkButton, "Checking...");
    this.results.dataset.busy = "true";
    this.results.replaceChildren(
      el(
        "div",
        { class: "sagemaker-muted", "data-testid": "sagemaker-connect-checking" },
        "Checking: the S3 and AWS checks can take a few seconds...",
      ),
    );
    try {
      const { results } = await call("POST", "/connect/check", this.request(this.broken)); // a broken file: what replacing it makes
      this.results.replaceChildren(
        ...results.map(resultRow),
        el("div", { class: "sagemaker-connect-results-summary", "data-testid": "sagemaker-connect-results-summary" }, summaryOf(results)),
      );
    } catch (err) {
      this.results.replaceChildren();
      this.showError(err.message);
    } finally {
      delete this.results.dataset.busy;
      this.setBusy(false, this.checkButton);
    }
  }

  apply(replace = false) {
    const body = this.request(replace);
    const button = replace ? this.replaceButton : this.applyButton;
    const current = this.state.effective?.role ?? "designer";
    if (body.changes.role === "artist" && current !== "artist") {
      openDialog(this.slot, {
        title: "Make this ComfyUI an artist's?",
        body: el(
          "div",
          { class: "sagemaker-muted", "data-testid": "sagemaker-connect-artist-warning" },
          "This ComfyUI will no longer be able to change the configuration: it then reads and runs templates only, and only " +
            "config.json (read when ComfyUI starts) makes it a designer's again.",
        ),
        okLabel: "Make it an artist's",
        danger: true,
        testid: "sagemaker-connect-artist-dialog",
        onOk: () => this.send(body, button),
      });
      return;
    }
    this.send(body, button).catch((err) => this.showError(err.message));
  }

  // config.json as it is now (POST /config/reload): the file is the authority, for an artist's page too.
  applyFile(button) {
    this.applyFileError.hidden = true;
    this.send(null, button).catch((err) => {
      this.applyFileError.hidden = false;
      this.applyFileError.textContent = err.message;
    });
  }

  // PUT /config with `body` (null: reload the file); on success the whole sidebar draws again (listeners).
  // Rejects with the server's refusal.
  async send(body, button) {
    if (this.error?.isConnected) this.showError("");
    this.setBusy(true, button, "Applying...");
    const typed = body && "token" in body.changes ? body.changes.token || "" : null;
    const previous = getToken();
    try {
      const request = body ? call("PUT", "/config", body) : call("POST", "/config/reload");
      // A new token is kept as soon as the PUT has gone (with the one it replaces): the change notice the PUT
      // causes reaches this page before its answer, and the refreshes it starts would go without it (403s).
      // One taken away is dropped only once the server has dropped it.
      if (typed) setToken(typed);
      const answer = await request.catch((err) => {
        if (typed) setToken(previous);
        throw err;
      });
      seen = answer.applied;
      if (typed === "") setToken("");
      expanded = this.open;
      const cfg = answer.effective;
      toast(
        "success",
        "Configuration applied",
        cfg.store === "s3" ? `store s3://${cfg.s3_bucket}/${cfg.s3_prefix || ""}` : "folder store on this machine",
      );
      configChanged();
    } catch (err) {
      if (err.code === "config_invalid" && err.message.includes(REPLACE_HINT) && this.replaceOffer) this.replaceOffer.hidden = false;
      throw err;
    } finally {
      this.setBusy(false, button);
    }
  }
}

// The section's root element; the configuration loads at once.
export function mountConnect() {
  return sections.add(new ConnectSection()).start();
}
