// @ts-check
// A tiny element builder: el("div", {class: "x", onclick: f}, [children or text]).

/** @typedef {Node | string | number | null | undefined | false} Child */
/** Attributes; an `on...` function is a listener, `value` the property; null, undefined and false are left out.
 * @typedef {Record<string, unknown>} Attrs */

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {Child | Child[]} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
    else if (key === "value") /** @type {HTMLInputElement} */ (node).value = String(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of [children].flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A small icon-only button (PrimeIcons class), labelled for screen readers and tests.
 * @param {string} icon @param {string} title @param {string} testid @param {(event: MouseEvent) => unknown} onclick */
export function iconButton(icon, title, testid, onclick) {
  return el("button", { class: "sagemaker-icon-button", title, "aria-label": title, "data-testid": testid, onclick }, [
    el("i", { class: icon }),
  ]);
}

/** The element `selector` finds in `root`, which the caller knows is there. @param {ParentNode} root @param {string} selector */
export function find(root, selector) {
  return /** @type {HTMLElement} */ (root.querySelector(selector));
}

/** Every element `selector` finds in `root`. @param {ParentNode} root @param {string} selector @returns {HTMLElement[]} */
export function findAll(root, selector) {
  return [...root.querySelectorAll(selector)].filter((node) => node instanceof HTMLElement);
}
