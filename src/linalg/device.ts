/**
 * Where the embedded engine runs. Apart from ort.ts (which loads ONNX Runtime) so that the
 * config, the flags and the Action inputs can name a device without loading the native module.
 */
export type Device = "cpu" | "cuda";

export const DEVICES: readonly Device[] = Object.freeze(["cpu", "cuda"]);
