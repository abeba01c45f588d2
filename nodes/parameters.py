"""Template parameter nodes and the template output node.

Run locally they are ordinary nodes: a parameter outputs its default (its
value), an image parameter loads its file like LoadImage, the output node saves
like SaveImage. Publishing reads them from the API-format prompt
(core/parameters.py holds the class names and the schema rules); a run through
`POST /sagemaker/templates/{name}/executions` replaces them by their values.

ComfyUI modules (folder_paths, nodes) are imported inside the methods, so the
package imports outside ComfyUI (tests, the CLI).
"""

from __future__ import annotations

from ..core.parameters import IMAGE_NODE, MODEL_NODES, OUTPUT_NODE, SEED_MAX

CATEGORY = "SageMaker/parameters"
INT_LIMIT = 0x7FFFFFFFFFFFFFFF


class AnyType(str):
    """A type that matches every input: a choice or model parameter feeds a combo input, whose
    type is its list of options. ComfyUI's validation honours a `__ne__` that says "equal"."""

    def __ne__(self, other: object) -> bool:
        return False


ANY = AnyType("*")


def common(name: str, description: str) -> dict:
    return {
        "name": ("STRING", {"default": name, "tooltip": "The parameter's name in the API and the form: a letter "
                                                        "or _, then letters, digits or _. Unique in the template."}),
        "description": ("STRING", {"default": description, "multiline": True,
                                   "tooltip": "Shown to artists in the form and to programs in the schema."}),
    }


REQUIRED_OPTION = ("BOOLEAN", {"default": False, "tooltip": "API callers must send a value (the default is only "
                                                            "used when the workflow runs here)."})


class ParameterNode:
    CATEGORY = CATEGORY
    FUNCTION = "value"
    SEARCH_ALIASES = ["template parameter", "sagemaker parameter"]

    def value(self, **kw):
        return (kw["default"],)


class SageMakerParamText(ParameterNode):
    DESCRIPTION = "A text parameter of a SageMaker template (e.g. a prompt). Outputs its value."
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **common("prompt", ""),
            "default": ("STRING", {"default": "", "multiline": True, "tooltip": "The text (the default for API "
                                                                                "callers)."}),
            "max_length": ("INT", {"default": 0, "min": 0, "max": 1_000_000,
                                   "tooltip": "Longest text accepted from API callers; 0 = no limit."}),
            "required": REQUIRED_OPTION,
        }}


class SageMakerParamInt(ParameterNode):
    DESCRIPTION = "A whole-number parameter of a SageMaker template (e.g. width, steps). Outputs its value."
    RETURN_TYPES = ("INT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **common("steps", ""),
            "default": ("INT", {"default": 0, "min": -INT_LIMIT, "max": INT_LIMIT, "tooltip": "The value."}),
            "min": ("INT", {"default": 0, "min": -INT_LIMIT, "max": INT_LIMIT, "tooltip": "Smallest value accepted."}),
            "max": ("INT", {"default": 100, "min": -INT_LIMIT, "max": INT_LIMIT, "tooltip": "Largest value accepted."}),
            "step": ("INT", {"default": 1, "min": 1, "max": INT_LIMIT, "tooltip": "Increment of the form's slider."}),
            "required": REQUIRED_OPTION,
        }}


class SageMakerParamFloat(ParameterNode):
    DESCRIPTION = "A number parameter of a SageMaker template (e.g. cfg, denoise). Outputs its value."
    RETURN_TYPES = ("FLOAT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **common("cfg", ""),
            "default": ("FLOAT", {"default": 0.0, "min": -1e15, "max": 1e15, "step": 0.01, "tooltip": "The value."}),
            "min": ("FLOAT", {"default": 0.0, "min": -1e15, "max": 1e15, "step": 0.01,
                              "tooltip": "Smallest value accepted."}),
            "max": ("FLOAT", {"default": 1.0, "min": -1e15, "max": 1e15, "step": 0.01,
                              "tooltip": "Largest value accepted."}),
            "step": ("FLOAT", {"default": 0.01, "min": 1e-6, "max": 1e15, "step": 0.001,
                               "tooltip": "Increment of the form's slider."}),
            "required": REQUIRED_OPTION,
        }}


class SageMakerParamSeed(ParameterNode):
    DESCRIPTION = "A seed parameter of a SageMaker template (0 to 2^64-1). Outputs its value."
    RETURN_TYPES = ("INT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **common("seed", "Random seed"),
            "default": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                                "tooltip": "The seed."}),
            "required": REQUIRED_OPTION,
        }}


class SageMakerParamBoolean(ParameterNode):
    DESCRIPTION = "A true/false parameter of a SageMaker template. Outputs its value."
    RETURN_TYPES = ("BOOLEAN",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **common("enabled", ""),
            "default": ("BOOLEAN", {"default": False, "tooltip": "The value."}),
            "required": REQUIRED_OPTION,
        }}


