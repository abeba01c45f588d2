// What the page holds beside the modules: window.comfyAPI is where the frontend publishes its modules'
// exports (comfyAPI.api.PromptExecutionError, ...); the published types do not declare it.
interface Window {
  comfyAPI?: unknown;
}
