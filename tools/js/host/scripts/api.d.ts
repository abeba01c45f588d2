// The frontend's scripts/api.js as an extension sees it.
import type { ComfyApi } from "@comfyorg/comfyui-frontend-types";

export declare const api: ComfyApi;
