// The frontend's scripts/app.js as an extension sees it.
import type { ComfyApp } from "@comfyorg/comfyui-frontend-types";

export declare const app: ComfyApp;
