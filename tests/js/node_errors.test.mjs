// ComfyUI's node_errors mapped to the sidebar form's parameters (web/js/node_errors.js): on this ComfyUI the
// parameter node itself is refused (its `default`); on an endpoint the value is written into the inputs it feeds
// (core/parameters.py `lower`), so ImageBlur's blur_radius is the radius parameter's.
import assert from "node:assert/strict";
import { test } from "node:test";
import { nodeReasons, parameterOf, parameterTargets, refusalBody } from "../../web/js/node_errors.js";

const props = {
  radius: { "x-node": { id: "1", input: "default", class_type: "SageMakerParamInt" } },
  ckpt: { "x-node": { id: "7", input: "default", class_type: "SageMakerParamCheckpoint" } },
};
const prompt = {
  1: { class_type: "SageMakerParamInt", inputs: { name: "radius", default: 5 } },
  3: { class_type: "ImageBlur", inputs: { image: ["2", 0], blur_radius: ["1", 0], sigma: 1.0 } },
  7: { class_type: "SageMakerParamCheckpoint", inputs: { name: "ckpt", default: "a.safetensors" } },
  8: { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: ["7", 0] } },
};
const error = (input_name, message, details) => ({ type: "value_bigger_than_max", message, details, extra_info: { input_name } });

test("an endpoint's refusal of a lowered value names the parameter wired to that input", () => {
  const body = {
    error: { type: "prompt_outputs_failed_validation", message: "Prompt outputs failed validation" },
    node_errors: { 3: { errors: [error("blur_radius", "Value 40 bigger than max of 31", "blur_radius")], class_type: "ImageBlur" } },
  };
  assert.equal(refusalBody({ status: 400, body }), body);
  const targets = parameterTargets(props, prompt);
  const reasons = nodeReasons(body.node_errors);
  assert.deepEqual([...reasons], [["3/blur_radius", "Value 40 bigger than max of 31: blur_radius"]]);
  assert.equal(parameterOf(targets, "3/blur_radius"), "radius");
  assert.equal(parameterOf(targets, "3/sigma"), undefined); // ImageBlur's own widget: no parameter's
});

test("this ComfyUI's refusal of the parameter node is its field's, by its input or the node alone", () => {
  const targets = parameterTargets(props, prompt);
  assert.equal(parameterOf(targets, "7/default"), "ckpt");
  assert.equal(parameterOf(targets, "7/"), "ckpt");
  assert.equal(parameterOf(targets, "8/ckpt_name"), "ckpt");
  const reasons = nodeReasons({ 7: { errors: [error("default", "Value not in list", "a"), error("default", "again", "")] } });
  assert.equal(reasons.get("7/default"), "Value not in list: a; again");
});

test("answers without node_errors are no refusal of nodes", () => {
  assert.equal(refusalBody({ status: 400, body: { error: { code: "bad_request" } } }), null);
  assert.equal(refusalBody(new Error("network")), null);
});
