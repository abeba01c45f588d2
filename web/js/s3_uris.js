// @ts-check
// Save Image (S3) answers the URIs it wrote in its `ui.text`. ComfyUI shows no node's text by itself,
// so that node gets a read-only box listing them after each run (never saved with the workflow, never
// sent as an input).
const NODE = "SageMakerSaveImageS3";
const WIDGET = "s3_uris";

export function showS3Uris(nodeType, nodeData) {
  if (nodeData?.name !== NODE) return;
  const onExecuted = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (output, ...rest) {
    onExecuted?.call(this, output, ...rest);
    const uris = Array.isArray(output?.text) ? output.text : [];
    let widget = this.widgets?.find((w) => w.name === WIDGET);
    if (!widget) {
      const box = document.createElement("textarea");
      box.readOnly = true;
      box.className = "comfy-multiline-input sagemaker-s3-uris";
      box.dataset.testid = "sagemaker-s3-uris";
      box.title = "Where the images were written";
      widget = this.addDOMWidget(WIDGET, "text", box, {
        serialize: false,
        getValue: () => box.value,
        setValue: (value) => {
          box.value = value;
        },
      });
      widget.serialize = false;
    }
    widget.value = uris.join("\n");
  };
}
