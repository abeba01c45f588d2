// @ts-check
// What every sidebar section shares: the live set of its kind (the tab draws new sections at every open),
// a header (title, refresh, a designer's +), latest-wins refresh (read, then show, unless a later refresh
// started meanwhile), the failure line, and collapsing. A section adds its body and says what it reads.
import { toastError } from "./api.js";
import { collapsible } from "./collapse.js";
import { el, iconButton } from "./dom.js";
import { isArtist } from "./role.js";

// Of overlapping reads only the latest may draw: begin() hands a check that is true until the next begin().
export class Latest {
  #ticket = 0;

  /** @returns {() => boolean} */
  begin() {
    const ticket = ++this.#ticket;
    return () => ticket === this.#ticket;
  }
}

/**
 * The sections of one kind that are shown. The sidebar tab draws new ones at every open: one whose root left the
 * page is dropped at the next look.
 * @template {{root: HTMLElement}} T
 */
export class LiveSet {
  /** @type {Set<T>} */
  #items = new Set();

  /** @param {T} item */
  add(item) {
    this.#items.add(item);
    return item;
  }

  /** @returns {T[]} */
  all() {
    for (const item of this.#items) if (!item.root.isConnected) this.#items.delete(item);
    return [...this.#items];
  }
}

/**
 * @typedef {object} HeaderButton
 * @property {string} title
 * @property {string} testid
 */

/**
 * @typedef {object} SectionOptions
 * @property {string} testid the root's data-testid; the failure line's is `${testid}-error`
 * @property {string} [title] an h4 title, which collapses the section (none: the section brings its own, or none)
 * @property {string} [className] besides sagemaker-section
 * @property {HeaderButton} [refresh] a refresh button: refresh()
 * @property {HeaderButton} [plus] a designer's + button: plus()
 * @property {string} [failure] the toast's summary when the read fails (none: no toast)
 */

export class Section {
  #latest = new Latest();
  #artist = isArtist(); // as when drawn: the sidebar draws again when the role changes
  /** @type {HTMLButtonElement | null} */
  #firstButton;

  /** @param {SectionOptions} options */
  constructor({ testid, title, className, refresh, plus, failure }) {
    this.testid = testid;
    this.failure = failure ?? null;
    /** Where the section's dialogs open. @type {HTMLElement} */
    this.slot = el("div", { class: "sagemaker-dialog-slot" });
    /** What the failure line replaces. @type {HTMLElement} */
    this.list = el("div");
    const refreshButton = refresh ? iconButton("pi pi-refresh", refresh.title, refresh.testid, () => this.refresh()) : null;
    const plusButton = plus && !this.artist ? iconButton("pi pi-plus", plus.title, plus.testid, () => this.plus()) : null;
    this.#firstButton = refreshButton ?? plusButton;
    this.header = el("div", { class: "sagemaker-section-header" }, [
      title ? el("h4", { class: "sagemaker-section-title" }, title) : null,
      refreshButton,
      plusButton,
    ]);
    this.root = el(
      "section",
      { class: `sagemaker-section${className ? ` ${className}` : ""}`, "data-testid": testid },
      title || refreshButton || plusButton ? this.header : null,
    );
    if (title) collapsible(this.root);
  }

  // An artist reads what is shared; publishing, changing and deleting are a designer's.
  get artist() {
    return this.#artist;
  }

  /** Puts `nodes` in the header after its title, before its buttons. @param {...Node} nodes */
  beside(...nodes) {
    if (this.#firstButton) this.#firstButton.before(...nodes);
    else this.header.append(...nodes);
  }

  // Mounting: the first read starts at once; the root goes into the panel.
  start() {
    this.refresh();
    return this.root;
  }

  async refresh() {
    const isLatest = this.#latest.begin();
    try {
      const answer = await this.read();
      if (isLatest()) this.show(answer);
    } catch (err) {
      if (isLatest()) this.failed(err);
    }
  }

  /** The section's GET. @returns {Promise<any>} */
  async read() {
    return null;
  }

  /** Draws what read() answered. @param {any} _answer */
  show(_answer) {}

  /** @param {any} err */
  failed(err) {
    this.list.replaceChildren(el("div", { class: "sagemaker-error", "data-testid": `${this.testid}-error` }, err.message));
    if (this.failure) toastError(this.failure, err);
  }

  // The header's +.
  plus() {}
}