class SageMakerParamChoice(ParameterNode):
    DESCRIPTION = ("A parameter of a SageMaker template limited to listed values (e.g. a sampler name). Outputs "
                   "the chosen value, which can feed a text or a combo input.")
    RETURN_TYPES = (ANY,)
    RETURN_NAMES = ("value",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **common("choice", ""),
            "choices": ("STRING", {"default": "a, b", "multiline": True,
                                   "tooltip": "The allowed values, separated by commas or new lines."}),
            "default": ("STRING", {"default": "a", "tooltip": "The value: one of the choices."}),
            "required": REQUIRED_OPTION,
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, choices, default):
        from ..core.parameters import split_choices

        allowed = split_choices(choices)
        return True if default in allowed else f"{default!r} is not one of the choices ({', '.join(allowed)})"


def _input_images() -> list[str]:
    import os

    import folder_paths

    root = folder_paths.get_input_directory()
    files = [f for f in os.listdir(root) if os.path.isfile(os.path.join(root, f))]
    return sorted(folder_paths.filter_files_content_types(files, ["image"]))


class SageMakerParamImage:
    DESCRIPTION = ("An image parameter of a SageMaker template: a file of ComfyUI's input folder (upload one "
                   "here); API callers send a file name or a base64 image. Loads it like Load Image.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load"
    SEARCH_ALIASES = ["template parameter", "sagemaker parameter"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **common("image", ""),
            "image": (_input_images(), {"image_upload": True, "tooltip": "The image (from ComfyUI's input folder)."}),
            "required": REQUIRED_OPTION,
        }}

    def load(self, image, **kw):
        import nodes  # ComfyUI's

        return nodes.LoadImage().load_image(image)

    @classmethod
    def IS_CHANGED(cls, image, **kw):
        import nodes

        return nodes.LoadImage.IS_CHANGED(image)

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        import nodes

        return nodes.LoadImage.VALIDATE_INPUTS(image)


def model_node(class_name: str, folder: str) -> type:
    """A parameter node whose value is a file of one model folder."""

    def input_types(cls):
        import folder_paths

        return {"required": {
            **common(folder.rstrip("s") if folder.endswith("s") else folder, ""),
            "default": (folder_paths.get_filename_list(folder), {"tooltip": f"The model (in models/{folder})."}),
            "required": REQUIRED_OPTION,
        }}

    return type(class_name, (ParameterNode,), {
        "INPUT_TYPES": classmethod(input_types),
        "RETURN_TYPES": (ANY,),
        "RETURN_NAMES": ("model_name",),
        "DESCRIPTION": f"A model parameter of a SageMaker template: a file of models/{folder}. Outputs its name; "
                       "connect it to a loader's model input.",
    })


class SageMakerTemplateOutput:
    DESCRIPTION = ("Marks images a SageMaker template returns, under `name`. Saves them like Save Image "
                   "(prefix = name), so a local run shows them too.")
    CATEGORY = "SageMaker/parameters"
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images the template returns."}),
                "name": ("STRING", {"default": "images", "tooltip": "The output's name in the API (an identifier, "
                                                                    "unique in the template); also the file prefix."}),
                "description": ("STRING", {"default": "", "multiline": True, "tooltip": "What the output is."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, images, name, description="", prompt=None, extra_pnginfo=None):
        import nodes

        return nodes.SaveImage().save_images(images, name, prompt, extra_pnginfo)


CLASSES: dict[str, type] = {
    "SageMakerParamText": SageMakerParamText,
    "SageMakerParamInt": SageMakerParamInt,
    "SageMakerParamFloat": SageMakerParamFloat,
    "SageMakerParamSeed": SageMakerParamSeed,
    "SageMakerParamBoolean": SageMakerParamBoolean,
    "SageMakerParamChoice": SageMakerParamChoice,
    IMAGE_NODE: SageMakerParamImage,
    **{name: model_node(name, folder) for name, folder in MODEL_NODES.items()},
    OUTPUT_NODE: SageMakerTemplateOutput,
}
MODEL_TITLES = {"checkpoints": "Checkpoint", "loras": "LoRA", "vae": "VAE", "controlnet": "ControlNet",
                "upscale_models": "Upscale Model", "text_encoders": "Text Encoder",
                "diffusion_models": "Diffusion Model"}
DISPLAY_NAMES: dict[str, str] = {
    "SageMakerParamText": "Template Parameter: Text",
    "SageMakerParamInt": "Template Parameter: Integer",
    "SageMakerParamFloat": "Template Parameter: Float",
    "SageMakerParamSeed": "Template Parameter: Seed",
    "SageMakerParamBoolean": "Template Parameter: Boolean",
    "SageMakerParamChoice": "Template Parameter: Choice",
    IMAGE_NODE: "Template Parameter: Image",
    **{name: f"Template Parameter: {MODEL_TITLES[folder]}" for name, folder in MODEL_NODES.items()},
    OUTPUT_NODE: "SageMaker Template Output",
}
